"""UNS mode of the MQTT sink: one retained topic per tag and one per pipeline's alert state.

A dashboard that subscribes after the agent started still sees every tag's present value and whether
each pipeline is in alarm now, because the broker keeps the last message of each topic (retained).

Tag topic ``{prefix}/{agent}/{source}/{tag}``: ``{"schema", "value", "ts_ms", "quality", "unit"}`` (and
``reason`` when not good). The JSON type of ``value`` is fixed per tag by ``TypeLock``: a bool tag is
always a bool, a numeric tag always a JSON float (so InfluxDB never sees an integer then a float), a text
tag always a string; a value of another type is sent as null, quality bad, with the reason. Only the
newest reading of each tag is published, and never one older than what the topic already holds.

Alert-state topic ``{prefix}/{agent}/alerts/{pipeline}/state``: ``{"schema", "pipeline", "active",
"state", "ts_ms", "score", "threshold", "summary"}`` from each alert, and from the periodic status
(``alert_open``) when it disagrees with what was published, so a restarted agent corrects the topic.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from agent.errors import FatalError
from agent.records import Envelope, Kind

JsonType = Literal["bool", "number", "string"]
Item = tuple[str, bytes, int, bool]
RESERVED = frozenset({"status", "alerts", "features", "readings"})  # the agent's own topic levels
_BOOL_TYPES = {"bool", "bit"}
TAG_SCHEMA = "edge-agent/tag/1"
STATE_SCHEMA = "edge-agent/alert-state/1"


def json_type(tag_type: str | None, value: Any) -> JsonType | None:
    """The JSON type a tag is pinned to: from its configured type, else from its first value."""
    if tag_type is not None:
        return "bool" if tag_type in _BOOL_TYPES else "string" if tag_type == "string" else "number"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None  # null: decided by the first real value


class TypeLock:
    """Keeps each tag's value in one JSON type; ``fit`` returns ``(value, reason)``."""

    def __init__(self, hints: Mapping[str, str | None] | None = None) -> None:
        self._types: dict[str, JsonType] = {}
        self._hints = dict(hints or {})

    def fit(self, tag: str, value: Any) -> tuple[Any, str | None]:
        if value is None:
            return None, None
        locked = self._types.get(tag)
        if locked is None:
            found = json_type(self._hints.get(tag), value)
            if found is None:
                return None, None
            locked = self._types[tag] = found
        if locked == "bool":
            return (value, None) if isinstance(value, bool) else (None, f"not a bool: {value!r}"[:100])
        if locked == "string":
            return (value, None) if isinstance(value, str) else (None, f"not a string: {value!r}"[:100])
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"not a number: {value!r}"[:100]
        number = float(value)
        return (number, None) if math.isfinite(number) else (None, "not a finite number")


class Uns:
    """Builds the retained UNS items of a batch; see the module docstring."""

    def __init__(
        self, base: str, tags: Mapping[str, Mapping[str, Mapping[str, Any]]], qos: int, keep_batch: bool
    ):
        clash = sorted(RESERVED & set(tags))
        if clash:
            raise FatalError(
                f"uns: source name {clash[0]!r} is one of the agent's own topic levels "
                f"({', '.join(sorted(RESERVED))}); rename the source"
            )
        self.base, self.qos, self.keep_batch = base, qos, keep_batch
        self._units = {s: {t: meta.get("unit") for t, meta in ts.items()} for s, ts in tags.items()}
        self._locks = {s: TypeLock({t: meta.get("type") for t, meta in ts.items()}) for s, ts in tags.items()}
        self._newest: dict[tuple[str, str], int] = {}
        self._active: dict[str, bool] = {}
        self._dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

    def items(self, batch: Sequence[Envelope], default: Callable[[Envelope], Item]) -> list[Item]:
        out: list[Item] = []
        for env in batch:
            kind = env.message.kind
            if kind is not Kind.READINGS or self.keep_batch:
                out.append(default(env))
            if kind is Kind.READINGS:
                out += self._tags(env.body())
            elif kind is Kind.ALERT:
                out.append(self._alert(env.message.key, env.body(), round(env.message.ts * 1000)))
            elif kind is Kind.STATUS and not env.replayed:
                out += self._status(env.body(), round(env.message.ts * 1000))
        return out

    def _tags(self, body: Mapping[str, Any]) -> list[Item]:
        source = str(body.get("source"))
        latest: dict[str, Mapping[str, Any]] = {}
        for r in body.get("readings", []):
            latest[str(r["tag"])] = r  # readings are in time order: the last one is the present
        lock = self._locks.setdefault(source, TypeLock())
        units = self._units.get(source, {})
        out: list[Item] = []
        for tag, r in latest.items():
            ts_ms = int(r["ts_ms"]) if "ts_ms" in r else round(float(r["ts"]) * 1000)
            if ts_ms < self._newest.get((source, tag), ts_ms):
                continue  # an older value resent from the outbox must not replace the present
            self._newest[(source, tag)] = ts_ms
            value, reason = lock.fit(tag, r.get("value"))
            quality = "bad" if reason else r.get("quality", "good")
            body_out: dict[str, Any] = {
                "schema": TAG_SCHEMA,
                "value": value,
                "ts_ms": ts_ms,
                "quality": quality,
                "unit": units.get(tag),
            }
            if reason or r.get("reason"):
                body_out["reason"] = reason or r.get("reason")
            out.append((f"{self.base}/{source}/{tag}", self._dumps(body_out).encode(), self.qos, True))
        return out

    def _alert(self, pipeline: str, body: Mapping[str, Any], ts_ms: int) -> Item:
        active = body.get("state") == "raised"
        self._active[pipeline] = active
        state = {
            "schema": STATE_SCHEMA,
            "pipeline": pipeline,
            "active": active,
            "state": body.get("state"),
            "ts_ms": ts_ms,
            "score": body.get("score"),
            "threshold": body.get("threshold"),
            "summary": body.get("summary"),
        }
        return self._state_item(pipeline, state)

    def _status(self, body: Mapping[str, Any], ts_ms: int) -> list[Item]:
        out = []
        for pipeline, stats in (body.get("pipelines") or {}).items():
            if not isinstance(stats, dict) or "alert_open" not in stats:
                continue
            active = bool(stats["alert_open"])
            if self._active.get(pipeline) == active:
                continue
            self._active[pipeline] = active
            state = {
                "schema": STATE_SCHEMA,
                "pipeline": pipeline,
                "active": active,
                "state": "raised" if active else "normal",
                "ts_ms": ts_ms,
                "score": stats.get("last_score"),
                "threshold": None,
                "summary": None,
            }
            out.append(self._state_item(pipeline, state))
        return out

    def _state_item(self, pipeline: str, state: dict[str, Any]) -> Item:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in state.items()}
        return f"{self.base}/alerts/{pipeline}/state", self._dumps(clean).encode(), self.qos, True
