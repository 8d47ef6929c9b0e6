"""The edge node: what it has told the host, and the Sparkplug messages each agent message becomes.

Pure and synchronous: every method takes the time (``now_ms``) and returns ``Out`` items to publish, in
order. The node is the agent; its devices are the sources (metrics = tags) and the pipelines (device
``{pipeline_prefix}{name}``, metrics ``score``, ``coverage``, ``status``, ``model``, ``features/<name>``
and ``alert/active|score|threshold|summary``). A device is born (DBIRTH) with its first data; a metric
the birth did not list makes the device born again with it, since a DDATA may only carry born metrics.
Readings go out by exception (only what changed in value or quality since the last message);
features and alerts every time. Messages resent from the outbox carry ``is_historical = true``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.records import Quality, Value
from plugins.sparkplug import sparkplug_b_pb2 as pb
from plugins.sparkplug.payload import DT, QUALITY_CODE, Sample, add_property, coerce, datatype_for, put_value
from plugins.sparkplug.session import Aliases, Seq

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"

MessageType = Literal["NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDATA", "DDEATH"]


@dataclass(frozen=True, slots=True)
class Out:
    """One Sparkplug message to publish."""

    type: MessageType
    topic: str
    payload: bytes


@dataclass
class MetricState:
    datatype: str
    unit: str | None = None
    last: Sample | None = None


@dataclass
class Device:
    metrics: dict[str, MetricState] = field(default_factory=dict)
    born: bool = False
    dead: bool = False  # a DDEATH was sent: no DDATA until the next DBIRTH


class EdgeNode:
    """One node of one group; ``tags`` is ``{source: {tag: {"unit": ..., "type": ...}}}`` from the config."""

    def __init__(
        self,
        group: str,
        node: str,
        *,
        tags: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
        pipeline_prefix: str = "pipeline-",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.group, self.node = group, node
        self.tags = tags or {}
        self.pipeline_prefix = pipeline_prefix
        self.info = dict(info or {})
        self.seq = Seq()
        self.aliases = Aliases()
        self.devices: dict[str, Device] = {}

    def topic(self, kind: str, device: str | None = None) -> str:
        base = f"{NAMESPACE}/{self.group}/{kind}/{self.node}"
        return base if device is None else f"{base}/{device}"

    # -- births and deaths ------------------------------------------------------------------------

    def death(self, bdseq: int, now_ms: int) -> bytes:
        """The NDEATH payload: the session's bdSeq by name, no seq (it is the will)."""
        payload = pb.Payload(timestamp=now_ms)
        payload.metrics.add(name=BDSEQ, datatype=DT["Int64"], long_value=bdseq)
        return payload.SerializeToString()

    def birth(self, bdseq: int, now_ms: int) -> list[Out]:
        """NBIRTH (seq 0) and a DBIRTH for every device known so far, with current values."""
        payload = pb.Payload(timestamp=now_ms, seq=self.seq.birth())
        payload.metrics.add(name=BDSEQ, timestamp=now_ms, datatype=DT["Int64"], long_value=bdseq)
        rebirth = payload.metrics.add(name=REBIRTH, alias=self.aliases.of(None, REBIRTH))
        rebirth.timestamp, rebirth.datatype, rebirth.boolean_value = now_ms, DT["Boolean"], False
        for key in ("version", "config_hash"):
            if self.info.get(key):
                name = f"Properties/{key}"
                m = payload.metrics.add(name=name, alias=self.aliases.of(None, name), timestamp=now_ms)
                m.datatype, m.string_value = DT["String"], str(self.info[key])
        out = [Out("NBIRTH", self.topic("NBIRTH"), payload.SerializeToString())]
        for name, device in self.devices.items():
            device.born = False
            if device.metrics and not device.dead:
                out.append(self._dbirth(name, device, now_ms))
        return out

    def _dbirth(self, name: str, device: Device, now_ms: int) -> Out:
        payload = pb.Payload(timestamp=now_ms, seq=self.seq.next())
        for metric_name, state in device.metrics.items():
            m = payload.metrics.add(name=metric_name, alias=self.aliases.of(name, metric_name))
            m.datatype = DT[state.datatype]
            last = state.last
            m.timestamp = last.ts_ms if last is not None else now_ms
            put_value(m, state.datatype, last.value if last is not None else None)
            if state.unit:
                add_property(m.properties, "engUnit", "String", state.unit)
            quality = last.quality if last is not None else Quality.BAD
            add_property(m.properties, "Quality", "Int32", QUALITY_CODE[quality])
        device.born, device.dead = True, False
        return Out("DBIRTH", self.topic("DBIRTH", name), payload.SerializeToString())

    def ddeath(self, name: str, now_ms: int) -> list[Out]:
        device = self.devices.get(name)
        if device is None or not device.born or device.dead:
            return []
        device.dead, device.born = True, False
        payload = pb.Payload(timestamp=now_ms, seq=self.seq.next())
        return [Out("DDEATH", self.topic("DDEATH", name), payload.SerializeToString())]

    # -- data -------------------------------------------------------------------------------------

    def data(
        self,
        device_name: str,
        samples: Iterable[tuple[str, Sample, str | None]],
        now_ms: int,
        *,
        historical: bool = False,
        by_exception: bool = True,
    ) -> list[Out]:
        """DDATA for ``(metric, sample, tag type)`` items, preceded by a DBIRTH when the device or one of
        the metrics is new (or the device was dead). ``historical`` samples (resent from the outbox) all
        go out, flagged, and never become a birth value or replace a newer last value."""
        device = self.devices.setdefault(device_name, Device())
        known = self.tags.get(device_name, {})
        changed: list[tuple[str, MetricState, Sample]] = []
        grew = False
        for name, sample, tag_type in samples:
            state = device.metrics.get(name)
            if state is None:
                meta = known.get(name, {})
                datatype = datatype_for(meta.get("type") or tag_type, sample.value)
                state = device.metrics[name] = MetricState(datatype, meta.get("unit"))
                grew = True
            fitted = coerce(state.datatype, sample.value)
            quality = sample.quality if fitted is not None or sample.value is None else Quality.BAD
            sample = Sample(fitted, sample.ts_ms, quality)
            last = state.last
            if by_exception and last is not None and (last.value, last.quality) == (fitted, quality):
                continue
            changed.append((name, state, sample))
        out: list[Out] = []
        if grew or not device.born:
            firsts: dict[str, Sample] = {}
            for name, state, sample in changed:
                if state.last is None and not historical:  # history is never a birth value
                    firsts.setdefault(name, sample)
            for name, sample in firsts.items():
                device.metrics[name].last = sample  # born with its first value
            out.append(self._dbirth(device_name, device, now_ms))
            changed = [c for c in changed if firsts.get(c[0]) is not c[2]]
        if not changed:
            return out
        payload = pb.Payload(timestamp=now_ms, seq=self.seq.next())
        for name, state, sample in changed:
            m = payload.metrics.add(alias=self.aliases.of(device_name, name), timestamp=sample.ts_ms)
            put_value(m, state.datatype, sample.value)
            if historical:
                m.is_historical = True
            if sample.quality is not Quality.GOOD:
                add_property(m.properties, "Quality", "Int32", QUALITY_CODE[sample.quality])
            if not historical or state.last is None or sample.ts_ms >= state.last.ts_ms:
                state.last = sample
        out.append(Out("DDATA", self.topic("DDATA", device_name), payload.SerializeToString()))
        return out

    def pipeline_device(self, pipeline: str) -> str:
        return f"{self.pipeline_prefix}{pipeline}"


