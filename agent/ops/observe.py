"""What the runtime shows the outside world: /metrics snapshots, /readyz, and systemd notifications.

Reads the runtime's counters and statuses; owns nothing the data path needs, so a slow scrape can
never hold readings back.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from agent.delivery.envelope import iso
from agent.ops import logs
from agent.ops.health import HealthServer, readiness
from agent.ops.measure import Histogram, LoopMonitor, Sample, outage_hours, rate_per_second
from agent.ops.metrics import (
    BusMetrics,
    MetricsSnapshot,
    PipelineMetrics,
    SinkMetrics,
    SourceMetrics,
    TagMetrics,
)
from agent.ops.sdnotify import Notifier, watchdog, watchdog_interval
from agent.ops.status_api import StatusApi, StatusFeed
from agent.plugin import ComponentStatus
from agent.records import Kind, Message
from agent.supervise import supervise


class RuntimeView(Protocol):
    """What the observer reads of a runtime (``agent.runtime.core.Runtime``); it never writes to it."""

    cfg: Any
    info: dict[str, Any]
    started_at: float
    last_good: dict[str, float]
    sources: dict[str, Any]
    sinks: dict[str, Any]
    pipelines: list[Any]
    bus: Any
    ready: asyncio.Event
    clock: Callable[[], float]


class Observer:
    """Builds metrics snapshots and readiness for one runtime; runs the health server and watchdog."""

    def __init__(self, runtime: RuntimeView) -> None:
        self.rt = runtime
        self.clock = runtime.clock
        self.monitor = LoopMonitor(runtime.cfg.health.max_loop_lag)
        self.notifier = Notifier.from_env()
        self.latency: dict[str, Histogram] = {}
        self.readings: dict[str, int] = {}  # per source, cumulative
        self._rates: dict[str, tuple[Sample, Sample]] = {}
        self._appended: dict[str, tuple[Sample, Sample]] = {}
        self.tag_source: dict[str, str] = {}
        self.server: HealthServer | None = None
        self.status = StatusFeed()  # the status page's buffers; the runtime feeds them
        self.refresh()

    def refresh(self) -> None:
        """Follow the runtime's current config (after a reload)."""
        self.tag_source = {t.name: s.name for s in self.rt.cfg.sources for t in s.tags}
        for pipe in self.rt.pipelines:
            self.latency.setdefault(pipe.name, Histogram())

    def count(self, source: str, n: int) -> None:
        self.readings[source] = self.readings.get(source, 0) + n

    def ready(self) -> tuple[bool, str]:
        rt = self.rt
        if not rt.ready.is_set():
            return False, "starting"
        return readiness(
            (s.ctx.status for s in rt.sources.values()), (s.ctx.status for s in rt.sinks.values())
        )

    def _advance(
        self, store: dict[str, tuple[Sample, Sample]], key: str, value: float
    ) -> tuple[Sample, Sample]:
        now = Sample(time.monotonic(), value)
        earlier, later = store.get(key, (now, now))
        # Keep the older sample at least 10 s back so a rate is over a meaningful span.
        if now.t - later.t >= 10.0 or earlier is later:
            earlier = later
        store[key] = (earlier, now)
        return earlier, now

    def status_message(self) -> Message:
        """The retained status: identity, uptime, each component's state, pipeline, bus and outbox figures."""
        rt = self.rt
        payload = {
            "state": "online",
            **rt.info,
            "uptime_s": round(self.clock() - rt.started_at, 1),
            "sources": {s.ctx.name: _component(s.ctx.status) for s in rt.sources.values()},
            "sinks": {s.ctx.name: _component(s.ctx.status) for s in rt.sinks.values()},
            "pipelines": {
                p.name: {
                    **vars(p.stats),
                    "alert_open": bool(p.alert and p.alert.open),
                    "model": p.model.id if p.model else None,
                }
                for p in rt.pipelines
            },
            "bus": vars(rt.bus.stats),
            "outbox": {s.ctx.name: s.outbox.stats.as_dict() for s in rt.sinks.values()},
        }
        return Message(Kind.STATUS, "agent", self.clock(), payload)

    def snapshot(self) -> MetricsSnapshot:
        rt, now = self.rt, self.clock()
        sources = []
        for s in rt.sources.values():
            total = self.readings.get(s.ctx.name, 0)
            earlier, later = self._advance(self._rates, s.ctx.name, total)
            sources.append(
                SourceMetrics(s.ctx.name, s.ctx.status.state.value, total, rate_per_second(earlier, later))
            )
        tags = [
            TagMetrics(tag, source, now - rt.last_good[tag] if tag in rt.last_good else math.inf)
            for tag, source in self.tag_source.items()
        ]
        sinks = [self._sink(k) for k in rt.sinks.values()]
        pipelines = [
            PipelineMetrics(
                p.name,
                p.model.id if p.model else None,
                self.latency[p.name],
                p.stats.scored,
                p.stats.skipped,
                p.stats.alerts_raised,
                int(bool(p.alert and p.alert.open)),
            )
            for p in rt.pipelines
        ]
        bus = rt.bus.stats
        return MetricsSnapshot(
            info={
                "agent": rt.cfg.agent.id,
                "version": rt.info["version"],
                "config_hash": rt.info["config_hash"],
            },
            start_time_s=rt.started_at,
            sources=sources,
            tags=tags,
            bus=BusMetrics(bus.depth, bus.capacity, bus.dropped_readings),
            sinks=sinks,
            pipelines=pipelines,
        )

    def _sink(self, k: Any) -> SinkMetrics:
        """One sink's figures: its state, its outbox, the server it is on."""
        st = k.outbox.stats
        earlier, later = self._advance(self._appended, k.ctx.name, st.appended_bytes)
        cap = k.cfg.outbox.max_bytes
        return SinkMetrics(
            k.ctx.name,
            k.ctx.status.state.value,
            st.depth,
            st.depth_bytes,
            cap,
            dict(st.dropped),
            outage_hours(cap - st.depth_bytes, earlier, later),
            k.ctx.status.info.get("server"),
            int(k.ctx.status.counters.get("failovers", 0)),
            dict(st.dead_letters),
            st.disk_full,
            st.write_errors,
            st.damaged,
        )

    async def run(self) -> None:
        """Loop monitor, health server and systemd watchdog, until cancelled."""
        health = self.rt.cfg.health
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.monitor.run(), name="loop-monitor")
            if health.enabled:
                # Supervised like any component: a taken port is logged once and retried, never fatal.
                page = StatusApi(self.rt, self.status, self.snapshot)
                server = self.server = HealthServer(health, self.snapshot, self.ready, self.monitor, page)
                status = ComponentStatus("health", "sink")
                tg.create_task(supervise(server.run, status, logs.get("health")), name="health-server")
            interval = watchdog_interval()
            if interval and self.notifier.enabled:
                tg.create_task(watchdog(self.notifier, interval, self.monitor.responsive), name="sd-watchdog")


def _component(s: ComponentStatus) -> dict[str, Any]:
    return {
        "state": s.state.value,
        "since": iso(s.since),
        "since_ms": round(s.since * 1000),
        "failures": s.failures,
        "error": s.last_error,
        **({"server": s.info["server"]} if "server" in s.info else {}),
    }
