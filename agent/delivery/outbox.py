"""The outbox: where messages wait until a sink has delivered them.

Contract (both implementations):
    ``append(messages)`` is synchronous and cheap; it assigns each message the next ``seq`` of its
    (kind, key) topic, encodes it once with the sink's ``encode`` hook (the bytes are what is published)
    and enforces the byte cap with the drop policy (oldest readings first, then oldest features, then
    status; alerts last), counting what it drops. A status message replaces a queued status of the same
    key that was not taken yet (it keeps that one's ``seq``): only the latest status matters, and seq
    numbers stay gapless. The durable outbox does this work on its writer thread, in group commits,
    so its stats lag an ``append`` until ``await settled()``.
    ``take(n, timeout)`` waits up to ``timeout`` for at least one message and returns up to ``n``
    envelopes, alerts and status before features and readings, oldest first within a kind, so every
    topic stays in seq order. Taking does not remove: taken envelopes are in flight until ``ack``-ed;
    ``release()`` forgets what is in flight so the next ``take`` resends it.
    ``ack(envelopes)`` removes delivered envelopes for good (the durable outbox commits acks with its
    next write, see ``agent.delivery.sqlite_store``); ``dead_letter(refused)`` removes envelopes
    the far side refused for good and keeps them (the last ``DEAD_LETTERS_KEPT``) with their reason,
    counted per reason and logged once per reason.

Replay: ``release()`` is called when a connection starts or ends. Whatever is queued at that moment (and,
for the durable outbox, whatever survived a restart) is backlog: its envelopes carry ``replayed=True`` and
leave at most ``replay_rate`` per second, so a recovery neither starves live data nor pins the CPU.
Live messages of other kinds pass the backlog (a live alert overtakes a backlog of features).

``MemoryOutbox`` is in ``agent.delivery.memory_store``, the durable SQLite one in ``agent.delivery.sqlite_store``;
``open_outbox`` picks.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from agent.records import PRIORITY, Envelope, Kind, Message, WireEncoder

KINDS_BY_PRIORITY: tuple[Kind, ...] = tuple(sorted(PRIORITY, key=PRIORITY.__getitem__))
DROP_ORDER: tuple[Kind, ...] = tuple(reversed(KINDS_BY_PRIORITY))  # readings, features, status, alert
DEAD_LETTERS_KEPT = 1000
Encode = Callable[[Message, int], bytes]
Refused = Sequence[tuple[Envelope, str]]


class Outbox(Protocol):
    """What the delivery loop and the runner use; see the module docstring for the contract."""

    stats: OutboxStats
    encode: Encode

    def append(self, messages: Iterable[Message]) -> None: ...
    async def take(self, n: int, timeout: float) -> list[Envelope]: ...  # noqa: ASYNC109 - the contract
    def ack(self, envelopes: Sequence[Envelope]) -> None: ...
    def dead_letter(self, refused: Refused) -> None: ...
    def release(self) -> None: ...
    async def settled(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class OutboxStats:
    """Counters exported to status messages and metrics; ``dropped`` counts per kind since start.

    ``dead_letters`` counts refused messages per reason; ``disk_full`` is True while the state directory
    refuses writes (messages are dropped by priority meanwhile, counted in ``dropped``); ``damaged``
    counts damaged outbox files moved aside at start, the last one in ``damaged_file``.
    """

    depth: int = 0
    depth_bytes: int = 0
    appended: int = 0
    appended_bytes: int = 0  # cumulative, for the outage budget (hours the cap can still absorb)
    acked: int = 0
    replayed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    deliveries: int = 0  # times a sink started delivering from it (``deliver``); not exported
    dead_letters: dict[str, int] = field(default_factory=dict)
    disk_full: bool = False
    write_errors: int = 0
    damaged: int = 0
    damaged_file: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "depth": self.depth,
            "depth_bytes": self.depth_bytes,
            "appended": self.appended,
            "acked": self.acked,
            "replayed": self.replayed,
            "dropped": dict(self.dropped),
            "dead_letters": dict(self.dead_letters),
            "disk_full": self.disk_full,
            "damaged": self.damaged,
        }


DEFAULT_ENCODE: Encode = WireEncoder("edge-agent")


def charged_size(data: bytes, key: str) -> int:
    """Bytes a message is charged against the cap: its encoded bytes, its key and a fixed overhead."""
    return len(data) + len(key) + 16


def message_size(message: Message, seq: int = 1, encode: Encode = DEFAULT_ENCODE) -> int:
    """Bytes a message is charged against the cap."""
    return charged_size(encode(message, seq), message.key)


class Pacer:
    """Token bucket for replayed envelopes: ``rate`` per second, bursts of a tenth of a second's worth.

    ``wait_s`` is the time until a burst's worth is back (at least ``MIN_WAIT_S``), not until the next
    single token: a take that waited for one token woke every millisecond at 2,000/s and took one or two
    messages each time (issue 17: 75 % of a core); now it wakes about ten times a second.
    ``clock`` is injected so tests drive time by hand.
    """

    MIN_WAIT_S = 0.01

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
        """Seconds until a burst's worth of tokens is available again."""
        return max(self.MIN_WAIT_S, (self.burst - self.tokens) / self.rate)


