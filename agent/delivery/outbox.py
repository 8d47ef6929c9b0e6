"""The outbox: where messages wait until a sink has delivered them.

Contract (both implementations):
    ``append(messages)`` is synchronous and cheap (one transaction per call); it assigns each message the
    next ``seq`` of its (kind, key) topic and enforces the byte cap with the drop policy (oldest readings
    first, then oldest features, then status; alerts last), counting what it drops. A status message
    replaces a queued status of the same key that was not taken yet (it keeps that one's ``seq``): only
    the latest status matters, and seq numbers stay gapless.
    ``take(n, timeout)`` waits up to ``timeout`` for at least one message and returns up to ``n``
    envelopes, alerts and status before features and readings, oldest first within a kind, so every
    topic stays in seq order. Taking does not remove: taken envelopes are in flight until ``ack``-ed;
    ``release()`` forgets what is in flight so the next ``take`` resends it.
    ``ack(envelopes)`` removes delivered envelopes for good.

Replay: ``release()`` is called when a connection starts or ends. Whatever is queued at that moment (and,
for the durable outbox, whatever survived a restart) is backlog: its envelopes carry ``replayed=True`` and
leave at most ``replay_rate`` per second, so a recovery neither starves live data nor pins the CPU.
Live messages of other kinds pass the backlog (a live alert overtakes a backlog of features).

``MemoryOutbox`` lives here; the durable SQLite one is in ``agent.delivery.sqlite_store``; ``open_outbox`` picks.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from agent.records import PRIORITY, Envelope, Kind, Message

KINDS_BY_PRIORITY: tuple[Kind, ...] = tuple(sorted(PRIORITY, key=PRIORITY.__getitem__))
DROP_ORDER: tuple[Kind, ...] = tuple(reversed(KINDS_BY_PRIORITY))  # readings, features, status, alert


class Outbox(Protocol):
    """What the delivery loop and the runner use; see the module docstring for the contract."""

    stats: OutboxStats

    def append(self, messages: Iterable[Message]) -> None: ...
    async def take(self, n: int, timeout: float) -> list[Envelope]: ...  # noqa: ASYNC109 - the contract
    def ack(self, envelopes: Sequence[Envelope]) -> None: ...
    def release(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class OutboxStats:
    """Counters exported to status messages and metrics; ``dropped`` counts per kind since start."""

    depth: int = 0
    depth_bytes: int = 0
    appended: int = 0
    appended_bytes: int = 0  # cumulative, for the outage budget (hours the cap can still absorb)
    acked: int = 0
    replayed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    deliveries: int = 0  # times a sink started delivering from it (``deliver``); not exported

    def as_dict(self) -> dict[str, object]:
        return {
            "depth": self.depth,
            "depth_bytes": self.depth_bytes,
            "appended": self.appended,
            "acked": self.acked,
            "replayed": self.replayed,
            "dropped": dict(self.dropped),
        }


def encode_payload(message: Message) -> str:
    """The payload as compact JSON; what the durable outbox stores."""
    return json.dumps(message.payload, separators=(",", ":"), default=str)


def charged_size(payload_json: str, key: str) -> int:
    """Bytes a message is charged against the cap: its JSON payload, its key and a fixed overhead."""
    return len(payload_json) + len(key) + 16


def message_size(message: Message) -> int:
    """Bytes a message is charged against the cap."""
    return charged_size(encode_payload(message), message.key)


class Pacer:
    """Token bucket for replayed envelopes: ``rate`` per second, bursts of a tenth of a second's worth.

    ``clock`` is injected so tests drive time by hand.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, rate / 10)
        self.clock = clock
        self.tokens = self.burst
        self._last = clock()

    def available(self) -> int:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        return int(self.tokens + 1e-9)  # 0.05 s at 100/s is 5 tokens, not 4.999

    def spend(self, n: int) -> None:
        self.tokens -= n

    def wait_s(self) -> float:
        """Seconds until one more token is available."""
        return max(0.001, (1.0 - self.tokens) / self.rate)


class OutboxBase(abc.ABC):
    """What both outboxes share: stats, replay pacing, the waiting ``take`` and drop-episode logging.

    Subclasses implement ``append``, ``ack``, ``close`` and ``_pick(n, budget)``, which returns up to
    ``n`` envelopes (at most ``budget`` of them replayed) and how many were replayed, and sets
    ``_paced`` when it stopped because the budget ran out.
    """

    def __init__(self, max_bytes: int, replay_rate: float, clock: Callable[[], float], log: Any) -> None:
        self.max_bytes = max_bytes
        self.stats = OutboxStats()
        self.log = log if log is not None else structlog.get_logger().bind(component="outbox")
        self._pacer = Pacer(replay_rate, clock)
        self._paced = False
        self._wakeup = asyncio.Event()
        self._dropping: dict[str, int] | None = None  # drops of the current episode, None between episodes

    @abc.abstractmethod
    def append(self, messages: Iterable[Message]) -> None:
        """Queue ``messages`` in one transaction, numbering each in its topic; enforce the cap."""

    @abc.abstractmethod
    def ack(self, envelopes: Sequence[Envelope]) -> None:
        """Remove delivered envelopes for good."""

    @abc.abstractmethod
    def release(self) -> None:
        """Forget what is in flight; what is queued now is backlog (replayed, paced)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the file, if any."""

    @abc.abstractmethod
    def _pick(self, n: int, budget: int) -> tuple[list[Envelope], int]:
        """Up to ``n`` envelopes, at most ``budget`` of them replayed, marked in flight."""

    async def take(self, n: int, timeout: float) -> list[Envelope]:  # noqa: ASYNC109 - the contract
        """Up to ``n`` envelopes, waiting up to ``timeout`` seconds for the first; ``[]`` on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._paced = False
            batch, replayed = self._pick(n, self._pacer.available())
            if batch:
                self._pacer.spend(replayed)
                self.stats.replayed += replayed
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            wait = min(remaining, self._pacer.wait_s()) if self._paced else remaining
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    def _count_drop(self, kind: str, n: int = 1) -> None:
        self.stats.dropped[kind] = self.stats.dropped.get(kind, 0) + n
        if self._dropping is None:
            self._dropping = {}
            self.log.warning(
                "outbox full, dropping oldest messages",
                max_bytes=self.max_bytes,
                policy="readings, then features, then status; alerts last",
            )
        self._dropping[kind] = self._dropping.get(kind, 0) + n

    def _end_drop_episode(self) -> None:
        """Called after acks: the episode ends once the outbox is back under 90 % of its cap."""
        if self._dropping is not None and self.stats.depth_bytes < 0.9 * self.max_bytes:
            self.log.info("outbox below its cap again", dropped=self._dropping)
            self._dropping = None


class MemoryOutbox(OutboxBase):
    """In-memory outbox with the same contract as the durable one; loses its content on restart."""

    def __init__(
        self,
        max_bytes: int,
        replay_rate: float = 2000.0,
        clock: Callable[[], float] = time.monotonic,
        log: Any = None,
    ) -> None:
        super().__init__(max_bytes, replay_rate, clock, log)
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
            size = message_size(message)
            queue[self._next_id] = (Envelope(self._next_id, seq, message), size)
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
                    envelope = Envelope(envelope.id, envelope.seq, envelope.message, replayed=True)
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

    def release(self) -> None:
        self._cursor = dict.fromkeys(PRIORITY, 0)
        self._live_from = self._next_id
        self._wakeup.set()

    def close(self) -> None:
        return None
