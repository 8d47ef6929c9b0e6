"""The status page and its JSON API: what a person at the machine sees, from the running agent itself.

``StatusFeed`` keeps what the runtime does not: the last reading of every tag, an hour of window
scores per pipeline and the recent alerts. The runtime feeds it from one place each (readings as a
source emits them, messages as the pipelines emit them); it only stores references and counts, so it
costs the data path a dict write per reading, and one per ``ReadingBatch`` (issue 17).

``StatusApi`` answers ``/`` (the page, from ``agent/ops/web``) and ``/api/...`` (documented in
docs/status-page.md, shapes in ``agent/schemas/status-api.schema.json``) from a runtime view and the
feed. ``/api/status`` is built at most once per ``min_interval`` and shared by every client, so two
browsers polling cost what one does; answers are bytes handed to the server, which writes them with a
deadline, so a slow client never holds the agent.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any

from agent.batch import ReadingBatch, parts
from agent.ops.http import Request, Response
from agent.ops.metrics import MetricsSnapshot
from agent.ops.status_card import card
from agent.records import Kind, Message, Reading

HORIZON_S = 3600.0  # the chart's hour
SCHEMA = "edge-agent/status-api/1"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


class StatusFeed:
    """Bounded buffers for the page, fed by the runtime; every buffer has a fixed maximum size.

    Args:
        clock: wall time, for the age of each tag's last reading.
        points: window scores kept per pipeline (an hour at a 1 s hop).
        alerts: alert transitions kept (oldest dropped first).
    """

    def __init__(self, clock: Callable[[], float] = time.time, points: int = 3600, alerts: int = 50) -> None:
        self.clock = clock
        # tag, or a batch's tags -> (order of arrival, the reading or the batch, arrival time)
        self._last: dict[Any, tuple[int, Any, float]] = {}
        self._arrivals = 0
        self.series: dict[str, deque[tuple[float, float | None, float, int]]] = {}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=alerts)
        self._points = points

    def readings(self, readings: Sequence[Reading]) -> None:
        """Called with every batch a source emits; a ``ReadingBatch`` is kept whole."""
        now, last = self.clock(), self._last
        for part in parts(readings):
            self._arrivals += 1
            seq = self._arrivals
            if part.__class__ is ReadingBatch:
                last[part.layout.tags] = (seq, part, now)
            else:
                for r in part:
                    last[r.tag] = (seq, r, now)

    @property
    def tags(self) -> dict[str, tuple[Reading, float]]:
        """tag -> (its last reading, arrival time); built when asked (the page, once a second at most)."""
        out: dict[str, tuple[Reading, float]] = {}
        for _, what, arrived in sorted(self._last.values(), key=lambda e: e[0]):
            if what.__class__ is ReadingBatch:
                out.update((r.tag, (r, arrived)) for r in what)
            else:
                out[what.tag] = (what, arrived)
        return out

    def messages(self, messages: Iterable[Message]) -> None:
        """Called with every batch of messages the pipelines emit (features and alerts are kept)."""
        for m in messages:
            if m.kind is Kind.FEATURES:
                p = m.payload
                series = self.series.get(p["pipeline"])
                if series is None:
                    series = self.series[p["pipeline"]] = deque(maxlen=self._points)
                skipped = int(p["status"] == "skipped")
                end = p["window"]["end_ms"] / 1000  # series and `since` stay in epoch seconds
                series.append((end, p["score"], float(p["coverage"]), skipped))
            elif m.kind is Kind.ALERT:
                self.alerts.appendleft({**m.payload, "received_at": self.clock()})


class StatusApi:
    """The ``app`` of the health server: the page's files and ``/api/status``, ``/api/series``, ``/api/models``.

    Args:
        rt: the runtime view (``agent.ops.observe.RuntimeView``); only read.
        feed: the buffers the runtime feeds.
        snapshot: the metrics snapshot builder (for the outbox's outage budget).
        min_interval: seconds an ``/api/status`` answer is reused.
    """

    def __init__(
        self, rt: Any, feed: StatusFeed, snapshot: Callable[[], MetricsSnapshot], min_interval: float = 1.0
    ) -> None:
        self.rt, self.feed, self.snapshot = rt, feed, snapshot
        self.min_interval = min_interval
        self._status: tuple[float, bytes] = (-math.inf, b"")
        self._models: tuple[tuple[str | None, ...], bytes] = ((), b"")
        self._files = {
            f.name: f.read_bytes()
            for f in resources.files("agent.ops.web").iterdir()
            if f.is_file() and "." + f.name.rsplit(".", 1)[-1] in _TYPES
        }

    def __call__(self, request: Request) -> Response | None:
        path = request.path
        if path == "/":
            return 200, _TYPES[".html"], self._files["index.html"]
        if path.startswith("/static/") and path[8:] in self._files:
            return 200, _TYPES["." + path.rsplit(".", 1)[-1]], self._files[path[8:]]
        if path == "/api/status":
            now = time.monotonic()
            if now - self._status[0] >= self.min_interval:
                self._status = (now, _dumps(self.status()))
            return 200, "application/json", self._status[1]
        if path == "/api/series":
            try:
                since = float(request.query.get("since", "-inf"))
            except ValueError:
                return 400, "application/json", b'{"error": "since must be a number (epoch seconds)"}\n'
            return 200, "application/json", _dumps(self.series(since, request.query.get("pipeline")))
        if path == "/api/models":
            ids = tuple(p.model.id if p.model else None for p in self.rt.pipelines)
            if ids != self._models[0] or not self._models[1]:
                self._models = (ids, _dumps(self.models()))
            return 200, "application/json", self._models[1]
        if path in ("/api", "/api/"):
            return 200, "application/json", _dumps({"schema": SCHEMA, "paths": API_PATHS})
        return None

    def status(self) -> dict[str, Any]:
        """The body of ``/api/status``."""
        rt, now = self.rt, time.time()
        agent = rt.cfg.agent
        return {
            "schema": SCHEMA,
            "generated_at": now,
            "agent": {
                "id": agent.id,
                "version": rt.info.get("version"),
                "language": getattr(agent, "language", "en"),
                "config_hash": rt.info.get("config_hash"),
                "started_at": rt.started_at,
                "uptime_s": round(now - rt.started_at, 1),
            },
            "sources": [_component(s.ctx.status, s.cfg.type) for s in rt.sources.values()],
            "tags": self._tags(now),
            "bus": {
                "depth": rt.bus.stats.depth,
                "capacity": rt.bus.stats.capacity,
                "dropped_readings": rt.bus.stats.dropped_readings,
            },
            "sinks": self._sinks(),
            "pipelines": [self._pipeline(p) for p in rt.pipelines],
            "alerts": list(self.feed.alerts),
        }

    def _tags(self, now: float) -> list[dict[str, Any]]:
        seen = self.feed.tags
        out = []
        listed = set()
        for source in self.rt.cfg.sources:
            for tag in source.tags:
                listed.add(tag.name)
                out.append(_tag(tag.name, source.name, tag.unit, seen.get(tag.name), now))
        out += [_tag(name, None, None, last, now) for name, last in seen.items() if name not in listed]
        return out

    def _sinks(self) -> list[dict[str, Any]]:
        hours = {s.name: s.outage_hours_left for s in self.snapshot().sinks}
        out = []
        for k in self.rt.sinks.values():
            st = k.outbox.stats
            left = hours.get(k.ctx.name, math.inf)
            outbox = {
                "depth": st.depth,
                "depth_bytes": st.depth_bytes,
                "max_bytes": k.cfg.outbox.max_bytes,
                "dropped": dict(st.dropped),
                "outage_hours_left": left if math.isfinite(left) else None,
            }
            out.append({**_component(k.ctx.status, k.cfg.type), "outbox": outbox})
        return out

    def _pipeline(self, p: Any) -> dict[str, Any]:
        last = self.feed.series.get(p.name)
        point = last[-1] if last else None
        return {
            "name": p.name,
            "tags": list(p.tags),
            "model": p.model.id if p.model else None,
            "threshold": p.alert.threshold if p.alert else None,
            "clear_threshold": p.alert.clear_threshold if p.alert else None,
            "alert_open": bool(p.alert and p.alert.open),
            "windows": p.stats.windows,
            "scored": p.stats.scored,
            "skipped": p.stats.skipped,
            "alerts_raised": p.stats.alerts_raised,
            "last_score": _finite(p.stats.last_score),
            "last_coverage": point[2] if point else None,
            "last_window_end": point[0] if point else None,
        }

    def series(self, since: float, only: str | None = None) -> dict[str, Any]:
        """The body of ``/api/series``: the last hour of window scores after ``since`` (window end)."""
        out = []
        for p in self.rt.pipelines:
            if only is not None and p.name != only:
                continue
            points = self.feed.series.get(p.name) or deque()
            start = max(since, points[-1][0] - HORIZON_S) if points else since
            out.append(
                {
                    "name": p.name,
                    "threshold": p.alert.threshold if p.alert else None,
                    "clear_threshold": p.alert.clear_threshold if p.alert else None,
                    "points": [[t, _finite(s), c, k] for t, s, c, k in points if t > start],
                }
            )
        return {"schema": SCHEMA, "horizon_s": HORIZON_S, "pipelines": out}

    def models(self) -> dict[str, Any]:
        """The body of ``/api/models``: the model card of each pipeline's live model."""
        return {"schema": SCHEMA, "models": [card(p) for p in self.rt.pipelines if p.model is not None]}


API_PATHS = {
    "/api/status": "agent, sources, tags, bus, sinks with outbox, pipelines, recent alerts",
    "/api/series?since=<t>&pipeline=<name>": "window scores of the last hour after t, with thresholds",
    "/api/models": "the model card of each pipeline's live model",
}


def _component(status: Any, kind: str) -> dict[str, Any]:
    return {
        "name": status.name,
        "type": kind,
        "state": status.state.value,
        "since": status.since,
        "last_error": status.last_error,
        "failures": status.failures,
    }


def _tag(name: str, source: str | None, unit: str | None, last: Any, now: float) -> dict[str, Any]:
    if last is None:
        return {"name": name, "source": source, "unit": unit, "value": None, "quality": None, "age_s": None}
    reading, arrived = last
    value = reading.value
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    return {
        "name": name,
        "source": source,
        "unit": unit,
        "value": value,
        "quality": reading.quality.value,
        "reason": reading.reason,
        "age_s": round(max(0.0, now - arrived), 3),
    }


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), allow_nan=False, default=str).encode("utf-8")
