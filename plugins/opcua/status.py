"""OPC UA status codes and values turned into readings.

The two top bits of a status code give its severity (OPC 10000-4 §7.39): 00 Good, 01 Uncertain,
10 and 11 Bad. The status name (``BadNodeIdUnknown``, ``UncertainLastUsableValue``...) becomes the
reading's reason. Scalars become float, bool or str; arrays, structures and other types are
reported BAD with reason ``unsupported type <name>`` rather than guessed at.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import time
from typing import Any

from asyncua import ua

from agent.records import Quality, Reading, Value, bad, not_finite


def quality_of(code: int) -> Quality:
    """Quality from the severity bits of a status code."""
    severity = (code >> 30) & 0b11
    if severity == 0:
        return Quality.GOOD
    return Quality.UNCERTAIN if severity == 1 else Quality.BAD


def status_name(code: int) -> str:
    """The status code's symbolic name, e.g. ``BadNodeIdUnknown``."""
    name, _ = ua.status_codes.get_name_and_doc(code)
    return str(name)


def convert(value: Any) -> Value:
    """A decoded scalar as float, bool or str.

    Raises:
        TypeError: the value is an array, a structure or another type the agent does not carry.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):  # IntEnum values land here too
        return float(value)
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    if isinstance(value, enum.Enum) and isinstance(value.value, int):
        return float(value.value)
    kind = "array" if isinstance(value, list | tuple) else type(value).__name__
    raise TypeError(f"unsupported type {kind}")


_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_EPOCH_AWARE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _epoch(stamp: dt.datetime | None) -> float | None:
    # Subtraction, not .timestamp(): it is on the per-notification path and several times cheaper.
    if stamp is None or stamp.year < 1700:  # OPC UA encodes "no timestamp" as 1601-01-01
        return None
    return (stamp - (_EPOCH_NAIVE if stamp.tzinfo is None else _EPOCH_AWARE)).total_seconds()


def reading(tag: str, data: ua.DataValue, now: float | None = None) -> Reading:
    """The reading for one DataValue: source timestamp, else server timestamp, else ``now``."""
    ts = (
        _epoch(data.SourceTimestamp)
        or _epoch(data.ServerTimestamp)
        or (now if now is not None else time.time())
    )
    code = data.StatusCode.value if data.StatusCode is not None else 0
    variant = data.Value
    return reading_of(tag, ts, code, variant.Value if variant is not None else None)


def reading_of(tag: str, ts: float, code: int, raw: Any) -> Reading:
    """The reading for a decoded value ``raw`` with status ``code`` at ``ts``: the one rule both the
    asyncua-decoded path (``reading``) and the fast publish path (``plugins.opcua.changes``) apply."""
    if code == 0 and type(raw) is float:  # the common case, kept cheap: it runs per notification
        return Reading(tag, ts, raw) if -math.inf < raw < math.inf else not_finite(tag, ts, raw)
    quality = quality_of(code)
    if quality is Quality.BAD:
        return bad(tag, ts, status_name(code))
    try:
        value = convert(raw)
    except TypeError as exc:
        return bad(tag, ts, str(exc))
    if value is None:
        return bad(tag, ts, "no value")
    if isinstance(value, float) and not math.isfinite(value):
        return not_finite(tag, ts, value)
    reason = status_name(code) if quality is Quality.UNCERTAIN else None
    return Reading(tag, ts, value, quality, reason)
