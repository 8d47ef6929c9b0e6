"""The pieces a runtime is built from and its reload rebuilds: models, route table, component runs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from agent.config.base import SinkConfig, SourceConfig
from agent.config.load import AgentConfig
from agent.config.sections import PipelineConfig
from agent.delivery.outbox import Outbox
from agent.errors import ConfigError, ConfigIssue, ModelError
from agent.plugin import PluginContext, Sink, Source
from agent.stream.features import feature_names
from agent.stream.inference import ModelSlot
from agent.stream.pipeline import thresholds


def load_models(cfg: AgentConfig, file: str) -> dict[str, ModelSlot]:
    """Load and check every enabled pipeline's model; all problems reported at once as a ConfigError."""
    slots: dict[str, ModelSlot] = {}
    issues: list[ConfigIssue] = []
    for i, pipe in enumerate(cfg.pipelines):
        if pipe.model is None or not pipe.enabled:
            continue
        try:
            required = () if pipe.alert.threshold is not None else ("threshold",)
            slot = ModelSlot(pipe.model, feature_names(pipe.tags, pipe.features), required)
            thresholds(pipe, slot.model)
        except ModelError as exc:
            issues.append(ConfigIssue(f"pipelines[{i}].model", str(exc)))
            continue
        except ValueError as exc:
            issues.append(ConfigIssue(f"pipelines[{i}].alert.threshold", str(exc)))
            continue
        slots[pipe.name] = slot
    if issues:
        raise ConfigError(file, issues)
    return slots


@dataclass
class SourceRun:
    cfg: SourceConfig
    impl: Source
    ctx: PluginContext
    task: asyncio.Task[None] | None = None


@dataclass
class SinkRun:
    cfg: SinkConfig
    impl: Sink
    ctx: PluginContext
    outbox: Outbox
    kinds: frozenset[str] = field(default_factory=frozenset)
    task: asyncio.Task[None] | None = None


def enabled_pipelines(
    cfg: AgentConfig, slots: dict[str, ModelSlot]
) -> list[tuple[PipelineConfig, ModelSlot | None]]:
    return [(p, slots.get(p.name)) for p in cfg.pipelines if p.enabled]


async def cancel(tasks: list[asyncio.Task[None] | None]) -> None:
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)
