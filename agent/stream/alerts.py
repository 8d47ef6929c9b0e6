"""Alert state per pipeline: sequential evidence to raise, hysteresis to clear, and the explanation.

Two rules (``alert.rule``); windows that were not scored (low coverage) count for neither: missing data
is never evidence of an anomaly, nor of recovery.

* ``cusum`` (default): a one-sided CUSUM of the log score ratio. Each scored window adds
  ``ln(score / threshold) - ln(reference)`` to the evidence ``g`` (floored at 0, capped at
  ``2 x evidence``); the alert is raised when ``g >= evidence``. A score of ``r x threshold`` raises after
  ``ceil(evidence / ln(r / reference))`` windows: with the defaults (reference 0.8, evidence 2.0) a score
  of 2x raises in 3 windows, 8x in 1, while a score hovering just under the threshold (0.9x) adds
  ``ln(1.125) = 0.12`` a window and is raised only if it stays there for 17 windows. Under normal data
  (scores well below ``reference``, the model's limits put 1 window in ~10^5 over 1.0) ``g`` stays at 0;
  the TEP benchmark measures the false-alarm share (``benchmarks/bench_tep.py``).
* ``consecutive``: raised after ``raise_after`` consecutive windows at or above ``threshold``.

Both clear after ``clear_after`` consecutive windows below ``clear_threshold`` (lower than
``threshold``, so a noisy score near the line does not flap); with ``cusum`` the evidence must also have
fallen back under ``evidence`` (the cap keeps that to a few windows once the machine is back). An alert
open for ``sustained_after`` seconds (event time) is re-announced as ``sustained``, and again every
``sustained_after``, so a long alert is never silently held.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from agent.config.sections import PipelineConfig


class Transition(enum.StrEnum):
    RAISED = "raised"
    SUSTAINED = "sustained"
    CLEARED = "cleared"


@dataclass
class AlertState:
    """The alert state machine. Pure: feed it scores (and event times), read transitions."""

    threshold: float
    clear_threshold: float
    raise_after: int = 3
    clear_after: int = 3
    rule: Literal["cusum", "consecutive"] = "consecutive"
    reference: float = 0.8
    evidence: float = 2.0
    sustained_after: float | None = None
    open: bool = False
    g: float = 0.0
    _above: int = 0
    _below: int = 0
    _announced: float | None = None

    def update(self, score: float, ts: float | None = None) -> Transition | None:
        """Account one scored window (ending at event time ``ts``); return the transition it causes."""
        self._accumulate(score)
        if not self.open:
            self._above = self._above + 1 if score >= self.threshold else 0
            raised = self.g >= self.evidence if self.rule == "cusum" else self._above >= self.raise_after
            if raised:
                self.open, self._above, self._below, self._announced = True, 0, 0, ts
                return Transition.RAISED
            return None
        self._below = self._below + 1 if score < self.clear_threshold else 0
        calm = self.rule != "cusum" or self.g < self.evidence
        if self._below >= self.clear_after and calm:
            self.open, self._above, self._below, self.g = False, 0, 0, 0.0
            return Transition.CLEARED
        since = ts - self._announced if ts is not None and self._announced is not None else 0.0
        if self.sustained_after and since >= self.sustained_after:
            self._announced = ts
            return Transition.SUSTAINED
        return None

    def _accumulate(self, score: float) -> None:
        if self.rule != "cusum" or self.threshold <= 0:
            return
        ratio = max(score, 1e-12) / self.threshold
        step = math.log(ratio) - math.log(self.reference)
        self.g = min(max(0.0, self.g + step), 2.0 * self.evidence)


def alert_state(cfg: PipelineConfig, threshold: float, clear_threshold: float) -> AlertState:
    """The state machine a pipeline's ``[pipelines.alert]`` section describes."""
    a = cfg.alert
    return AlertState(
        threshold,
        clear_threshold,
        a.raise_after,
        a.clear_after,
        rule=a.rule,
        reference=a.reference,
        evidence=a.evidence,
        sustained_after=a.sustained_after,
    )


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
