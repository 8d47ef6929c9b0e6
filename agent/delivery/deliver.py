"""The delivery transaction between one outbox and one sink: take a batch, publish, then ack or keep.

The runner runs ``supervise(lambda: deliver(sink, outbox, batch), status, log)``: the supervisor is the one
owner of reconnects. ``deliver`` connects the sink, then loops take -> publish -> ack. A sink whose
``publish`` may run concurrently (the MQTT sink: the broker acknowledges in order) sets ``Sink.window`` above
1, and that many batches are in flight at once, which hides the round trip of the last acknowledgement of
each batch. ``open_outbox`` picks the outbox a sink's config asks for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.config.base import OutboxConfig
from agent.delivery.memory_store import MemoryOutbox
from agent.delivery.outbox import Encode, Outbox
from agent.delivery.sqlite_store import SqliteOutbox
from agent.errors import TransientError
from agent.plugin import Sink
from agent.records import Envelope


async def deliver(sink: Sink, outbox: Outbox, batch_size: int) -> None:
    """Connect ``sink`` and deliver from ``outbox`` until cancelled.

    Raises:
        TransientError: the sink lost its connection; what was taken but not acked stays in the
            outbox and is resent, oldest first, after the supervisor reconnects.
        FatalError: from ``sink.__aenter__`` or ``sink.publish`` (credentials, certificates).
    """
    # Resend whatever a previous attempt left unacknowledged; what waited through it is backlog. Not on
    # the first attempt: messages queued while the first connection was being made did not wait through
    # an outage (issue 12: the first status of a clean start said replayed), and what survived a restart
    # is backlog already (the durable outbox marks it when opened).
    if outbox.stats.deliveries:
        outbox.release()
    outbox.stats.deliveries += 1
    window = max(1, sink.window)
    async with sink:
        sink.ctx.mark_up()
        try:
            async with asyncio.TaskGroup() as tasks:
                slots = asyncio.Semaphore(window)
                while True:
                    await slots.acquire()
                    batch = await outbox.take(batch_size, timeout=1.0)
                    if not batch:
                        slots.release()
                        if not sink.connected:
                            raise TransientError("connection lost while idle")
                        continue
                    tasks.create_task(_publish(sink, outbox, batch, slots), name=f"publish-{sink.ctx.name}")
        except BaseExceptionGroup as group:
            outbox.release()
            # The first failure is the story; the others are the same outage seen by later batches.
            raise group.exceptions[0] from None
        except BaseException:
            outbox.release()
            raise


async def _publish(sink: Sink, outbox: Outbox, batch: Sequence[Envelope], slots: asyncio.Semaphore) -> None:
    refused = await sink.publish(batch)
    if refused:
        outbox.dead_letter(refused)
        gone = {envelope.id for envelope, _ in refused}
        batch = [envelope for envelope in batch if envelope.id not in gone]
    outbox.ack(batch)
    slots.release()


def open_outbox(
    cfg: OutboxConfig,
    path: Path,
    *,
    clock: Callable[[], float] = time.monotonic,
    log: Any = None,
    encode: Encode | None = None,
) -> Outbox:
    """The outbox ``cfg`` asks for: SQLite at ``path`` when ``cfg.durable``, else in memory.

    ``encode`` is the sink's ``Sink.encode`` hook: the outbox stores what it returns and the sink
    publishes those bytes (the default JSON wire form when ``None``).
    """
    if cfg.durable:
        return SqliteOutbox(
            path,
            cfg.max_bytes,
            replay_rate=cfg.replay_rate,
            fsync=cfg.fsync,
            clock=clock,
            log=log,
            encode=encode,
        )
    return MemoryOutbox(cfg.max_bytes, replay_rate=cfg.replay_rate, clock=clock, log=log, encode=encode)
