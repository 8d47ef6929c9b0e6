"""The model card the status page shows, read from a live model's ``edge_agent.*`` metadata.

Metadata comes from a file someone else wrote, so every read here is total: a value that is missing
or does not parse is ``None`` on the card, never an exception (the card is for people; the model's
own loader decides whether the model may run).
"""

from __future__ import annotations

import json
import math
from typing import Any

META = "edge_agent."


def card(pipeline: Any) -> dict[str, Any]:
    """What a person should know about ``pipeline``'s live model: training, features, bands, thresholds."""
    model = pipeline.model
    meta: dict[str, str] = dict(model.metadata)
    names = list(pipeline.names)
    columns = {
        key: _floats(meta, key, len(names)) for key in ("center", "scale", "normal_low", "normal_high")
    }
    span = _json(meta, "training_span")
    trained = None
    if (
        isinstance(span, dict)
        and _number(span.get("start")) is not None
        and _number(span.get("end")) is not None
    ):
        trained = {"start": _number(span["start"]), "end": _number(span["end"])}
    return {
        "pipeline": pipeline.name,
        "model": model.id,
        "file": model.path.name,
        "kind": meta.get(META + "kind"),
        "trained": trained,
        "n_train": _int(meta.get(META + "n_train")),
        "data_hash": meta.get(META + "data_hash") or None,
        "threshold": pipeline.alert.threshold if pipeline.alert else None,
        "clear_threshold": pipeline.alert.clear_threshold if pipeline.alert else None,
        "threshold_rule": meta.get(META + "threshold_rule") or None,
        # The share of normal windows the trained limits expect at or over the threshold (the card's).
        "false_alarm_rate": _number(meta.get(META + "false_alarm_rate")),
        "features": [
            {
                "name": name,
                "center": _at(columns["center"], i),
                "scale": _at(columns["scale"], i),
                "low": _at(columns["normal_low"], i),
                "high": _at(columns["normal_high"], i),
            }
            for i, name in enumerate(names)
        ],
    }


def _json(meta: dict[str, str], key: str) -> Any:
    try:
        return json.loads(meta.get(META + key) or "null")
    except (ValueError, RecursionError):
        return None


def _floats(meta: dict[str, str], key: str, n: int) -> list[float | None] | None:
    values = _json(meta, key)
    if not isinstance(values, list) or len(values) != n:
        return None
    return [_number(v) for v in values]


def _at(values: list[float | None] | None, i: int) -> float | None:
    return values[i] if values is not None else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return x if math.isfinite(x) else None


def _int(value: Any) -> int | None:
    x = _number(value)
    return int(x) if x is not None else None
