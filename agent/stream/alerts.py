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
* ``consecutive``: raised after ``raise_after`` consecutive windows at or above ``threshold`` (also
  used when a model's threshold is not positive, where a score ratio means nothing).

Both clear after ``clear_after`` consecutive windows below ``clear_threshold`` (lower than
``threshold``, so a noisy score near the line does not flap); with ``cusum`` the evidence must also have
fallen back under ``evidence`` (the cap keeps that to a few windows once the machine is back). An alert
open for ``sustained_after`` seconds (event time) is re-announced as ``sustained``, and again every
``sustained_after``, so a long alert is never silently held.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Literal

from agent.config.sections import PipelineConfig
from agent.stream.explain import Language, Normal, explain

__all__ = ["AlertState", "Normal", "Transition", "alert_state", "explain", "headline"]


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
        cusum = self.rule == "cusum" and self.threshold > 0  # a ratio needs a positive threshold
        if not self.open:
            self._above = self._above + 1 if score >= self.threshold else 0
            raised = self.g >= self.evidence if cusum else self._above >= self.raise_after
            if raised:
                self.open, self._above, self._below, self._announced = True, 0, 0, ts
                return Transition.RAISED
            return None
        self._below = self._below + 1 if score < self.clear_threshold else 0
        calm = not cusum or self.g < self.evidence
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


def headline(
    language: Language, transition: Transition, pipeline: str, score: float, threshold: float, clear: float
) -> str:
    """The first words of an alert's summary, in ``language``."""
    if language == "ko":
        if transition is Transition.CLEARED:
            return f"{pipeline}: 정상 복귀, 이상 점수 {score:.3g} (해제 기준 {clear:.3g} 미만)"
        state = "이상 지속" if transition is Transition.SUSTAINED else "이상 감지"
        return f"{pipeline}: {state}, 이상 점수 {score:.3g} (기준 {threshold:.3g})"
    if transition is Transition.CLEARED:
        return f"{pipeline}: back to normal, score {score:.3g} (clear below {clear:.3g})"
    state = "still abnormal" if transition is Transition.SUSTAINED else "anomaly"
    return f"{pipeline}: {state}, score {score:.3g} (threshold {threshold:.3g})"
