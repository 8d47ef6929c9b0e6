"""The in-memory outbox: the contract of ``agent.delivery.outbox`` without a file; loses its content on restart."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agent.delivery.outbox import (
    DEAD_LETTERS_KEPT,
    DROP_ORDER,
    KINDS_BY_PRIORITY,
    Encode,
    OutboxBase,
    Refused,
    charged_size,
)
from agent.records import PRIORITY, Envelope, Kind, Message


class MemoryOutbox(OutboxBase):
    """In-memory outbox with the same contract as the durable one; loses its content on restart."""

    def __init__(
        self,
        max_bytes: int,
        replay_rate: float = 2000.0,
        clock: Callable[[], float] = time.monotonic,
        log: Any = None,
        encode: Encode | None = None,
    ) -> None:
        super().__init__(max_bytes, replay_rate, clock, log, encode)
        self.dead: deque[tuple[Envelope, str]] = deque(maxlen=DEAD_LETTERS_KEPT)
        # Per kind, id -> (envelope, size) in id order; ids up to the cursor are in flight.
        self._queues: dict[Kind, dict[int, tuple[Envelope, int]]] = {kind: {} for kind in PRIORITY}
        self._cursor: dict[Kind, int] = dict.fromkeys(PRIORITY, 0)
        self._seq: dict[tuple[str, str], int] = {}
        self._next_id = 1
        self._live_from = 1

    def append(self, messages: Iterable[Message]) -> None:
        for message in messages:
            queue = self._queues[message.kind]
            topic = (message.kind.value, message.key)
            seq = 0
            if message.kind is Kind.STATUS:
                seq = self._coalesce(queue, message.kind, message.key)
            if not seq:
                seq = self._seq.get(topic, 0) + 1
                self._seq[topic] = seq
            data = self._encoded(message, seq)
            if data is None:
                continue
            size = charged_size(data, message.key)
            queue[self._next_id] = (Envelope(self._next_id, seq, message, data=data), size)
            self._next_id += 1
            self.stats.depth += 1
            self.stats.depth_bytes += size
            self.stats.appended += 1
            self.stats.appended_bytes += size
        self._enforce_cap()
        self._wakeup.set()

    def _coalesce(self, queue: dict[int, tuple[Envelope, int]], kind: Kind, key: str) -> int:
        """Remove the newest queued, not taken, message of ``key``; return its seq (0 when none)."""
        for env_id in reversed(queue):
            if env_id <= self._cursor[kind]:
                return 0
            envelope, size = queue[env_id]
            if envelope.message.key == key:
                del queue[env_id]
                self.stats.depth -= 1
                self.stats.depth_bytes -= size
                return envelope.seq
        return 0

    def _enforce_cap(self) -> None:
        for kind in DROP_ORDER:
            queue = self._queues[kind]
            while self.stats.depth_bytes > self.max_bytes and queue:
                _, size = queue.pop(next(iter(queue)))
                self.stats.depth -= 1
                self.stats.depth_bytes -= size
                self._count_drop(kind.value)

    def _pick(self, n: int, budget: int) -> tuple[list[Envelope], int]:
        batch: list[Envelope] = []
        replayed = 0
        for kind in KINDS_BY_PRIORITY:
            cursor = self._cursor[kind]
            for env_id, (envelope, _) in self._queues[kind].items():
                if len(batch) >= n:
                    break
                if env_id <= cursor:
                    continue
                if env_id < self._live_from:
                    if replayed >= budget:
                        self._paced = True
                        break
                    replayed += 1
                    envelope = Envelope(
                        envelope.id, envelope.seq, envelope.message, replayed=True, data=envelope.data
                    )
                batch.append(envelope)
                self._cursor[kind] = env_id
        return batch, replayed

    def ack(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            entry = self._queues[envelope.message.kind].pop(envelope.id, None)
            if entry is not None:
                self.stats.depth -= 1
                self.stats.depth_bytes -= entry[1]
                self.stats.acked += 1
        self._end_drop_episode()

    def dead_letter(self, refused: Refused) -> None:
        for envelope, reason in refused:
            entry = self._queues[envelope.message.kind].pop(envelope.id, None)
            if entry is not None:
                self.stats.depth -= 1
                self.stats.depth_bytes -= entry[1]
                self.dead.append((envelope, reason))
                self._count_refused(envelope, reason)

    def release(self) -> None:
        self._cursor = dict.fromkeys(PRIORITY, 0)
        self._live_from = self._next_id
        self._wakeup.set()

    def close(self) -> None:
        return None