class OutboxBase(abc.ABC):
    """What both outboxes share: stats, replay pacing, the waiting ``take``, drop and dead-letter logging.

    Subclasses implement ``append``, ``ack``, ``dead_letter``, ``close`` and ``_pick(n, budget)``, which
    returns up to ``n`` envelopes (at most ``budget`` of them replayed) and how many were replayed, and
    sets ``_paced`` when it stopped because the budget ran out.
    """

    def __init__(
        self, max_bytes: int, replay_rate: float, clock: Callable[[], float], log: Any, encode: Encode | None
    ) -> None:
        self.max_bytes = max_bytes
        self.stats = OutboxStats()
        self.log = log if log is not None else structlog.get_logger().bind(component="outbox")
        self.encode: Encode = encode or DEFAULT_ENCODE
        self._pacer = Pacer(replay_rate, clock)
        self._paced = False
        self._wakeup = asyncio.Event()
        self._dropping: dict[str, int] | None = None  # drops of the current episode, None between episodes
        self._refusals_logged: set[str] = set()
        self._encode_failed = False

    @abc.abstractmethod
    def append(self, messages: Iterable[Message]) -> None:
        """Queue ``messages``, numbering each in its topic; enforce the cap."""

    @abc.abstractmethod
    def ack(self, envelopes: Sequence[Envelope]) -> None:
        """Remove delivered envelopes."""

    @abc.abstractmethod
    def dead_letter(self, refused: Refused) -> None:
        """Move refused envelopes to the dead letters, with their reasons."""

    @abc.abstractmethod
    def release(self) -> None:
        """Forget what is in flight; what is queued now is backlog."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the file, if any."""

    async def settled(self) -> None:
        """Return once every call made so far has taken effect (the durable outbox works on a thread)."""
        return None

    @abc.abstractmethod
    def _pick(self, n: int, budget: int) -> tuple[list[Envelope], int]:
        """Up to ``n`` envelopes, at most ``budget`` of them replayed, marked in flight."""

    async def _pick_async(self, n: int, budget: int) -> tuple[list[Envelope], int]:
        return self._pick(n, budget)

    async def take(self, n: int, timeout: float) -> list[Envelope]:  # noqa: ASYNC109 - the contract
        """Up to ``n`` envelopes, waiting up to ``timeout`` seconds for the first; ``[]`` on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._paced = False
            self._wakeup.clear()
            batch, replayed = await self._pick_async(n, self._pacer.available())
            if batch:
                self._pacer.spend(replayed)
                self.stats.replayed += replayed
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            wait = min(remaining, self._pacer.wait_s()) if self._paced else remaining
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    def _encoded(self, message: Message, seq: int) -> bytes | None:
        """``encode(message, seq)``; None (the message is dropped, counted, logged once) when it raises."""
        try:
            return self.encode(message, seq)
        except Exception as exc:
            self._count_drop(message.kind.value, quiet=True)
            if not self._encode_failed:
                self._encode_failed = True
                self.log.error(
                    "cannot encode a message, dropped", kind=message.kind.value, error=str(exc)[:200]
                )
            return None

    def _count_drop(self, kind: str, n: int = 1, quiet: bool = False) -> None:
        self.stats.dropped[kind] = self.stats.dropped.get(kind, 0) + n
        if quiet:
            return
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

    def _count_refused(self, envelope: Envelope, reason: str) -> None:
        dead = self.stats.dead_letters
        dead[reason] = dead.get(reason, 0) + 1
        if reason not in self._refusals_logged:
            self._refusals_logged.add(reason)
            self.log.error(
                "message refused by the far side, kept as a dead letter",
                reason=reason,
                kind=envelope.message.kind.value,
                key=envelope.message.key,
                seq=envelope.seq,
                note="logged once per reason; counted in dead_letters",
            )
