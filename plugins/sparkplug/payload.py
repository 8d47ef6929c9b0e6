"""Sparkplug B metric values: datatypes from tag types, stable coercion, encoding and command decoding.

A metric's datatype is fixed by its birth: from the tag's configured type when it has one (a Modbus
``int16`` is an Int16), else from the first value seen (bool -> Boolean, int -> Int64, float -> Double,
str -> String). Later values are coerced to that datatype; one that does not fit (text on a Double) is
sent as null with quality BAD, so a host never sees a metric change type.

Quality travels as the metric property ``Quality`` (Int32, the codes Ignition uses: 192 good, 64 uncertain,
0 bad) and the unit as ``engUnit`` (String), both in births; data messages carry ``Quality`` only when a
value is not good.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agent.errors import FatalError
from agent.records import Quality, Value
from plugins.sparkplug import sparkplug_b_pb2 as pb

DT = pb.DataType
QUALITY_CODE = {Quality.GOOD: 192, Quality.UNCERTAIN: 64, Quality.BAD: 0}

# Configured tag types (Modbus vocabulary) -> Sparkplug datatypes.
TAG_TYPES = {
    "bool": "Boolean",
    "bit": "Boolean",
    "int16": "Int16",
    "uint16": "UInt16",
    "int32": "Int32",
    "uint32": "UInt32",
    "int64": "Int64",
    "uint64": "UInt64",
    "float32": "Float",
    "float64": "Double",
    "string": "String",
}
_SIGNED_BITS = {"Int8": 8, "Int16": 16, "Int32": 32, "Int64": 64}
_UNSIGNED_BITS = {"UInt8": 8, "UInt16": 16, "UInt32": 32, "UInt64": 64}
_INT_FIELD = {**dict.fromkeys(("Int8", "Int16", "Int32", "UInt8", "UInt16", "UInt32"), "int_value")}
_INT_FIELD.update({"Int64": "long_value", "UInt64": "long_value", "DateTime": "long_value"})


def datatype_for(tag_type: str | None, value: Value) -> str:
    """The datatype a new metric is born with: its configured type, else the type of ``value``."""
    if tag_type is not None and tag_type in TAG_TYPES:
        return TAG_TYPES[tag_type]
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Int64"
    if isinstance(value, str):
        return "String"
    return "Double"


def coerce(datatype: str, value: Value) -> Value:
    """``value`` as ``datatype`` holds it, or None when it does not fit (then the metric is null)."""
    if value is None:
        return None
    if datatype == "Boolean":
        return value if isinstance(value, bool) else None
    if datatype in ("String", "Text"):
        return value if isinstance(value, str) else None
    if isinstance(value, str):
        return None
    if datatype in ("Float", "Double"):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, float) and not value.is_integer():
        return None  # 2.5 on an Int16 would be a lie
    number = int(value)
    if datatype in _SIGNED_BITS:
        bits = _SIGNED_BITS[datatype]
        return number if -(2 ** (bits - 1)) <= number < 2 ** (bits - 1) else None
    if datatype in _UNSIGNED_BITS:
        return number if 0 <= number < 2 ** _UNSIGNED_BITS[datatype] else None
    return number


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one metric, ready to encode."""

    value: Value
    ts_ms: int
    quality: Quality = Quality.GOOD


def put_value(metric: Any, datatype: str, value: Value) -> None:
    """Set the oneof value of a protobuf ``Metric`` (or ``PropertyValue``); None sets ``is_null``."""
    if value is None:
        metric.is_null = True
    elif datatype == "Boolean":
        metric.boolean_value = bool(value)
    elif datatype in ("String", "Text"):
        metric.string_value = str(value)
    elif datatype == "Float":
        metric.float_value = float(value)
    elif datatype == "Double":
        metric.double_value = float(value)
    elif datatype in _INT_FIELD:
        bits = 32 if _INT_FIELD[datatype] == "int_value" else 64
        setattr(metric, _INT_FIELD[datatype], int(value) % (1 << bits))  # two's complement, per the spec
    else:
        raise FatalError(f"sparkplug: datatype {datatype} is not one the agent sends")


def add_property(props: Any, key: str, datatype: str, value: Value) -> None:
    props.keys.append(key)
    prop = props.values.add(type=DT[datatype])
    put_value(prop, datatype, value)


def read_value(metric: Any) -> Value:
    """The Python value of a decoded metric (commands): bool, int, float, str or None."""
    if metric.is_null:
        return None
    which = metric.WhichOneof("value")
    return None if which is None or which == "bytes_value" else getattr(metric, which)


def decode(raw: bytes) -> Any:
    """A received payload (NCMD / DCMD); ``ValueError`` when it is not a Sparkplug B payload."""
    try:
        return pb.Payload.FromString(raw)
    except Exception as exc:  # protobuf raises DecodeError, a plain Exception subclass
        raise ValueError(f"not a Sparkplug B payload: {exc}") from exc
