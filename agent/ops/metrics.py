"""What the agent exports to Prometheus, and the text exposition format 0.0.4 written by hand.

The runner fills a ``MetricsSnapshot`` (plain dataclasses, no Prometheus library) each time the
health server is scraped; ``render()`` turns it into text. Counters are cumulative since the process
started, so Prometheus computes rates; the ``*_per_second`` gauges are for people reading the page.

Names are prefixed ``edge_agent_`` and use base units (seconds, bytes) except the outage budget,
which is in hours because that is the unit a maintenance engineer plans in.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PREFIX = "edge_agent_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("starting", "up", "down", "stopped")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Inference latency buckets in seconds: a small model runs in well under a millisecond."""


class Histogram:
    """A histogram with fixed upper bounds, observed from the event loop (not thread-safe).

    Args:
        buckets: increasing upper bounds in seconds; ``+Inf`` is implied.
    """

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or any(b >= c for b, c in itertools.pairwise(bounds)) or bounds[0] <= 0:
            raise ValueError(f"histogram buckets must be positive and increasing, got {buckets!r}")
        self.buckets = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` pairs, ending with ``(inf, count)``."""
        out, running = [], 0
        for bound, n in zip((*self.buckets, math.inf), self._counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass(frozen=True)
class Sample:
    """A cumulative counter read at a monotonic time, e.g. bytes appended to an outbox so far."""

    t: float
    value: float


def rate_per_second(earlier: Sample, later: Sample) -> float:
    """The counter's rate between two samples; 0 when no time passed or the counter was reset."""
    dt = later.t - earlier.t
    dv = later.value - earlier.value
    return dv / dt if dt > 0 and dv >= 0 else 0.0


def outage_hours(free_bytes: float, earlier: Sample, later: Sample) -> float:
    """Hours of outage the outbox can still absorb: free bytes over the append rate in bytes per hour.

    Args:
        free_bytes: the outbox cap minus its current depth in bytes.
        earlier: appended bytes (cumulative) at an earlier time.
        later: appended bytes (cumulative) now.

    Returns:
        ``inf`` when nothing is being appended (the outbox never fills), else ``>= 0``.
    """
    per_hour = rate_per_second(earlier, later) * 3600.0
    return math.inf if per_hour <= 0 else max(0.0, free_bytes) / per_hour


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
    # issue 11 items 1, 4, 6, from OutboxStats (exposition to be wired by the lead):
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


def escape_label(value: str) -> str:
    """A label value escaped for the text format: backslash, double quote and newline."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    """A HELP docstring escaped for the text format: backslash and newline."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


Labels = Mapping[str, str]


class Exposition:
    """Builds a text exposition family by family; each family gets its HELP and TYPE lines once."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> None:
        """Add one metric family; nothing is written when it has no samples."""
        rows = list(samples)
        if not rows:
            return
        full = PREFIX + name
        self._lines += [f"# HELP {full} {escape_help(help_text)}", f"# TYPE {full} {kind}"]
        for labels, value in rows:
            self._lines.append(self._sample(full, labels, value))

    def histogram(self, name: str, help_text: str, series: Iterable[tuple[Labels, Histogram]]) -> None:
        rows = list(series)
        if not rows:
            return
        full = PREFIX + name
        self._lines += [f"# HELP {full} {escape_help(help_text)}", f"# TYPE {full} histogram"]
        for labels, hist in rows:
            for bound, n in hist.cumulative():
                self._lines.append(self._sample(full + "_bucket", {**labels, "le": format_value(bound)}, n))
            self._lines.append(self._sample(full + "_sum", labels, hist.sum))
            self._lines.append(self._sample(full + "_count", labels, hist.count))

    @staticmethod
    def _sample(name: str, labels: Labels, value: float) -> str:
        if not labels:
            return f"{name} {format_value(value)}"
        body = ",".join(f'{key}="{escape_label(str(val))}"' for key, val in labels.items())
        return f"{name}{{{body}}} {format_value(value)}"

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _one_hot(kind: str, items: Iterable[SourceMetrics | SinkMetrics]) -> list[tuple[Labels, float]]:
    return [({kind: item.name, "state": s}, float(item.state == s)) for item in items for s in STATES]


def _each(label: str, items: Iterable[Any], attr: str) -> list[tuple[Labels, float]]:
    return [({label: item.name}, getattr(item, attr)) for item in items]


def render(snapshot: MetricsSnapshot, loop_lag_s: float | None = None) -> str:
    """The snapshot as Prometheus text exposition format 0.0.4 (``CONTENT_TYPE``)."""
    out, snap = Exposition(), snapshot
    sources, sinks, pipes = snap.sources, snap.sinks, snap.pipelines
    out.family("info", "gauge", "Agent identity; always 1.", [(dict(snap.info), 1)])
    out.family("start_time_seconds", "gauge", "Process start, epoch seconds.", [({}, snap.start_time_s)])
    if loop_lag_s is not None:
        out.family("event_loop_lag_seconds", "gauge", "Latest event loop lag.", [({}, loop_lag_s)])

    out.family(
        "source_state", "gauge", "1 for the current state of each source.", _one_hot("source", sources)
    )
    readings = _each("source", sources, "readings_total")
    out.family("source_readings_total", "counter", "Readings emitted by the source, good or not.", readings)
    per_second = _each("source", sources, "readings_per_second")
    out.family(
        "source_readings_per_second", "gauge", "Readings per second over the last interval.", per_second
    )
    ages = [({"tag": t.name, "source": t.source}, t.last_good_age_s) for t in snap.tags]
    out.family(
        "tag_last_good_age_seconds", "gauge", "Seconds since the last good value; +Inf if never.", ages
    )

    out.family("bus_depth", "gauge", "Readings waiting on the bus.", [({}, snap.bus.depth)])
    out.family("bus_capacity", "gauge", "Capacity of the bus.", [({}, snap.bus.capacity)])
    out.family(
        "bus_dropped_total", "counter", "Readings dropped by the bus policy.", [({}, snap.bus.drops_total)]
    )

    out.family("sink_state", "gauge", "1 for the current state of each sink.", _one_hot("sink", sinks))
    out.family("outbox_depth_messages", "gauge", "Messages waiting.", _each("sink", sinks, "outbox_depth"))
    out.family("outbox_depth_bytes", "gauge", "Bytes waiting.", _each("sink", sinks, "outbox_bytes"))
    out.family("outbox_capacity_bytes", "gauge", "Outbox byte cap.", _each("sink", sinks, "outbox_max_bytes"))
    drops = [({"sink": s.name, "kind": k}, n) for s in sinks for k, n in sorted(s.drops_total.items())]
    out.family("outbox_dropped_total", "counter", "Messages dropped at the outbox cap, by kind.", drops)
    hours = _each("sink", sinks, "outage_hours_left")
    out.family(
        "outbox_outage_hours_left", "gauge", "Hours of outage the outbox absorbs at the current rate.", hours
    )

    latency = [({"pipeline": p.name}, p.latency) for p in pipes]
    out.histogram("inference_latency_seconds", "Model run time per window.", latency)
    out.family(
        "windows_scored_total", "counter", "Windows scored.", _each("pipeline", pipes, "windows_scored_total")
    )
    skipped = _each("pipeline", pipes, "windows_skipped_total")
    out.family(
        "windows_skipped_total", "counter", "Windows not scored for low coverage of good data.", skipped
    )
    raised = _each("pipeline", pipes, "alerts_raised_total")
    out.family("alerts_raised_total", "counter", "Alerts raised.", raised)
    out.family("alerts_open", "gauge", "Alerts open now.", _each("pipeline", pipes, "alerts_open"))
    models = [({"pipeline": p.name, "model": p.model_id}, 1) for p in pipes if p.model_id]
    out.family("model_info", "gauge", "The model each pipeline runs; always 1.", models)
    return out.text()
