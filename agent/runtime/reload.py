"""Live reload (SIGHUP): apply a changed config without losing buffered data.

The new file is validated completely (config and models) before anything changes; an invalid file is
refused with the usual explanation and the running config stays. Then only what changed is touched:

* a source that changed is stopped and started with its new config; untouched sources keep running;
* a sink that changed (new credentials, say) gets a new connection but keeps its outbox, so nothing it
  buffered is lost; outbox settings themselves (cap, durability) take effect at the next restart;
* a pipeline that changed starts with empty windows; untouched pipelines keep their windows and alerts;
* ``[agent]`` log level and intervals apply at once; ``[bus]`` and ``[health]`` need a restart.

Guards (issue 11 item 2): a file caught mid-write is never read half: it is read until two reads
``SETTLE_S`` apart give the same bytes, and parsed only then (editors and config management should still
write a temporary file and rename it into place, which is atomic). A valid file is still refused when it
would change ``[agent] id`` (topics and seq counters belong to the id: restart for that) or leave no
enabled source or no enabled sink, unless the new file sets ``[agent] allow_empty_reload = true``: an
empty or truncated file is the usual cause, not an intent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config.base import SinkConfig, SourceConfig, tag_units
from agent.config.load import AgentConfig, config_hash, load_config
from agent.delivery.outbox import Outbox
from agent.errors import ConfigError
from agent.ops import logs
from agent.ops.observe import Observer
from agent.runtime.parts import SinkRun, SourceRun, cancel, load_models, make_pipeline
from agent.runtime.recording import SelfRecorder
from agent.stream.router import Router

if TYPE_CHECKING:  # the stream modules load numpy; they are imported when a pipeline is built
    from agent.stream.inference import ModelSlot
    from agent.stream.pipeline import Pipeline


def _read_or_empty(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def _same(a: Any, b: Any) -> bool:
    # model_dump keeps SecretStr objects, which compare by value: a changed password counts as a change.
    return bool(a.model_dump() == b.model_dump())


def _by_name(items: list[Any]) -> dict[str, Any]:
    return {(i.name or i.type): i for i in items if i.enabled}


SETTLE_S = 0.2  # two reads this far apart must agree before a file is parsed
SETTLE_TRIES = 25  # about 5 s of a file still changing, then the reload is refused


async def read_settled(path: str, settle: float = SETTLE_S, tries: int = SETTLE_TRIES) -> bytes | None:
    """The file's bytes once two reads ``settle`` seconds apart agree; None if it never settles."""
    try:
        before = await asyncio.to_thread(Path(path).read_bytes)
        for _ in range(tries):
            await asyncio.sleep(settle)
            now = await asyncio.to_thread(Path(path).read_bytes)
            if now == before:
                return now
            before = now
    except OSError:
        return b""  # load_config explains a missing or unreadable file
    return None


def guard_reload(old: AgentConfig, new: AgentConfig) -> list[str]:
    """Why ``new`` must not replace ``old`` on a reload (empty when it may)."""
    problems = []
    if new.agent.id != old.agent.id:
        problems.append(
            f"agent.id would change from {old.agent.id!r} to {new.agent.id!r}: the id names the topics "
            "and seq counters, so it changes only with a restart"
        )
    if not new.agent.allow_empty_reload:
        for section in ("sources", "sinks"):
            if _by_name(getattr(old, section)) and not _by_name(getattr(new, section)):
                problems.append(
                    f"the new file has no enabled {section[:-1]}: it would stop all {section} (set "
                    "[agent] allow_empty_reload = true if that is meant)"
                )
    return problems


def _same_or_absent(old: dict[str, Any], new: dict[str, Any], name: str) -> bool:
    return name in old and name in new and _same(old[name], new[name])


