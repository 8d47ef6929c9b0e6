"""How plugins are found and built: the entry-point registry, plugin commands and tools.

Built-in plugins are listed in a plain list in ``plugins/__init__.py``, which this distribution registers
in the ``edge_agent.plugins`` entry-point group; third-party packages add theirs to the same group, each
entry pointing at a ``PluginSpec``. Plugin CLI commands come through ``edge_agent.commands`` and helper
objects (the simulator the demo drives) through ``edge_agent.tools``, so ``agent`` never imports ``plugins``.
A plugin's implementation module (the one importing a protocol library) is imported only when the
plugin is used.
"""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from agent.config.base import SinkConfig, SourceConfig
from agent.plugin import ComponentStatus, PluginContext

DIST = "edge-agent"
PLUGIN_GROUP = "edge_agent.plugins"
COMMAND_GROUP = "edge_agent.commands"
TOOL_GROUP = "edge_agent.tools"


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
    tags: dict[str, dict[str, dict[str, Any]]] | None = None,
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
        tags=tags if tags is not None else {},
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
