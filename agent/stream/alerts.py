"""Alert state per pipeline, with hysteresis, and the explanation an alert carries.

Raised after ``raise_after`` consecutive scored windows at or above ``threshold``; cleared after
``clear_after`` consecutive scored windows below ``clear_threshold`` (lower than ``threshold``), so a
noisy score near the line does not flap. Windows that were not scored (low coverage) do not count either
way: missing data is never evidence of an anomaly, nor of recovery.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class Transition(enum.StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


@dataclass
class AlertState:
    """The hysteresis state machine. Pure: feed it scores, read transitions."""

    threshold: float
    clear_threshold: float
    raise_after: int = 3
    clear_after: int = 3
    open: bool = False
    _above: int = 0
    _below: int = 0

    def update(self, score: float) -> Transition | None:
        """Account one scored window; return the transition it causes, if any."""
        if not self.open:
            self._above = self._above + 1 if score >= self.threshold else 0
            if self._above >= self.raise_after:
                self.open, self._above, self._below = True, 0, 0
                return Transition.RAISED
        else:
            self._below = self._below + 1 if score < self.clear_threshold else 0
            if self._below >= self.clear_after:
                self.open, self._above, self._below = False, 0, 0
                return Transition.CLEARED
        return None


OUTSIDE_SIGMA = 2.0  # |z| from which a feature counts as outside its learned normal range


@dataclass(frozen=True)
class Normal:
    """What the model learned as normal per feature (from its metadata); any field may be absent."""

    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    low: np.ndarray | None = None
    high: np.ndarray | None = None


def explain(
    names: Sequence[str],
    values: np.ndarray,
    contributions: np.ndarray | None,
    normal: Normal,
    top: int,
) -> tuple[list[dict[str, object]], str]:
    """The ``top`` features that drive a score, and a one-line summary in plant terms.

    Features are ranked by the model's per-feature contributions, or without them by how far they are
    from normal (|z|). When the model says what normal is, only features at least ``OUTSIDE_SIGMA``
    from it are named (all of the top ones if none is).
    """
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
    combination = False
    if z is not None:
        # Contributions spread over correlated features; name only those actually outside normal.
        # When none is, the relation between features broke (e.g. vibration up at the same load):
        # the largest contributors are then the best explanation, and the summary says so.
        outside = [i for i in order if np.isfinite(z[i]) and abs(z[i]) >= OUTSIDE_SIGMA]
        combination = not outside
        order = outside or order
    order = order[:top]
    items: list[dict[str, object]] = []
    phrases: list[str] = []
    for i in order:
        name = names[i]
        value = _num(values[i])
        zi = _num(z[i]) if z is not None else None
        band = None
        if normal.low is not None and normal.high is not None:
            band = [_num(normal.low[i]), _num(normal.high[i])]
        items.append(
            {
                "feature": name,
                "tag": name.rsplit(".", 1)[0],
                "contribution": _num(rank[i]) if contributions is not None else None,
                "value": value,
                "z": zi,
                "normal": band,
            }
        )
        phrases.append(_phrase(name, value, zi, band))
    summary = "; ".join(phrases)
    if combination and phrases:
        summary = "no single feature outside its normal range, but an unusual combination of: " + summary
    return items, summary


def _phrase(name: str, value: float | None, z: float | None, band: list[float | None] | None) -> str:
    if z is not None and value is not None:
        where = "above" if z > 0 else "below"
        text = f"{name} {abs(z):.1f} sigma {where} normal (value {value:.4g}"
        if band and band[0] is not None and band[1] is not None:
            text += f", normal {band[0]:.4g} to {band[1]:.4g}"
        return text + ")"
    return f"{name} (value {value:.4g})" if value is not None else f"{name} (no value)"


def _num(x: float) -> float | None:
    x = float(x)
    return round(x, 6) if np.isfinite(x) else None
