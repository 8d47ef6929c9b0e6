"""Alert limits from out-of-fold statistics that no single training window, and no short recording, can set.

See "Limits" in the docstring of ``agent.learn.fit``, which calls these. Pure numpy and the standard
library (no scipy on a gateway): the F quantile is Paulson's normal approximation.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agent.learn.pca import principal, project

Array = NDArray[np.float64]
STAT_FLOOR = 1e-3  # in sigma², so float32 rounding of a zero residual can never reach a limit
TAIL_SHARE = 0.1  # the tail of out-of-fold statistics fitted for the limit
FOLDS = 5


def out_of_fold(z: Array, opts: Any, k: int) -> tuple[Array, Array]:
    """T (``agent.learn.pca.project``) and residuals of every training row, each scored by components
    fitted without its fold."""
    n = z.shape[0]
    t2 = np.empty(n)
    resid = np.empty_like(z)
    bounds = np.linspace(0, n, FOLDS + 1).astype(int)
    for lo, hi in itertools.pairwise(bounds):
        rest = np.concatenate([z[:lo], z[hi:]])
        comps, eig, _ = principal(rest, opts.variance, opts.max_components, k)
        t2[lo:hi], resid[lo:hi] = project(z[lo:hi], comps, eig)
    return t2, resid


def robust_limit(oof: Array, opts: Any, widen: float = 1.0) -> float:
    """Limit of one statistic from its out-of-fold values (``opts``: ``agent.learn.fit.FitOptions``).

    The exponential tail over the top ``TAIL_SHARE`` read at ``opts.false_alarm``, or the empirical
    ``opts.quantile`` if higher, times ``opts.margin`` and ``widen`` (``widening``): one or two odd
    windows cannot move it far."""
    u, beta = _tail(oof)
    tail = u + beta * math.log(TAIL_SHARE / opts.false_alarm)
    empirical = float(np.quantile(oof, opts.quantile))
    return max(opts.margin * widen * max(tail, empirical), STAT_FLOOR)


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


def independent_windows(series: Array) -> float:
    """How many independent windows a time-ordered statistic is worth: ``n / tau``.

    ``tau = 1 + 2 sum(rho_l)``, the integrated autocorrelation time, summed until the autocorrelation
    first stops being positive. Overlapping windows (a hop shorter than the length) and a slow process
    make neighbours near copies: 480 hourly windows every 3 minutes of TEP are worth about 32.
    """
    n = series.size
    a = series - series.mean()
    var = float(a @ a)
    if n < 3 or var <= 0:
        return float(n)
    tau = 1.0
    for lag in range(1, n // 2):
        rho = float(a[:-lag] @ a[lag:]) / var
        if rho <= 0:
            break
        tau += 2.0 * rho
    return max(n / tau, 1.0)


def widening(dims: int, n_eff: float, false_alarm: float) -> float:
    """How much estimating a statistic's normalisation from ``n_eff`` independent windows widens its limit.

    Hotelling's prediction limit for a new window's T² over ``dims`` directions whose covariance was
    estimated from ``n`` windows, ``dims (n-1)(n+1) / (n (n-dims)) F(dims, n-dims)``, divided by the
    limit with the covariance known, ``dims F(dims, inf)``, both read at ``false_alarm``: 1.0 for a long
    recording; for one direction 1.14 from 65 independent windows, 1.33 from 32, 2.25 from 13; infinite at
    ``n <= dims + 1`` (too little data to say anything about those directions).
    """
    n = n_eff
    if n <= dims + 1:
        return math.inf
    known = _f_quantile(false_alarm, dims, math.inf)
    estimated = (n - 1) * (n + 1) / (n * (n - dims)) * _f_quantile(false_alarm, dims, n - dims)
    return max(estimated / known, 1.0)


def _f_quantile(alpha: float, d1: float, d2: float) -> float:
    """Upper ``alpha`` quantile of F(d1, d2), Paulson's approximation (within 5% for d2 >= 10; larger,
    so more cautious, for fewer)."""
    z = NormalDist().inv_cdf(1.0 - alpha)
    a, c1 = (1.0, 0.0) if math.isinf(d2) else (1.0 - 2.0 / (9.0 * d2), 2.0 / (9.0 * d2))
    b, c2 = 1.0 - 2.0 / (9.0 * d1), 2.0 / (9.0 * d1)
    lead = a * a - z * z * c1
    if lead <= 0:
        return math.inf
    u = (a * b + math.sqrt((a * b) ** 2 - lead * (b * b - z * z * c2))) / lead
    return u**3
