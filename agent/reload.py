"""Live reload (SIGHUP): apply a changed config without losing buffered data.

The new file is validated completely (config and models) before anything changes; an invalid file is
refused with the usual explanation and the running config stays. Then only what changed is touched:

* a source that changed is stopped and started with its new config; untouched sources keep running;
* a sink that changed (new credentials, say) gets a new connection but keeps its outbox, so nothing it
  buffered is lost; outbox settings themselves (cap, durability) take effect at the next restart;
* a pipeline that changed starts with empty windows; untouched pipelines keep their windows and alerts;
* ``[agent]`` log level and intervals apply at once; ``[bus]`` and ``[health]`` need a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent import logs
from agent.config import load_config
from agent.errors import ConfigError
from agent.pipeline import Pipeline

if TYPE_CHECKING:
    from agent.runner import Runtime


def _same(a: Any, b: Any) -> bool:
    # model_dump keeps SecretStr objects, which compare by value: a changed password counts as a change.
    return bool(a.model_dump() == b.model_dump())


def _by_name(items: list[Any]) -> dict[str, Any]:
    return {(i.name or i.type): i for i in items if i.enabled}


async def reload(rt: Runtime) -> bool:
    """Re-read ``rt.file`` and apply it; returns False (and changes nothing) when it is invalid."""
    from agent.runner import _cancel, _routes, load_models

    log = rt.log
    try:
        new = load_config(rt.file)
        slots = load_models(new, rt.file)
    except ConfigError as exc:
        log.error("reload refused, the running config stays", problems=[str(i) for i in exc.issues])
        return False
    rt.observer.notifier.reloading()
    old = rt.cfg
    changed: dict[str, list[str]] = {"sources": [], "sinks": [], "pipelines": []}

    old_sinks, new_sinks = _by_name(old.sinks), _by_name(new.sinks)
    for name in old_sinks.keys() | new_sinks.keys():
        before, after = old_sinks.get(name), new_sinks.get(name)
        if before is not None and after is not None and _same(before, after):
            continue
        changed["sinks"].append(name)
        run = rt.sinks.pop(name, None)
        outbox = None
        if run is not None:
            await _cancel([run.task])
            outbox = run.outbox
            if after is None:
                outbox.close()  # a durable outbox keeps its file for a sink that comes back
                outbox = None
        if after is not None:
            rt.start_sink(after, outbox)

    old_pipes, new_pipes = {p.name: p for p in old.pipelines}, {p.name: p for p in new.pipelines}
    kept = {p.name: p for p in rt.pipelines}
    pipelines = []
    for cfg in new.pipelines:
        if not cfg.enabled:
            continue
        before = old_pipes.get(cfg.name)
        if before is not None and _same(before, cfg) and cfg.name in kept:
            pipelines.append(kept[cfg.name])
            continue
        changed["pipelines"].append(cfg.name)
        pipelines.append(Pipeline(cfg, slots.get(cfg.name)))
    changed["pipelines"] += [n for n in old_pipes if n not in new_pipes]

    old_sources, new_sources = _by_name(old.sources), _by_name(new.sources)
    stale = [
        n for n in old_sources.keys() | new_sources.keys() if not _same_or_absent(old_sources, new_sources, n)
    ]
    await _cancel([rt.sources.pop(n).task for n in stale if n in rt.sources])

    rt.cfg = new
    rt.pipelines = pipelines
    rt.routes = _routes(pipelines)
    rt.observer.refresh()
    for name in stale:
        if name in new_sources:
            rt.start_source(new_sources[name])
    changed["sources"] = sorted(stale)
    if new.agent.log_level != old.agent.log_level or new.agent.log_format != old.agent.log_format:
        logs.configure(new.agent.log_level, new.agent.log_format)
    if not _same(old.bus, new.bus) or not _same(old.health, new.health):
        log.warning("[bus] and [health] changes take effect at the next restart")
    rt.info["config_hash"] = _hash(rt.file)
    log.info("config reloaded", **{k: sorted(v) for k, v in changed.items()})
    rt.observer.notifier.ready("config reloaded")
    return True


def _same_or_absent(old: dict[str, Any], new: dict[str, Any], name: str) -> bool:
    return name in old and name in new and _same(old[name], new[name])


def _hash(file: str) -> str:
    from agent.config import config_hash

    return config_hash(file)