class Reloading:
    """The reload half of ``agent.runtime.core.Runtime`` (a mixin, so reload is the runtime's own method)."""

    cfg: AgentConfig
    file: str
    log: Any
    info: dict[str, Any]
    observer: Observer
    pipelines: list[Pipeline]
    router: Router
    sources: dict[str, SourceRun]
    sinks: dict[str, SinkRun]
    reload_requested: asyncio.Event
    recorder: SelfRecorder

    def start_sink(self, cfg: SinkConfig, outbox: Outbox | None = None) -> None:
        raise NotImplementedError

    def start_source(self, cfg: SourceConfig) -> None:
        raise NotImplementedError

    async def reload(self) -> bool:
        """Re-read ``self.file`` and apply it; returns False (and changes nothing) when it is refused."""
        new = await self._checked_config()
        if new is None:
            return False
        try:
            slots = await asyncio.to_thread(load_models, new, self.file)  # model files: off the loop
        except ConfigError as exc:
            self.log.error("reload refused, the running config stays", problems=[str(i) for i in exc.issues])
            return False
        self.observer.notifier.reloading()
        old = self.cfg
        changed = {"sinks": await self._reload_sinks(old, new)}
        pipelines, changed["pipelines"] = self._reload_pipelines(old, new, slots)
        old_sources, new_sources = _by_name(old.sources), _by_name(new.sources)
        stale = sorted(
            n
            for n in old_sources.keys() | new_sources.keys()
            if not _same_or_absent(old_sources, new_sources, n)
        )
        await cancel([self.sources.pop(n).task for n in stale if n in self.sources])
        self.cfg = new
        self.pipelines = pipelines
        self.router = Router(pipelines, self.router.last_good)
        self.recorder.configure([p.cfg for p in pipelines])
        self.observer.refresh()
        for name in stale:
            if name in new_sources:
                self.start_source(new_sources[name])
        changed["sources"] = stale
        if new.agent.log_level != old.agent.log_level or new.agent.log_format != old.agent.log_format:
            logs.configure(new.agent.log_level, new.agent.log_format)
        if not all(_same(getattr(old, k), getattr(new, k)) for k in ("bus", "health", "recording")):
            self.log.warning("[bus], [health] and [recording] changes take effect at the next restart")
        self.info["config_hash"] = config_hash(new)
        self.log.info("config reloaded", **{k: sorted(v) for k, v in changed.items()})
        self.observer.notifier.ready("config reloaded")
        return True

    async def _checked_config(self) -> AgentConfig | None:
        """The new config from a settled file, or None (logged) when it is invalid or refused."""
        for _ in range(3):  # the file changed between the settled read and the parse: read it again
            settled = await read_settled(self.file)
            if settled is None:
                self.log.error(
                    "reload refused, the running config stays",
                    problems=["the config file kept changing; write it elsewhere and rename it into place"],
                )
                return None
            try:
                new = load_config(self.file)
            except ConfigError as exc:
                problems = [str(i) for i in exc.issues]
                self.log.error("reload refused, the running config stays", problems=problems)
                return None
            if await asyncio.to_thread(_read_or_empty, self.file) != settled:
                continue
            problems = guard_reload(self.cfg, new)
            if problems:
                self.log.error("reload refused, the running config stays", problems=problems)
                return None
            return new
        self.log.error("reload refused, the running config stays", problems=["the config file kept changing"])
        return None

    async def _reload_sinks(self, old: AgentConfig, new: AgentConfig) -> list[str]:
        """Restart each sink whose config changed; a restarted sink keeps its outbox and what it holds."""
        changed = []
        old_sinks, new_sinks = _by_name(old.sinks), _by_name(new.sinks)
        for name in old_sinks.keys() | new_sinks.keys():
            before, after = old_sinks.get(name), new_sinks.get(name)
            if before is not None and after is not None and _same(before, after):
                continue
            changed.append(name)
            run = self.sinks.pop(name, None)
            outbox = None
            if run is not None:
                await cancel([run.task])
                outbox = run.outbox
                if after is None:
                    outbox.close()  # a durable outbox keeps its file for a sink that comes back
                    outbox = None
            if after is not None:
                self.start_sink(after, outbox)
        return changed

    def _reload_pipelines(
        self, old: AgentConfig, new: AgentConfig, slots: dict[str, ModelSlot]
    ) -> tuple[list[Pipeline], list[str]]:
        """The new pipeline list: unchanged ones kept with their windows and alerts, changed ones new."""
        old_pipes, new_pipes = {p.name: p for p in old.pipelines}, {p.name: p for p in new.pipelines}
        kept = {p.name: p for p in self.pipelines}
        pipelines, changed = [], []
        for cfg in new.pipelines:
            if not cfg.enabled:
                continue
            before = old_pipes.get(cfg.name)
            if before is not None and _same(before, cfg) and cfg.name in kept:
                pipelines.append(kept[cfg.name])
                continue
            changed.append(cfg.name)
            pipelines.append(
                make_pipeline(cfg, slots.get(cfg.name), tag_units(new.sources), new.agent.language)
            )
        changed += [n for n in old_pipes if n not in new_pipes]
        return pipelines, changed
