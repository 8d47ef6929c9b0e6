"""The pieces a runtime is built from and its reload rebuilds: models, route table, component runs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.config.base import SinkConfig, SourceConfig
from agent.config.load import AgentConfig
from agent.config.sections import PipelineConfig
from agent.delivery.outbox import Outbox
from agent.errors import ConfigError, ConfigIssue, ModelError
from agent.plugin import PluginContext, Sink, Source

if TYPE_CHECKING:
    from agent.stream.explain import Language
    from agent.stream.inference import ModelSlot
    from agent.stream.pipeline import Pipeline

# The stream modules import numpy (0.15 s here) and are imported when a pipeline is configured, not
# at start-up: an agent that only forwards starts without them (issue 17).


def load_models(cfg: AgentConfig, file: str) -> dict[str, ModelSlot]:
    """Load and check every enabled pipeline's model; all problems reported at once as a ConfigError."""
    slots: dict[str, ModelSlot] = {}
    issues: list[ConfigIssue] = []
    for i, pipe in enumerate(cfg.pipelines):
        if pipe.model is None or not pipe.enabled:
            continue
        from agent.stream.features import feature_names  # see the note on the imports
        from agent.stream.inference import ModelSlot
        from agent.stream.pipeline import thresholds

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


def make_pipeline(
    cfg: PipelineConfig, slot: ModelSlot | None, units: dict[str, str], language: Language
) -> Pipeline:
    """The running stages of one ``[[pipelines]]`` entry (imports the stream modules on first use)."""
    from agent.stream.pipeline import Pipeline

    return Pipeline(cfg, slot, units, language)


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
