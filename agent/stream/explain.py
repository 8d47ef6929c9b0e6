"""What an alert says, in plant words: which values left their normal range, by how much, in their units.

``explain`` ranks features by the model's per-feature contributions (or, without them, by distance from
normal) and names only those **outside their learned normal band** (``normal_low..normal_high`` from
the model; ``center ± 3 scale`` when only those are known), with the value, the band and the distance
in the tag's engineering unit:

    bearing_temp mean 58.2 °C, above its normal 41.5-48.9 °C by 9.3 °C

The robust z value stays in the payload items (``z``), never in the sentence. When no feature is
outside its band the correlations broke (vibration up at the same load): the summary names the pair of
tags carrying most of the anomaly, each with its value and band, as an unusual combination. Summaries
are in English or Korean (``agent.language``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Language = Literal["en", "ko"]
BAND_SIGMAS = 3.0
NONNEGATIVE = (
    "std",
    "p2p",
    "rms",
    "crest",
)  # half-width of the band when the model gives only center and scale

# Plain words per feature, and whether its unit is the tag's (True), per second ("/s") or none (False).
WORDS: dict[str, tuple[str, str, bool | str]] = {
    "mean": ("mean", "평균", True),
    "std": ("spread", "변동폭(표준편차)", True),
    "min": ("minimum", "최솟값", True),
    "max": ("maximum", "최댓값", True),
    "rms": ("RMS", "RMS", True),
    "p2p": ("peak-to-peak", "최대-최소 차", True),
    "slope": ("rate of change", "변화율", "/s"),
    "skewness": ("skewness", "비대칭도", False),
    "kurtosis": ("peakedness", "첨도", False),
    "crest": ("crest factor", "파고율", False),
    "last": ("last value", "마지막 값", True),
}


@dataclass(frozen=True)
class Normal:
    """What the model learned as normal per feature (from its metadata); any field may be absent."""

    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    def band(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.low is not None and self.high is not None:
            return self.low, self.high
        if self.center is not None and self.scale is not None:
            return self.center - BAND_SIGMAS * self.scale, self.center + BAND_SIGMAS * self.scale
        return None


def explain(
    names: Sequence[str],
    values: np.ndarray,
    contributions: np.ndarray | None,
    normal: Normal,
    top: int,
    units: Mapping[str, str] | None = None,
    language: Language = "en",
) -> tuple[list[dict[str, object]], str]:
    """The ``top`` features that drive a score (payload items) and a one-line summary in plant words."""
    z = None
    if normal.center is not None and normal.scale is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (values - normal.center) / normal.scale
    if contributions is not None:
        rank = np.asarray(contributions, dtype=float)
    elif z is not None:
        rank = np.abs(z)
    else:
        return [], ""
    order = [int(i) for i in np.argsort(-np.nan_to_num(rank, nan=-np.inf)) if np.isfinite(rank[i])]
    band = normal.band()
    outside = order
    if band is not None:
        outside = [i for i in order if np.isfinite(values[i]) and not band[0][i] <= values[i] <= band[1][i]]
    chosen = (outside or _pair(names, order))[:top]
    items = [_item(names[i], values[i], z, rank, contributions, band, i) for i in chosen]
    units = units or {}
    phrases = [_phrase(names[i], values[i], band, i, units, language) for i in chosen]
    if not phrases:
        return items, ""
    if outside or band is None:
        return items, "; ".join(phrases)
    joined = (" + " if language == "ko" else " with ").join(phrases)
    if language == "ko":
        return items, f"비정상적인 조합: {joined} (각각은 정상 범위 안이지만 함께 나타나지 않던 관계)"
    return items, f"unusual combination: {joined} (each inside its normal range, but not together)"


def _pair(names: Sequence[str], order: list[int]) -> list[int]:
    """The two largest contributors from two different tags: the relation that broke."""
    first = order[:1]
    if not first:
        return []
    tag = _tag(names[first[0]])
    other = [i for i in order[1:] if _tag(names[i]) != tag][:1]
    return first + other


def _item(
    name: str,
    value: float,
    z: np.ndarray | None,
    rank: np.ndarray,
    contributions: np.ndarray | None,
    band: tuple[np.ndarray, np.ndarray] | None,
    i: int,
) -> dict[str, object]:
    return {
        "feature": name,
        "tag": _tag(name),
        "contribution": _num(rank[i]) if contributions is not None else None,
        "value": _num(value),
        "z": _num(z[i]) if z is not None else None,
        "normal": [_num(band[0][i]), _num(band[1][i])] if band is not None else None,
    }


def _phrase(
    name: str,
    value: float,
    band: tuple[np.ndarray, np.ndarray] | None,
    i: int,
    units: Mapping[str, str],
    language: Language,
) -> str:
    tag, feature = _tag(name), name.rsplit(".", 1)[-1]
    en, ko, kind = WORDS.get(feature, (feature, feature, False))
    unit = units.get(tag, "") if kind else ""
    unit = f"{unit}/s" if kind == "/s" and unit else ("/s" if kind == "/s" else unit)
    word = ko if language == "ko" else en
    text = f"{tag} {word} {_fmt(value, unit)}"
    if band is None or not np.isfinite(value):
        return text
    lo, hi = float(band[0][i]), float(band[1][i])
    if feature in NONNEGATIVE:
        lo = max(lo, 0.0)  # a spread below zero would read as nonsense
    dash = "-" if lo >= 0 else (" ~ " if language == "ko" else " to ")
    span = f"{_fmt(lo, '')}{dash}{_fmt(hi, unit)}" if np.isfinite(lo) else f"≤ {_fmt(hi, unit)}"
    if lo <= value <= hi:
        return text + (f" (정상 {span})" if language == "ko" else f" (normal {span})")
    above = value > hi
    by = _fmt(value - hi if above else lo - value, unit)
    if language == "ko":
        return f"{text}, 정상 범위 {span}보다 {by} {'높음' if above else '낮음'}"
    return f"{text}, {'above' if above else 'below'} its normal {span} by {by}"


def _fmt(x: float, unit: str) -> str:
    """Three significant digits (58.2, 0.0116, 150), whole numbers from 1000 (1,480)."""
    if not np.isfinite(x):
        return "no value"
    text = f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{text} {unit}" if unit else text


def _tag(name: str) -> str:
    return name.rsplit(".", 1)[0]


def _num(x: float) -> float | None:
    x = float(x)
    return round(x, 6) if np.isfinite(x) else None
