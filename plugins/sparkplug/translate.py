"""Agent messages -> Sparkplug messages, through the ``EdgeNode`` model (pure, clock passed in).

readings (source ``s``)  -> DDATA of device ``s`` by exception (DBIRTH first when new);
features (pipeline ``p``) -> DDATA of device ``{pipeline_prefix}p``: score, coverage, status, features/*;
alert (pipeline ``p``)    -> DDATA of the same device: alert/active, alert/score, alert/threshold, ...;
status (the agent)       -> DDEATH of a source device whose source went down, and ``alert/active`` of
                            each pipeline from ``alert_open`` (so a restarted host learns it).
"""

from __future__ import annotations

from agent.records import Envelope, Kind
from plugins.sparkplug.node import (
    EdgeNode,
    Out,
    Sample,
    alert_samples,
    feature_samples,
    reading_samples,
)


def translate(node: EdgeNode, envelope: Envelope, now_ms: int) -> list[Out]:
    message = envelope.message
    body = envelope.body()  # a durable outbox keeps only the bytes the default encoder made
    ts_ms = round(message.ts * 1000)
    historical = envelope.replayed
    if message.kind is Kind.READINGS:
        source = str(body.get("source", message.key))
        samples = reading_samples(body.get("readings", []))
        # by exception when live; what waited in the outbox is history and goes out whole
        return node.data(source, samples, now_ms, historical=historical, by_exception=not historical)
    if message.kind is Kind.FEATURES:
        device = node.pipeline_device(message.key)
        samples = feature_samples(body, ts_ms)
        known = node.devices.get(device)
        if known is None or "alert/active" not in known.metrics:
            samples.append(("alert/active", Sample(None, ts_ms), "bool"))  # unknown until an alert or status
        return node.data(device, samples, now_ms, historical=historical, by_exception=False)
    if message.kind is Kind.ALERT:
        device = node.pipeline_device(message.key)
        return node.data(
            device, alert_samples(body, ts_ms), now_ms, historical=historical, by_exception=False
        )
    return _status(node, body, ts_ms, now_ms, historical)


def _status(node: EdgeNode, body: dict, ts_ms: int, now_ms: int, historical: bool) -> list[Out]:
    out: list[Out] = []
    if historical:
        return out  # an old status says nothing about now
    for source, state in (body.get("sources") or {}).items():
        if isinstance(state, dict) and state.get("state") in ("down", "stopped"):
            out += node.ddeath(source, now_ms)
    for pipeline, stats in (body.get("pipelines") or {}).items():
        device = node.devices.get(node.pipeline_device(pipeline))
        if device is None or not device.born or not isinstance(stats, dict) or "alert_open" not in stats:
            continue
        sample = Sample(bool(stats["alert_open"]), ts_ms)
        out += node.data(node.pipeline_device(pipeline), [("alert/active", sample, "bool")], now_ms)
    return out
