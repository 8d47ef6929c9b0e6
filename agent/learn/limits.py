"""Alert limits from out-of-fold statistics that no single training window can set (issue 18).

See "Limits" in the docstring of ``agent.learn.fit``, which calls these.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
STAT_FLOOR = 1e-3  # in sigma², so float32 rounding of a zero residual can never reach a limit
TAIL_SHARE = 0.1  # the tail of out-of-fold statistics fitted for the limit


def robust_limit(oof: Array, opts: Any) -> float:
    """Limit of one statistic from its out-of-fold values (``opts``: ``agent.learn.fit.FitOptions``).

    The exponential tail over the top ``TAIL_SHARE`` read at ``opts.false_alarm``, or the empirical
    ``opts.quantile`` if higher, times ``opts.margin``: one or two odd windows cannot move it far."""
    u, beta = _tail(oof)
    tail = u + beta * math.log(TAIL_SHARE / opts.false_alarm)
    empirical = float(np.quantile(oof, opts.quantile))
    return max(opts.margin * max(tail, empirical), STAT_FLOOR)


def tail_exceedance(oof: Array, limit: float) -> float:
    """Share of windows the exponential tail fitted to ``oof`` puts above ``limit``."""
    u, beta = _tail(oof)
    return TAIL_SHARE * math.exp(-max(limit - u, 0.0) / beta)


def _tail(oof: Array) -> tuple[float, float]:
    """Exponential tail over the top ``TAIL_SHARE``: its start and its robust scale (median excess / ln 2)."""
    u = float(np.quantile(oof, 1.0 - TAIL_SHARE))
    excess = oof[oof > u] - u
    beta = float(np.median(excess)) / math.log(2.0) if excess.size else 0.0
    return u, max(beta, STAT_FLOOR)
