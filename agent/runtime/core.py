"""The runtime: sources -> bus -> pipelines -> outboxes -> sinks, in one TaskGroup.

Start order: sink delivery loops first (each owns its connection through the supervisor; a broker that
is down only means buffering), then the pipeline loop, then sources. Stop order (SIGTERM/SIGINT, or every
source finished): cancel the sources, let the pipelines drain the bus, then give the sinks up to
``agent.shutdown_timeout`` to empty their outboxes. What is left in a durable outbox is sent after the
next start; a memory outbox loses it, and says how much.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent import __version__
from agent.config import statedir
from agent.config.base import SinkConfig, SourceConfig, tag_catalog, tag_units
from agent.config.load import AgentConfig, config_hash
from agent.delivery.bus import Bus
from agent.delivery.deliver import deliver, open_outbox
from agent.delivery.envelope import iso
from agent.delivery.outbox import Outbox
from agent.ops import logs
from agent.ops.observe import Observer
from agent.plugin import State
from agent.records import Reading
from agent.registry import build
from agent.runtime.parts import SinkRun, SourceRun, cancel, enabled_pipelines, load_models, make_pipeline
from agent.runtime.recording import SelfRecorder
from agent.runtime.reload import Reloading
from agent.runtime.resume import WindowMarks
from agent.runtime.streaming import Streaming
from agent.stream.eventtime import EventTimeGuard
from agent.stream.router import Router
from agent.supervise import supervise


class Runtime(Streaming, Reloading):
    """Everything one config runs. Build it (validates models), then ``await run(stop)``."""

    def __init__(self, cfg: AgentConfig, file: str, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.file = file
        self.clock = clock
        self.log = logs.get("runner")
        units, language = tag_units(cfg.sources), cfg.agent.language
        self.pipelines = [
            make_pipeline(p, slot, units, language)
            for p, slot in enabled_pipelines(cfg, load_models(cfg, file))
        ]
        self.router = Router(self.pipelines)
        self.last_good = self.router.last_good  # tag -> wall time its last good value arrived
        self.bus = Bus(cfg.bus.capacity, cfg.bus.overflow)
        self.started_at = clock()
        self.info = {
            "version": __version__,
            "config_hash": config_hash(cfg),
            "started_at": iso(self.started_at),
            "started_at_ms": round(self.started_at * 1000),
        }
        self.sources: dict[str, SourceRun] = {}
        self.sinks: dict[str, SinkRun] = {}
        self.ready = asyncio.Event()  # set once sinks and sources are started
        self.reload_requested = asyncio.Event()
        self.observer = Observer(self)
        self._tg: asyncio.TaskGroup | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx")
        self._pending_readings: dict[str, list[Sequence[Reading]]] = {}
        self._readings_flushed_at = self._readings_first_at = -math.inf
        self.marks = WindowMarks(cfg.agent.state_dir / "windows.json")  # names the gap a restart left
        self.recorder = SelfRecorder(cfg.recording, cfg.agent.state_dir, [p.cfg for p in self.pipelines])

    def start_sink(self, cfg: SinkConfig, outbox: Outbox | None = None) -> None:
        """Create the sink and its delivery task; reuse ``outbox`` (a reload keeps what it holds)."""
        assert self._tg is not None
        agent = self.cfg.agent
        impl, ctx = build("sink", cfg, agent.id, agent.state_dir, self.info, tag_catalog(self.cfg.sources))
        name = ctx.name
        if outbox is None:
            path = agent.state_dir / f"outbox-{name}.sqlite"
            outbox = open_outbox(cfg.outbox, path, log=ctx.log, encode=impl.encode)
        outbox.encode = impl.encode  # issue 17: encoded once, at append, by the sink that publishes it
        run = SinkRun(cfg, impl, ctx, outbox, frozenset(cfg.kinds))
        self.sinks[name] = run
        work = lambda: deliver(run.impl, run.outbox, run.cfg.outbox.batch)  # noqa: E731 - a closure over run, read at each restart
        run.task = self._tg.create_task(supervise(work, ctx.status, ctx.log), name=f"sink:{name}")

    def start_source(self, cfg: SourceConfig) -> None:
        assert self._tg is not None
        impl, ctx = build("source", cfg, self.cfg.agent.id, self.cfg.agent.state_dir, self.info)
        run = SourceRun(cfg, impl, ctx)
        self.sources[cfg.name] = run
        observer, bus, name, clock = self.observer, self.bus, cfg.name, self.clock
        skew = cfg.max_clock_skew
        guard = EventTimeGuard(skew, cfg.clock_skew_policy, ctx.log) if skew else None

        async def emit(readings: Any) -> None:
            observer.count(name, len(readings))
            if guard is not None:
                readings = guard(readings, clock())  # a PLC clock jump must not move the window grid
            observer.status.readings(readings)
            await bus.put(name, readings)

        run.task = self._tg.create_task(
            supervise(lambda: impl.run(emit), ctx.status, ctx.log), name=f"source:{name}"
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set or every source has finished, then shut down in order."""
        statedir.private_dir(self.cfg.agent.state_dir)  # 0700 whatever the umask (issue 10)
        notifier = self.observer.notifier
        self.recorder.start()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                observe = tg.create_task(self.observer.run(), name="observe")
                for sink_cfg in self.cfg.sinks:
                    if sink_cfg.enabled:
                        self.start_sink(sink_cfg)
                pipes = tg.create_task(self._pipeline_loop(), name="pipelines")
                housekeeping = tg.create_task(self._housekeeping(), name="housekeeping")
                reloader = tg.create_task(self._reloader(), name="reloader")
                self._emit([self.observer.status_message()])
                for source_cfg in self.cfg.sources:
                    if source_cfg.enabled:
                        self.start_source(source_cfg)
                self.ready.set()
                notifier.ready(
                    f"{len(self.sources)} sources, {len(self.pipelines)} pipelines, {len(self.sinks)} sinks"
                )
                self.log.info(
                    "started", sources=len(self.sources), pipelines=len(self.pipelines), sinks=len(self.sinks)
                )
                reason = await self._until_stopped(stop)
                notifier.stopping(f"stopping: {reason}")
                self.log.info("stopping", reason=reason)
                reloader.cancel()
                await cancel([s.task for s in self.sources.values()])
                await self.bus.close()
                await pipes
                housekeeping.cancel()
                await asyncio.to_thread(self.marks.save)
                self._emit([self.observer.status_message()])
                await self._flush()
                observe.cancel()
        finally:
            self._tg = None
            self._pool.shutdown(wait=False, cancel_futures=True)
            await asyncio.to_thread(self.recorder.close)
            for sink in self.sinks.values():
                sink.outbox.close()
        self.log.info("stopped")

    async def _until_stopped(self, stop: asyncio.Event) -> str:
        """Wait for ``stop``, or for every source to finish (a replay that reached its end)."""
        while not stop.is_set():
            tasks = [s.task for s in self.sources.values() if s.task is not None]
            if tasks and all(t.done() for t in tasks):
                return "sources finished"
            pending = [t for t in tasks if not t.done()]
            waiter = asyncio.create_task(stop.wait(), name="wait-for-stop")
            try:
                await asyncio.wait([waiter, *pending], timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        return "signal"

    async def _reloader(self) -> None:
        while True:
            await self.reload_requested.wait()
            self.reload_requested.clear()
            await self.reload()

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.agent.shutdown_timeout
        while loop.time() < deadline:
            # A sink still connecting gets the timeout too; one that is down would only burn it.
            live = (State.UP, State.STARTING)
            waiting = [s for s in self.sinks.values() if s.outbox.stats.depth and s.ctx.status.state in live]
            if not waiting:
                break
            await asyncio.sleep(0.05)
        await cancel([s.task for s in self.sinks.values()])
        for sink in self.sinks.values():
            if sink.outbox.stats.depth:
                kept = (
                    "kept on disk for the next start" if sink.cfg.outbox.durable else "lost (memory outbox)"
                )
                self.log.warning(
                    "undelivered at stop", sink=sink.ctx.name, messages=sink.outbox.stats.depth, fate=kept
                )


async def run_until_stopped(runtime: Runtime, stop: asyncio.Event) -> None:
    """Run ``runtime``; SIGTERM and SIGINT set ``stop``, SIGHUP reloads the config file.

    From the moment this installs its handlers, SIGHUP's disposition is never the default (which
    kills the process): a Python handler while the runtime runs, swapped in place for "ignore" when
    it returns (issue 11 item 2). The loop's own signal handling cannot do this, because removing a
    handler there restores the default first.
    """
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    def hangup(_signum: int, _frame: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing: nothing left to reload
            loop.call_soon_threadsafe(runtime.reload_requested.set)

    signal.signal(signal.SIGHUP, hangup)
    try:
        await runtime.run(stop)
    finally:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
