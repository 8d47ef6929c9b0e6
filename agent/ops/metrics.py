"""What the agent exports to Prometheus, rendered by prometheus-client.

The observer fills a ``MetricsSnapshot`` (plain dataclasses) each time the health server is scraped;
``render()`` hands it to prometheus-client as a custom ``Collector`` that yields metric families, so the
text format (0.0.4) and OpenMetrics (``render(..., openmetrics=True)``) are the library's. Counters are
cumulative since the process started, so Prometheus computes rates; the ``*_per_second`` gauges are for
people reading the page.

Names are prefixed ``edge_agent_`` and use base units (seconds, bytes) except the outage budget,
which is in hours because that is the unit a maintenance engineer plans in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import exposition as text_format
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics_format

from agent.ops.measure import Histogram

PREFIX = "edge_agent_"
CONTENT_TYPE = text_format.CONTENT_TYPE_LATEST
OPENMETRICS_CONTENT_TYPE = openmetrics_format.CONTENT_TYPE_LATEST
STATES = ("starting", "up", "down", "stopped")


@dataclass
class SourceMetrics:
    name: str
    state: str  # one of STATES
    readings_total: int = 0
    readings_per_second: float = 0.0  # over the last interval, e.g. from rate_per_second()


@dataclass
class TagMetrics:
    name: str
    source: str
    last_good_age_s: float = math.inf  # inf when the tag never had a good value


@dataclass
class BusMetrics:
    depth: int = 0
    capacity: int = 0
    drops_total: int = 0


@dataclass
class SinkMetrics:
    name: str
    state: str  # one of STATES
    outbox_depth: int = 0
    outbox_bytes: int = 0
    outbox_max_bytes: int = 0
    drops_total: Mapping[str, int] = field(default_factory=dict)  # by message kind
    outage_hours_left: float = math.inf  # from outage_hours()
    server: str | None = None  # the broker a sink with several is connected to (status info "server")
    failovers_total: int = 0  # moves to another of its servers
    # issue 11 items 1, 4, 6, from OutboxStats:
    dead_letters_total: Mapping[str, int] = field(default_factory=dict)  # by refusal reason: dead_letters
    disk_full: bool = False  # the state directory refuses writes now: disk_full
    write_errors_total: int = 0  # SQLite errors other than a full disk: write_errors
    damaged_total: int = 0  # damaged outbox files moved aside at start: damaged


@dataclass
class PipelineMetrics:
    name: str
    model_id: str | None = None  # the model file hash, None before a model is loaded
    latency: Histogram = field(default_factory=Histogram)
    windows_scored_total: int = 0
    windows_skipped_total: int = 0  # too little good data (coverage below the pipeline's minimum)
    alerts_raised_total: int = 0
    alerts_open: int = 0


@dataclass
class MetricsSnapshot:
    """Everything ``/metrics`` shows, filled by the runner on each scrape.

    Attributes:
        info: constant labels of ``edge_agent_info`` (agent id, version, config hash).
        start_time_s: process start in epoch seconds.
    """

    info: Mapping[str, str] = field(default_factory=dict)
    start_time_s: float = 0.0
    sources: Sequence[SourceMetrics] = ()
    tags: Sequence[TagMetrics] = ()
    bus: BusMetrics = field(default_factory=BusMetrics)
    sinks: Sequence[SinkMetrics] = ()
    pipelines: Sequence[PipelineMetrics] = ()


Labels = Mapping[str, str]
Rows = Iterable[tuple[Labels, float]]


def _family(kind: str, name: str, help_text: str, rows: Rows) -> Metric | None:
    """One gauge or counter family; None when it has no samples (nothing is written for it)."""
    rows = list(rows)
    if not rows:
        return None
    keys = list(rows[0][0])
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    family = cls(PREFIX + name, help_text, labels=keys)
    for labels, value in rows:
        family.add_metric([str(labels[k]) for k in keys], float(value))
    return family


def _histogram(name: str, help_text: str, series: Iterable[tuple[Labels, Histogram]]) -> Metric | None:
    rows = list(series)
    if not rows:
        return None
    keys = list(rows[0][0])
    family = HistogramMetricFamily(PREFIX + name, help_text, labels=keys)
    for labels, hist in rows:
        buckets = [("+Inf" if math.isinf(b) else repr(b), float(n)) for b, n in hist.cumulative()]
        family.add_metric([str(labels[k]) for k in keys], buckets, hist.sum)
    return family


def _one_hot(kind: str, items: Iterable[SourceMetrics | SinkMetrics]) -> list[tuple[Labels, float]]:
    return [({kind: item.name, "state": s}, float(item.state == s)) for item in items for s in STATES]


def _each(label: str, items: Iterable[Any], attr: str) -> list[tuple[Labels, float]]:
    return [({label: item.name}, getattr(item, attr)) for item in items]


class SnapshotCollector:
    """A prometheus-client collector over one snapshot: ``collect()`` yields its metric families."""

    def __init__(self, snapshot: MetricsSnapshot, loop_lag_s: float | None = None) -> None:
        self.snap = snapshot
        self.loop_lag_s = loop_lag_s

    def collect(self) -> Iterator[Metric]:
        families = [*self._agent(), *self._sources(), *self._sinks(), *self._pipelines()]
        yield from (f for f in families if f is not None)

    def _agent(self) -> list[Metric | None]:
        snap = self.snap
        out = [
            _family("gauge", "info", "Agent identity; always 1.", [(dict(snap.info), 1)]),
            _family(
                "gauge", "start_time_seconds", "Process start, epoch seconds.", [({}, snap.start_time_s)]
            ),
        ]
        if self.loop_lag_s is not None:
            out.append(
                _family("gauge", "event_loop_lag_seconds", "Latest event loop lag.", [({}, self.loop_lag_s)])
            )
        bus = snap.bus
        out += [
            _family("gauge", "bus_depth", "Readings waiting on the bus.", [({}, bus.depth)]),
            _family("gauge", "bus_capacity", "Capacity of the bus.", [({}, bus.capacity)]),
            _family("counter", "bus_dropped", "Readings dropped by the bus policy.", [({}, bus.drops_total)]),
        ]
        return out

    def _sources(self) -> list[Metric | None]:
        sources = self.snap.sources
        ages = [({"tag": t.name, "source": t.source}, t.last_good_age_s) for t in self.snap.tags]
        return [
            _family(
                "gauge",
                "source_state",
                "1 for the current state of each source.",
                _one_hot("source", sources),
            ),
            _family(
                "counter",
                "source_readings",
                "Readings emitted by the source, good or not.",
                _each("source", sources, "readings_total"),
            ),
            _family(
                "gauge",
                "source_readings_per_second",
                "Readings per second over the last interval.",
                _each("source", sources, "readings_per_second"),
            ),
            _family(
                "gauge",
                "tag_last_good_age_seconds",
                "Seconds since the last good value; +Inf if never.",
                ages,
            ),
        ]

    def _sinks(self) -> list[Metric | None]:
        sinks = self.snap.sinks
        drops = [({"sink": s.name, "kind": k}, n) for s in sinks for k, n in sorted(s.drops_total.items())]
        return [
            _family("gauge", "sink_state", "1 for the current state of each sink.", _one_hot("sink", sinks)),
            _family(
                "gauge", "outbox_depth_messages", "Messages waiting.", _each("sink", sinks, "outbox_depth")
            ),
            _family("gauge", "outbox_depth_bytes", "Bytes waiting.", _each("sink", sinks, "outbox_bytes")),
            _family(
                "gauge", "outbox_capacity_bytes", "Outbox byte cap.", _each("sink", sinks, "outbox_max_bytes")
            ),
            _family("counter", "outbox_dropped", "Messages dropped at the outbox cap, by kind.", drops),
            _family(
                "counter",
                "outbox_dead_letters",
                "Messages the broker refused (moved to the dead letters), by reason.",
                [
                    ({"sink": k.name, "reason": r}, n)
                    for k in sinks
                    for r, n in sorted(k.dead_letters_total.items())
                ],
            ),
            _family(
                "gauge",
                "outbox_disk_full",
                "1 while the state directory refuses writes.",
                _each("sink", sinks, "disk_full"),
            ),
            _family(
                "counter",
                "outbox_write_errors",
                "Outbox write errors other than a full disk.",
                _each("sink", sinks, "write_errors_total"),
            ),
            _family(
                "counter",
                "outbox_damaged",
                "Damaged outbox files moved aside at start.",
                _each("sink", sinks, "damaged_total"),
            ),
            _family(
                "gauge",
                "sink_server_info",
                "The server each sink is (or was last) connected to.",
                [({"sink": k.name, "server": k.server or ""}, 1.0) for k in sinks if k.server is not None],
            ),
            _family(
                "counter",
                "sink_failovers",
                "Moves of a sink to the next of its servers.",
                _each("sink", [k for k in sinks if k.server is not None], "failovers_total"),
            ),
            _family(
                "gauge",
                "outbox_outage_hours_left",
                "Hours of outage the outbox absorbs at the current rate.",
                _each("sink", sinks, "outage_hours_left"),
            ),
        ]

    def _pipelines(self) -> list[Metric | None]:
        pipes = self.snap.pipelines
        models = [({"pipeline": p.name, "model": p.model_id}, 1) for p in pipes if p.model_id]
        return [
            _histogram(
                "inference_latency_seconds",
                "Model run time per window.",
                [({"pipeline": p.name}, p.latency) for p in pipes],
            ),
            _family(
                "counter",
                "windows_scored",
                "Windows scored.",
                _each("pipeline", pipes, "windows_scored_total"),
            ),
            _family(
                "counter",
                "windows_skipped",
                "Windows not scored for low coverage of good data.",
                _each("pipeline", pipes, "windows_skipped_total"),
            ),
            _family(
                "counter", "alerts_raised", "Alerts raised.", _each("pipeline", pipes, "alerts_raised_total")
            ),
            _family("gauge", "alerts_open", "Alerts open now.", _each("pipeline", pipes, "alerts_open")),
            _family("gauge", "model_info", "The model each pipeline runs; always 1.", models),
        ]


def render(snapshot: MetricsSnapshot, loop_lag_s: float | None = None, *, openmetrics: bool = False) -> str:
    """The snapshot as Prometheus text format 0.0.4 (``CONTENT_TYPE``), or OpenMetrics
    (``OPENMETRICS_CONTENT_TYPE``) when ``openmetrics``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, loop_lag_s))
    fmt = openmetrics_format if openmetrics else text_format
    return fmt.generate_latest(registry).decode("utf-8")
