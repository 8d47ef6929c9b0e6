"""The model metadata contract: one total reading of a model's ``edge_agent.*`` keys, for everyone.

A model file is written by someone else (``edge-agent train``, a data scientist's skl2onnx export, an
attacker), so every key is read here once, with its rule, and anything that does not follow the rule is
a ``ModelError`` naming the key and the value. The loader (``agent.stream.inference.load``) reads the
contract when it loads a model and refuses the model if the contract does not hold; everyone after it
(the pipeline, the status page's card) only uses the parsed ``Contract`` and never reads the raw
strings again, so nothing shows or uses a value the loader would refuse. Every key is optional; an
absent (or empty) key is ``None``.

========================  =========================================================================
key                       rule
========================  =========================================================================
``feature_names``         JSON list of strings, equal to the pipeline's feature names in order
``threshold``             finite number
``clear_threshold``       finite number
``center``, ``scale``     JSON list of one finite number per feature
``normal_low/high``       JSON list of one finite number per feature
``training_span``         JSON object ``{"start": s, "end": s}`` of finite epoch seconds, or ``{}``
``n_train``               whole number >= 0
``false_alarm_rate``      finite number in [0, 1]
``kind``, ``data_hash``,  text (at most ``MAX_META_CHARS``)
``threshold_rule``
========================  =========================================================================
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import ModelError
from agent.stream.explain import Normal

META = "edge_agent."
MAX_META_CHARS = 1 << 20  # a metadata value longer than this is refused before it is parsed
NUMBER_KEYS = ("threshold", "clear_threshold")
NORMAL_KEYS = {"center": "center", "scale": "scale", "low": "normal_low", "high": "normal_high"}
TEXT_KEYS = ("kind", "data_hash", "threshold_rule")


@dataclass(frozen=True)
class Contract:
    """A model's metadata, parsed. ``numbers`` holds ``NUMBER_KEYS``; ``trained`` is (start, end)."""

    feature_names: list[str] | None = None
    numbers: dict[str, float | None] = field(default_factory=dict)
    normal: Normal = field(default_factory=Normal)
    trained: tuple[float, float] | None = None
    n_train: int | None = None
    false_alarm_rate: float | None = None
    text: dict[str, str | None] = field(default_factory=dict)


def read(meta: dict[str, str], names: Sequence[str], path: Path) -> Contract:
    """The contract of a model whose raw metadata is ``meta``, for a pipeline producing ``names``.

    Raises:
        ModelError: a key breaks its rule (the message names the key and shows the value), or the
            feature names differ from ``names`` (the first difference).
    """
    model_names = meta_names(meta, path)
    if model_names is not None:
        _check_names(model_names, names, path)
    n = len(names)
    rate = meta_number(meta, "false_alarm_rate", path)
    if rate is not None and not 0.0 <= rate <= 1.0:
        raise _meta_error(
            path, "false_alarm_rate", meta[META + "false_alarm_rate"], "is not a share in [0, 1]"
        )
    count = meta_number(meta, "n_train", path)
    if count is not None and (count < 0 or count != int(count)):
        raise _meta_error(path, "n_train", meta[META + "n_train"], "is not a whole number >= 0")
    return Contract(
        feature_names=model_names,
        numbers={key: meta_number(meta, key, path) for key in NUMBER_KEYS},
        normal=Normal(**{attr: meta_floats(meta, key, n, path) for attr, key in NORMAL_KEYS.items()}),
        trained=_span(meta, path),
        n_train=int(count) if count is not None else None,
        false_alarm_rate=rate,
        text={key: _text(meta, key, path) for key in TEXT_KEYS},
    )


def _meta_error(path: Path, key: str, raw: str, why: str) -> ModelError:
    shown = raw if len(raw) <= 60 else raw[:57] + "..."
    return ModelError(f"{path}: metadata {META + key} = {shown!r} {why}")


def _text(meta: dict[str, str], key: str, path: Path) -> str | None:
    raw = meta.get(META + key)
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_META_CHARS:
        raise _meta_error(path, key, raw, f"is longer than {MAX_META_CHARS} characters")
    return raw


def meta_json(meta: dict[str, str], key: str, path: Path) -> Any:
    """The JSON value of metadata ``edge_agent.<key>`` (None when absent or empty); total: bad JSON,
    absurd nesting or size is a ``ModelError`` naming the key and the value."""
    raw = _text(meta, key, path)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except RecursionError:
        raise _meta_error(path, key, raw, "is nested too deeply to read") from None
    except ValueError as exc:
        raise _meta_error(path, key, raw, f"is not valid JSON ({exc})") from None


def meta_number(meta: dict[str, str], key: str, path: Path) -> float | None:
    """Metadata ``edge_agent.<key>`` as a finite float, None when absent; anything else is a ModelError."""
    raw = meta.get(META + key)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw) if len(raw) <= 100 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _meta_error(path, key, raw, "is not a finite number")
    return value


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def meta_floats(meta: dict[str, str], key: str, n: int, path: Path) -> np.ndarray | None:
    """Metadata ``edge_agent.<key>`` as a list of ``n`` finite numbers, None when absent."""
    value = meta_json(meta, key, path)
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == n and all(_finite(v) for v in value)):
        raise _meta_error(path, key, meta[META + key], f"must be a list of {n} finite numbers")
    return np.asarray(value, dtype=np.float64)


def meta_names(meta: dict[str, str], path: Path) -> list[str] | None:
    """Metadata ``edge_agent.feature_names`` as a list of strings, None when absent."""
    value = meta_json(meta, "feature_names", path)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _meta_error(path, "feature_names", meta[META + "feature_names"], "must be a list of strings")
    return value


def _span(meta: dict[str, str], path: Path) -> tuple[float, float] | None:
    value = meta_json(meta, "training_span", path)
    if value is None or value == {}:
        return None
    ok = isinstance(value, dict) and set(value) == {"start", "end"}
    if not (ok and _finite(value["start"]) and _finite(value["end"])):
        raise _meta_error(
            path, "training_span", meta[META + "training_span"], 'must be {"start": s, "end": s} or {}'
        )
    return float(value["start"]), float(value["end"])


def _check_names(model_names: list[str], names: Sequence[str], path: Path) -> None:
    if list(model_names) == list(names):
        return
    pairs = zip(model_names, names, strict=False)
    at = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(model_names), len(names)))
    got = model_names[at] if at < len(model_names) else None
    want_name = names[at] if at < len(names) else None
    raise ModelError(
        f"{path}: the model was trained on other features ({META}feature_names); first difference at #{at}: "
        f"model {got!r}, pipeline {want_name!r}"
    )
