"""The outbox: where messages wait until a sink has delivered them.

Contract (both implementations):
    ``append(messages)`` is synchronous and cheap; it assigns each message the next ``seq`` of its
    (kind, key) topic and enforces the byte cap with the drop policy (oldest readings first, then
    oldest features, then status; alerts last), counting what it drops.
    ``take(n, timeout)`` waits up to ``timeout`` for at least one message and returns up to ``n``
    envelopes, alerts and status before features and readings, oldest first within a kind. Taking does
    not remove: the same envelopes come back from the next ``take`` until they are ``ack``-ed
    (``release()`` forgets what is in flight so a reconnect resends it).
    ``ack(envelopes)`` removes delivered envelopes for good.

``MemoryOutbox`` lives here; the durable SQLite one is in ``agent.outbox_sqlite``.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from agent.records import PRIORITY, Envelope, Kind, Message


@dataclass
class OutboxStats:
    """Counters exported to status messages and metrics."""

    depth: int = 0
    depth_bytes: int = 0
    appended: int = 0
    acked: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "depth": self.depth,
            "depth_bytes": self.depth_bytes,
            "appended": self.appended,
            "acked": self.acked,
            "dropped": dict(self.dropped),
        }


def message_size(message: Message) -> int:
    """Bytes a message is charged against the cap (its JSON payload)."""
    return len(json.dumps(message.payload, separators=(",", ":"), default=str)) + len(message.key) + 16


class MemoryOutbox:
    """In-memory outbox with the same contract as the durable one; loses its content on restart."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._queues: dict[Kind, deque[tuple[Envelope, int]]] = {kind: deque() for kind in PRIORITY}
        self._seq: dict[tuple[str, str], int] = {}
        self._next_id = 1
        self._in_flight: set[int] = set()
        self._wakeup = asyncio.Event()
        self.stats = OutboxStats()

    def append(self, messages: Iterable[Message]) -> None:
        for message in messages:
            topic = (message.kind.value, message.key)
            seq = self._seq.get(topic, 0) + 1
            self._seq[topic] = seq
            size = message_size(message)
            self._queues[message.kind].append((Envelope(self._next_id, seq, message), size))
            self._next_id += 1
            self.stats.depth += 1
            self.stats.depth_bytes += size
            self.stats.appended += 1
        self._enforce_cap()
        self._wakeup.set()

    def _enforce_cap(self) -> None:
        for kind in sorted(PRIORITY, key=PRIORITY.__getitem__, reverse=True):
            queue = self._queues[kind]
            while self.stats.depth_bytes > self.max_bytes and queue:
                envelope, size = queue.popleft()
                self._in_flight.discard(envelope.id)
                self.stats.depth -= 1
                self.stats.depth_bytes -= size
                self.stats.dropped[kind.value] = self.stats.dropped.get(kind.value, 0) + 1

    async def take(self, n: int, timeout: float) -> list[Envelope]:
        if not self._available():
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                return []
        batch: list[Envelope] = []
        for kind in sorted(PRIORITY, key=PRIORITY.__getitem__):
            for envelope, _ in self._queues[kind]:
                if len(batch) >= n:
                    break
                if envelope.id not in self._in_flight:
                    batch.append(envelope)
                    self._in_flight.add(envelope.id)
        return batch

    def _available(self) -> bool:
        return any(env.id not in self._in_flight for queue in self._queues.values() for env, _ in queue)

    def ack(self, envelopes: Sequence[Envelope]) -> None:
        done = {env.id for env in envelopes}
        for queue in self._queues.values():
            kept = deque(item for item in queue if item[0].id not in done)
            for envelope, size in queue:
                if envelope.id in done:
                    self.stats.depth -= 1
                    self.stats.depth_bytes -= size
                    self.stats.acked += 1
            queue.clear()
            queue.extend(kept)
        self._in_flight -= done

    def release(self) -> None:
        self._in_flight.clear()
        self._wakeup.set()

    def close(self) -> None:
        return None
