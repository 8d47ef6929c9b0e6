"""The records that flow through the agent: readings in, messages out.

A ``Reading`` always says how good it is. A gap or a bad read is a reading with ``value=None`` and
``quality=BAD`` plus a reason, never a silent zero.

Encoding (issue 17): a message is serialised once, by ``encode_wire`` (or a sink's own ``Sink.encode``),
when the outbox appends it; the outbox stores those bytes and the sink publishes them as they are. A
readings message carries its per-source batch of ``Reading`` objects, not one dict per reading: the
objects are written straight into the JSON by ``encode_body``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

Value = float | int | bool | str | None


class Quality(enum.StrEnum):
    """Quality of one reading, after OPC UA's Good / Uncertain / Bad."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one tag at one instant.

    Attributes:
        tag: the tag's name, unique across the whole agent config.
        ts: source timestamp in epoch seconds (the PLC's when it gives one, else the read time).
        value: the decoded, scaled value; ``None`` whenever quality is BAD.
        quality: good, uncertain or bad.
        reason: why the quality is not good (a status code name, "timeout", "illegal address"...).
    """

    tag: str
    ts: float
    value: Value
    quality: Quality = Quality.GOOD
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tag": self.tag,
            "ts_ms": round(self.ts * 1000),  # issue 14: one time form in payloads, epoch ms
            "value": self.value,
            "quality": str(self.quality),
        }
        if self.reason:
            out["reason"] = self.reason
        return out


def numeric(reading: Reading) -> float | None:
    """The number a pipeline windows from a reading: None when BAD, not numeric (text tags) or not finite."""
    value = reading.value
    if reading.quality is Quality.BAD or value is None or not isinstance(value, bool | int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


NOT_FINITE = "not a finite number"
"""How the reason of a reading made BAD by ``not_finite`` starts."""


def not_finite(tag: str, ts: float, value: float) -> Reading:
    """The one rule for NaN and +-inf from any source, whatever its status said: BAD, value ``None``."""
    return bad(tag, ts, f"{NOT_FINITE}: {value}")


def bad(tag: str, ts: float, reason: str) -> Reading:
    """A BAD reading with its reason; the value is ``None`` by contract."""
    return Reading(tag, ts, None, Quality.BAD, reason)


class Kind(enum.StrEnum):
    """What a message is; decides its topic, its QoS and its drop priority in the outbox."""

    ALERT = "alert"
    STATUS = "status"
    FEATURES = "features"
    READINGS = "readings"


# Lower number = more important: dropped last, delivered first when a backlog exists.
PRIORITY: dict[Kind, int] = {Kind.ALERT: 0, Kind.STATUS: 1, Kind.FEATURES: 2, Kind.READINGS: 3}


@dataclass(frozen=True, slots=True)
class Message:
    """Something a pipeline or the runner wants delivered to every sink.

    Attributes:
        kind: alert, status, features or readings.
        key: the pipeline or source it is about; the last topic level.
        ts: event time in epoch seconds (window end for features and alerts).
        payload: body without the envelope fields (seq, replayed, schema): JSON types, numpy scalars,
            and for readings ``{"source": name, "readings": [Reading, ...]}`` (see ``encode_body``).
    """

    kind: Kind
    key: str
    ts: float
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message taken from a sink's outbox, with the fields the outbox owns.

    Attributes:
        id: the outbox's id for the message; ``ack`` takes these.
        seq: per-(kind, key) sequence number that increases by one and survives restarts.
        message: kind, key and ts always; the payload only from the memory outbox (the durable one
            keeps the bytes, not the objects).
        replayed: True when the message waited in the outbox through an outage or a restart.
        data: the bytes the sink's ``encode`` made at append, with ``replayed`` false; what is published.
    """

    id: int
    seq: int
    message: Message
    replayed: bool = False
    attempts: int = field(default=0, compare=False)
    data: bytes = field(default=b"", compare=False)

    def body(self) -> dict[str, Any]:
        """The published JSON object as a dict: for sinks that publish another shape (UNS, Sparkplug), which
        a durable outbox gives only the stored bytes. Readings are dicts here (``tag``, ``ts_ms``, ...)."""
        if self.data:
            loaded: dict[str, Any] = orjson.loads(self.data)
            return loaded
        body: dict[str, Any] = orjson.loads(encode_body(self.message))
        return body


SCHEMA_VERSION = 2  # 2: every time is ts_ms / *_ms, integer epoch milliseconds (issue 14)
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_REPLAYED_NO, _REPLAYED_YES = b',"replayed":false', b',"replayed":true'


def iso(ts: float) -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2026-11-20T22:46:00.123Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def encode_body(message: Message) -> bytes:
    """The payload as compact JSON bytes; NaN and infinities become null, unknown types their ``str``.

    The readings of a readings message are any ``Sequence[Reading]``; when the sequence has a
    ``json_rows()`` method (``agent.batch``) and the payload is ``{"source", "readings"}``, that method
    writes the rows: the same bytes ``json_rows(list(readings))`` would give.
    """
    payload = message.payload
    if message.kind is Kind.READINGS and "readings" in payload:
        readings = payload["readings"]
        own = getattr(readings, "json_rows", None)
        if own is not None and list(payload) == ["source", "readings"]:
            return b'{"source":' + _dumps(payload["source"]) + b',"readings":[' + own() + b"]}"
        payload = {**payload, "readings": _rows(readings)}
    return _dumps(payload)


def json_rows(readings: Iterable[Any]) -> bytes:
    """The JSON rows of plain readings (or rows already dicts), comma-joined, without the brackets."""
    return _dumps(_rows(readings))[1:-1]


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_OPTIONS, default=str)


def _rows(readings: Iterable[Any]) -> list[Any]:
    """One JSON object per reading (already-dict rows pass through)."""
    rows: list[Any] = []
    append = rows.append
    last_ts, last_ms = None, 0  # a poll's readings share one timestamp: round it once (issue 17)
    for r in readings:
        if r.__class__ is Reading and r.reason is None:
            if r.ts != last_ts:
                last_ts, last_ms = r.ts, round(r.ts * 1000)
            append({"tag": r.tag, "ts_ms": last_ms, "value": r.value, "quality": r.quality})
        else:
            append(r.to_dict() if isinstance(r, Reading) else r)
    return rows


class WireEncoder:
    """The default ``Sink.encode``: the JSON object of ``agent/schemas/<kind>.schema.json``.

    Envelope fields come first (``schema``, ``agent``, ``seq``, ``ts``, ``ts_ms``, ``replayed``), then the
    payload's own fields. ``replayed`` is written false; ``mark_replayed`` flips it in the bytes.
    """

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        agent = orjson.dumps(agent_id).decode()
        self._heads = {
            kind: f'{{"schema":"edge-agent/{kind.value}/{SCHEMA_VERSION}","agent":{agent}' for kind in Kind
        }

    def __call__(self, message: Message, seq: int) -> bytes:
        body = encode_body(message)
        head = (
            f'{self._heads[message.kind]},"seq":{seq},"ts":"{iso(message.ts)}",'
            f'"ts_ms":{round(message.ts * 1000)},"replayed":false'
        ).encode()
        return head + (b"," + body[1:] if len(body) > 2 else b"}")


def mark_replayed(data: bytes) -> bytes:
    """``data`` from ``WireEncoder`` with ``replayed`` true; the envelope head comes first, so the first
    occurrence is the envelope's own field, whatever the payload holds."""
    return data.replace(_REPLAYED_NO, _REPLAYED_YES, 1)
