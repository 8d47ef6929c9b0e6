"""The delivery transaction between one outbox and one sink: take a batch, publish, then ack or keep."""

from __future__ import annotations

from typing import Any, Protocol

from agent.errors import TransientError
from agent.plugin import Sink
from agent.records import Envelope, Message


class Outbox(Protocol):
    """See ``agent.outbox`` for the contract."""

    def append(self, messages: Any) -> None: ...
    async def take(self, n: int, timeout: float) -> list[Envelope]: ...
    def ack(self, envelopes: Any) -> None: ...
    def release(self) -> None: ...
    def close(self) -> None: ...


async def deliver(sink: Sink, outbox: Outbox, batch_size: int) -> None:
    """Connect ``sink`` and deliver from ``outbox`` until cancelled.

    Raises TransientError when the sink loses its connection; what was taken but not acked stays in
    the outbox and is resent, oldest first, after the supervisor reconnects.
    """
    outbox.release()
    async with sink:
        sink.ctx.mark_up()
        while True:
            batch = await outbox.take(batch_size, timeout=1.0)
            if not batch:
                if not sink.connected:
                    raise TransientError("connection lost while idle")
                continue
            try:
                await sink.publish(batch)
            except BaseException:
                outbox.release()
                raise
            outbox.ack(batch)


def accepts(kinds: list[str], message: Message) -> bool:
    """Whether a sink configured with ``kinds`` receives ``message``."""
    return message.kind.value in kinds
