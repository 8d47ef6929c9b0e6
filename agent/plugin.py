"""The narrow interfaces every source and sink implements, and how they are found.

Built-in plugins are listed in a plain list in ``plugins/__init__.py``, which this distribution registers
in the ``edge_agent.plugins`` entry-point group; third-party packages add theirs to the same group, each
entry pointing at a ``PluginSpec``. Plugin CLI commands come through ``edge_agent.commands`` and helper
objects (the simulator the demo drives) through ``edge_agent.tools``, so ``agent`` never imports ``plugins``.
A plugin's implementation module (the one importing a protocol library) is imported only when the
plugin is used, so ``edge-agent check`` on a Modbus config never imports asyncua.

Two instances of one plugin must coexist: plugins keep all state on the instance.
"""

from __future__ import annotations

import abc
import builtins
import enum
import importlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from agent.config.base import SinkConfig, SourceConfig
from agent.records import Envelope, Reading

DIST = "edge-agent"
PLUGIN_GROUP = "edge_agent.plugins"
COMMAND_GROUP = "edge_agent.commands"
TOOL_GROUP = "edge_agent.tools"

Emit = Callable[[Sequence[Reading]], Awaitable[None]]
"""What a source calls with each batch of readings; may wait when the bus policy is ``block``."""


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


class Sink(abc.ABC):
    """Delivers envelopes taken from its outbox.

    Contract:
        ``async with sink:`` connects (raise TransientError / FatalError when it cannot);
        ``publish(batch)`` returns only once every envelope is acknowledged by the far side (MQTT QoS>=1
        PUBACK, a written and flushed file line); it raises TransientError when any was not, and the
        outbox keeps the whole batch. ``connected`` turning False while idle makes the delivery loop
        reconnect through the supervisor.
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

    @abc.abstractmethod
    async def publish(self, batch: Sequence[Envelope]) -> None:
        """Deliver the batch; return when acknowledged, raise TransientError otherwise."""


@dataclass(frozen=True)
class PluginSpec:
    """A plugin as the registry knows it.

    Attributes:
        type: the ``type = "..."`` value in the config.
        kind: source or sink.
        config: the pydantic model of its config section (pins ``type`` with a Literal).
        impl: ``"module:Class"`` of the implementation, imported on first use.
        summary: one line for ``edge-agent plugins``.
        sample: package resource ``"module:file.toml"`` holding the sample config, if any.
    """

    type: str
    kind: Literal["source", "sink"]
    config: builtins.type[SourceConfig] | builtins.type[SinkConfig]
    impl: str
    summary: str
    sample: str | None = None

    def load(self) -> builtins.type[Any]:
        module, _, attr = self.impl.partition(":")
        return getattr(importlib.import_module(module), attr)

    def sample_text(self) -> str | None:
        if not self.sample:
            return None
        module, _, name = self.sample.partition(":")
        from importlib import resources

        return resources.files(module).joinpath(name).read_text(encoding="utf-8")


def build(
    kind: Literal["source", "sink"],
    cfg: SourceConfig | SinkConfig,
    agent_id: str,
    state_dir: Path,
    info: dict[str, Any] | None = None,
) -> tuple[Any, PluginContext]:
    """An instance of the plugin ``cfg`` names, with its own context, status and logger.

    Every caller (the runtime, ``check --connect``, ``once``, ``record``) builds plugins this way, so a
    plugin sees the same context wherever it runs.
    """
    name = cfg.name or cfg.type
    ctx = PluginContext(
        name=name,
        agent_id=agent_id,
        state_dir=state_dir,
        status=ComponentStatus(name=name, kind=kind),
        log=structlog.get_logger().bind(component=f"{kind}:{name}"),
        info=info if info is not None else {},
    )
    return registry(kind)[cfg.type].load()(cfg, ctx), ctx


def registry(kind: Literal["source", "sink"]) -> dict[str, PluginSpec]:
    """Every plugin of one kind installed through the ``edge_agent.plugins`` entry points.

    An entry point names a ``PluginSpec`` or a list of them (the built-ins are the list
    ``plugins:BUILTIN``). This distribution's own entry points come first, so a third-party plugin
    cannot take over a built-in type name. ``agent`` never imports ``plugins`` directly: this is the door.
    """

    return {spec.type: spec for spec, _ in installed(kind)}


def installed(kind: Literal["source", "sink"]) -> list[tuple[PluginSpec, str]]:
    """``(spec, distribution name)`` of every plugin of one kind, first come first kept (see ``registry``)."""
    from importlib.metadata import entry_points

    seen: set[str] = set()
    out: list[tuple[PluginSpec, str]] = []
    eps = sorted(entry_points(group=PLUGIN_GROUP), key=lambda ep: ep.dist is None or ep.dist.name != DIST)
    for ep in eps:
        loaded = ep.load()
        for spec in loaded if isinstance(loaded, list) else [loaded]:
            if isinstance(spec, PluginSpec) and spec.kind == kind and spec.type not in seen:
                seen.add(spec.type)
                out.append((spec, ep.dist.name if ep.dist else "?"))
    return out


def tool(name: str) -> Any:
    """The object a plugin offers under ``name`` in the ``edge_agent.tools`` entry points (the demo's
    simulator, say); ``LookupError`` when no installed package offers it."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=TOOL_GROUP, name=name):
        return ep.load()
    raise LookupError(f"no installed plugin offers the tool {name!r} (entry point group {TOOL_GROUP})")


def command_adders() -> list[Callable[[Any], None]]:
    """``add_commands(subparsers)`` of every plugin in the ``edge_agent.commands`` entry points."""
    from importlib.metadata import entry_points

    return [ep.load() for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name)]
