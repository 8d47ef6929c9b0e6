"""The narrow interfaces every source and sink implements, and how they are found.

How plugins are found and built is ``agent.registry``.
A plugin's implementation module (the one importing a protocol library) is imported only when the
plugin is used, so ``edge-agent check`` on a Modbus config never imports asyncua.

Two instances of one plugin must coexist: plugins keep all state on the instance.
"""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from agent.config.base import SinkConfig, SourceConfig
from agent.records import Envelope, Message, Reading, WireEncoder, mark_replayed

Emit = Callable[[Sequence[Reading]], Awaitable[None]]
"""What a source calls with each batch of readings; may wait when the bus policy is ``block``."""

Refused = list[tuple[Envelope, str]]
"""Envelopes the far side refused for good, each with its reason (``publish``'s return value)."""


class State(enum.StrEnum):
    """Connection state of a source or sink, read by health and metrics."""

    STARTING = "starting"
    UP = "up"
    DOWN = "down"  # failed, retrying with backoff
    STOPPED = "stopped"


@dataclass
class ComponentStatus:
    """Live status of one source or sink; written by the component and its supervisor."""

    name: str
    kind: Literal["source", "sink"]
    state: State = State.STARTING
    since: float = field(default_factory=time.time)
    last_error: str | None = None
    failures: int = 0
    episode_failures: int = 0  # failures since the component was last UP
    flapping: bool = False  # it keeps failing soon after coming up (see agent.supervise)
    counters: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)  # e.g. the broker a sink is connected to

    def set(self, state: State, error: str | None = None) -> None:
        if state is not self.state:
            self.state, self.since = state, time.time()
        if error is not None or state is State.UP:
            self.last_error = error

    def count(self, key: str, n: float = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n


@dataclass
class PluginContext:
    """What the runner hands to each plugin instance.

    ``mark_up()`` tells the supervisor the component is connected and working: it logs the recovery
    once and resets the backoff. Plugins call it after their first successful read or connect.
    """

    name: str
    agent_id: str
    state_dir: Path
    status: ComponentStatus
    log: Any = None  # structlog BoundLogger with component=<name>
    info: dict[str, Any] = field(default_factory=dict)  # version, config_hash, started_at
    tags: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """What sinks describe tags with: ``{source: {tag: {"unit": ..., "type": ...}}}`` (``agent.config.base.tag_catalog``)."""

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = structlog.get_logger().bind(component=self.name)

    def mark_up(self) -> None:
        status = self.status
        if status.state is State.UP:
            return
        if status.episode_failures and not status.flapping:
            self.log.info(
                "recovered",
                after_failures=status.episode_failures,
                down_s=round(time.time() - status.since, 1),
            )
        status.episode_failures = 0
        status.set(State.UP)


class Source(abc.ABC):
    """Reads tags from one device or server and emits readings.

    Contract:
        ``run(emit)`` connects, reads and awaits ``emit(batch)`` until cancelled. It never retries a lost
        connection itself: it raises ``TransientError`` (or ``FatalError``) and the supervisor, the one
        owner of reconnects, calls ``run`` again after a capped, jittered backoff. Per-device loops
        inside one source (several Modbus units) may back off on their own while the others keep
        polling. A bad tag is a BAD reading with a reason, never an exception that stops the others.
    """

    def __init__(self, config: SourceConfig, ctx: PluginContext) -> None:
        self.config = config
        self.ctx = ctx

    @abc.abstractmethod
    async def run(self, emit: Emit) -> None:
        """Read until cancelled; raise TransientError / FatalError on failure."""

    @abc.abstractmethod
    async def read_once(self) -> list[Reading]:
        """Connect, read every tag once, disconnect. Used by ``edge-agent once``."""

    def diagnose(self) -> list[str]:
        """Notes on the last ``read_once`` for a person: values that look wrongly decoded, and the fix.

        ``once`` and ``check --connect`` print them under the source; a tag with a note counts as suspect.
        Each note starts with the tag's name. The default has none.
        """
        return []


class Sink(abc.ABC):
    """Delivers envelopes taken from its outbox.

    Contract:
        ``async with sink:`` connects (raise TransientError / FatalError when it cannot);
        ``publish(batch)`` returns only once every envelope is acknowledged by the far side (MQTT QoS>=1
        PUBACK, a written and flushed file line); it raises TransientError when any was not, and the
        outbox keeps the whole batch. It returns the envelopes the far side refused for good (an MQTT 5
        PUBACK reason code >= 0x80, e.g. 0x87 not authorized) with their reasons: those go to the
        outbox's dead-letter table instead of being retried, and the rest of the batch is acked.
        ``connected`` turning False while idle makes the delivery loop reconnect through the supervisor.

    Encoding (the hook, issue 17): ``encode(message, seq)`` makes the bytes ``publish`` sends for one
    message. The outbox calls it once per message at ``append`` (on the outbox's writer thread for the
    durable outbox: it must be pure and thread-safe, touching no connection and no event loop), stores
    the bytes, and hands them back in ``Envelope.data``; ``publish`` sends them as they are, never
    re-encoding. ``seq`` is the outbox's per-topic sequence number. The bytes are made with ``replayed``
    false; ``wire(envelope)`` gives what to send for an envelope, flipping the flag for a replayed one
    (override ``wire`` too when ``encode`` is not the default JSON). The default is the JSON of
    ``agent/schemas``; a sink with another format (Sparkplug protobuf, a per-tag UNS layout) overrides
    both. An exception from ``encode`` drops that one message (counted as dropped, logged once).
    """

    window: int = 1
    """How many batches may be in flight at once (MQTT sets 2 to hide the PUBACK round trip)."""

    def __init__(self, config: SinkConfig, ctx: PluginContext) -> None:
        self.config = config
        self.ctx = ctx

    async def __aenter__(self) -> Sink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    @property
    def connected(self) -> bool:
        return True

    def encode(self, message: Message, seq: int) -> bytes:
        """The bytes ``publish`` sends for ``message`` (see the class docstring for the contract)."""
        encoder = self.__dict__.get("_wire_encoder")
        if encoder is None:
            encoder = self.__dict__["_wire_encoder"] = WireEncoder(self.ctx.agent_id)
        return encoder(message, seq)

    def wire(self, envelope: Envelope) -> bytes:
        """What to send for ``envelope``: its stored bytes, marked replayed when it is (an envelope made by
        hand, without bytes, is encoded here)."""
        data = envelope.data or self.encode(envelope.message, envelope.seq)
        return mark_replayed(data) if envelope.replayed else data

    @abc.abstractmethod
    async def publish(self, batch: Sequence[Envelope]) -> Refused | None:
        """Deliver the batch; return when acknowledged (with what was refused), raise TransientError otherwise."""

    async def probe(self) -> None:
        """Connect once and leave, for ``check --connect``, without disturbing a running agent.

        A sink whose connection is exclusive (an MQTT client id) or announces itself (a birth message)
        overrides this to connect under its own identity and say nothing. The default enters and leaves.
        """
        async with self:
            pass
