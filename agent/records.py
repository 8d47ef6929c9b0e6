"""The records that flow through the agent: readings in, messages out.

A ``Reading`` always says how good it is. A gap or a bad read is a reading with ``value=None`` and
``quality=BAD`` plus a reason, never a silent zero.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

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
        payload: JSON-serialisable body, without the envelope fields (seq, replayed, schema).
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
        replayed: True when the message waited in the outbox through an outage or a restart.
    """

    id: int
    seq: int
    message: Message
    replayed: bool = False
    attempts: int = field(default=0, compare=False)
