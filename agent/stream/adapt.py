"""Follow slow, harmless drift of normal (``[pipelines] adapt = true``; off by default).

A machine's normal moves a little over weeks (a sensor ages, a season changes the cooling water), and
a fixed model then scores the new normal ever higher. With ``adapt`` on, the pipeline keeps an offset
per feature, an exponentially weighted mean of ``x - center`` with time constant ``adapt_time``, and
the model scores ``x - offset``. The offset learns only from windows that are plainly normal:

* no alert is open;
* the window was scored with full coverage (>= 0.95 of its rows for every tag);
* its score is below ``CALM`` (half) of the threshold, so a developing fault, which raises the score
  before it raises an alert, stops the learning early instead of being learned;

and it is bounded to ``MAX_SHIFT`` (3) robust sigmas of each feature, so no drift, however patient,
can move normal by more than the width of its band. ``benchmarks/bench_tep.py --adapt`` shows the
slow drift of TEP fault 13 is still detected. Published features are always the raw values; only the
model's input and the normal band an explanation quotes are shifted.

Pure and synchronous, like every stage of ``agent.stream``.
"""

from __future__ import annotations

import numpy as np

from agent.stream.explain import Normal

CALM = 0.5  # learn only from windows scoring below this share of the threshold
MAX_SHIFT = 3.0  # robust sigmas
FULL_COVERAGE = 0.95


class Drift:
    """The learned offset of normal. ``apply`` before scoring, ``learn`` after."""

    def __init__(self, normal: Normal, hop_s: float, time_constant_s: float) -> None:
        self.center = normal.center
        self.scale = normal.scale
        self.alpha = min(1.0, hop_s / time_constant_s) if time_constant_s > 0 else 0.0
        n = 0 if normal.center is None else len(normal.center)
        self.offset = np.zeros(n)
        self.learned = 0  # windows learned from

    @property
    def active(self) -> bool:
        return self.center is not None and self.scale is not None and self.alpha > 0

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Feature rows as the model should see them: shifted back by the drift learned so far."""
        return x - self.offset if self.active and x.shape[-1] == self.offset.size else x

    def learn(self, x: np.ndarray, score: float, threshold: float, coverage: float, alert_open: bool) -> bool:
        """Move the offset toward one raw feature row, if the window is plainly normal; True if it did."""
        if not self.active or alert_open or coverage < FULL_COVERAGE or not score < CALM * threshold:
            return False
        assert self.center is not None and self.scale is not None
        if x.shape[-1] != self.offset.size or not np.isfinite(x).all():
            return False
        target = x - self.center
        bound = MAX_SHIFT * self.scale
        self.offset = np.clip(self.offset + self.alpha * (target - self.offset), -bound, bound)
        self.learned += 1
        return True

    def shifted(self, normal: Normal) -> Normal:
        """The normal an explanation should quote: the model's, moved by the learned offset."""
        if not self.active or not self.offset.any():
            return normal

        def move(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a + self.offset

        return Normal(move(normal.center), normal.scale, move(normal.low), move(normal.high))