def reading_samples(readings: Iterable[Mapping[str, Any]]) -> list[tuple[str, Sample, str | None]]:
    """``(tag, sample, None)`` for each reading of a readings message (``ts_ms``, or legacy ``ts`` s)."""
    out: list[tuple[str, Sample, str | None]] = []
    for r in readings:
        ts_ms = r["ts_ms"] if "ts_ms" in r else round(float(r["ts"]) * 1000)
        value: Value = r.get("value")
        out.append((str(r["tag"]), Sample(value, int(ts_ms), Quality(r.get("quality", "good"))), None))
    return out


def feature_samples(body: Mapping[str, Any], ts_ms: int) -> list[tuple[str, Sample, str | None]]:
    """Metrics of a features message: score, coverage, status, model and every feature (Double)."""
    out: list[tuple[str, Sample, str | None]] = [
        ("score", Sample(body.get("score"), ts_ms), "float64"),
        ("coverage", Sample(body.get("coverage"), ts_ms), "float64"),
        ("status", Sample(body.get("status"), ts_ms), "string"),
        ("model", Sample(body.get("model"), ts_ms), "string"),
    ]
    for name, value in (body.get("features") or {}).items():
        out.append((f"features/{name}", Sample(value, ts_ms), "float64"))
    return out


def alert_samples(body: Mapping[str, Any], ts_ms: int) -> list[tuple[str, Sample, str | None]]:
    return [
        ("alert/active", Sample(body.get("state") == "raised", ts_ms), "bool"),
        ("alert/score", Sample(body.get("score"), ts_ms), "float64"),
        ("alert/threshold", Sample(body.get("threshold"), ts_ms), "float64"),
        ("alert/summary", Sample(body.get("summary"), ts_ms), "string"),
    ]
