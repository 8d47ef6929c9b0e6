"""Learn what normal looks like: a robust-scaled PCA with Hotelling T² and Q (SPE) statistics.

Pure numpy, no clock, no I/O. ``fit(X, names)`` takes a matrix of feature vectors recorded while the
machine ran normally (one row per window, one column per ``<tag>.<feature>``, NaN where a value was
missing) and returns a ``RobustPCA`` whose ``score(X)`` gives one anomaly score per row and the share
of each feature in it. ``agent.learn.export`` turns the same model into an ONNX graph.

The rules, in the order they are applied:

* **Scaling.** ``center`` = median; ``scale`` = IQR / 1.349 (the standard deviation for Gaussian data,
  but blind to outliers). When the IQR is zero (a feature that is mostly one value) the standard
  deviation is used instead, and every scale is floored at ``max(1e-3 * |center|, 1e-6)`` so a constant
  feature (a setpoint) does not turn a rounding error into a thousand-sigma alert; a real change of
  such a feature still scores high, as it should. ``z = (x - center) / scale``; NaN becomes ``z = 0``.
* **Components.** Principal components of ``z`` (second moment about the median, rows winsorised at
  ±6 sigma so a few bad windows do not tilt the axes): the fewest explaining ``variance`` (95%) of the
  variance, at most ``max_components`` and at most ``F - 1`` so the residual space Q watches is never
  empty.
* **Statistics.** T² = sum over kept components of ``t_j² / λ_j`` (unusual *within* the learned
  correlations: everything hot together); Q = squared residual off the component plane (the learned
  correlations are *broken*: flow fell while speed held).
* **Limits and the score.** Each statistic is scored on the training windows *out of fold* (5 contiguous
  folds, each scored by a model fitted on the other four), so the limits are the ones new data meets, not
  the optimistic in-sample ones. Its limit is the larger of (a) an exponential tail fitted to the top 10%
  of those values (start: their 90th percentile; scale: median excess / ln 2), read where it leaves
  ``false_alarm`` (1 in 10 000) of windows above, and (b) their empirical ``quantile`` (99th
  percentile), times ``margin`` (1.0). The chi-square-like T² and Q have exponential tails, so (a) is
  the right shape without a Gaussian assumption; the median excess ignores the few most extreme windows
  (a gap, a temperature step), so one or two odd windows cannot move a limit far (issue 18: with
  ``1.25 x`` a top quantile of ~36 windows, one window took the T² limit from ~50 to >1000).
  ``score = max(T² / T²_lim, Q / Q_lim)``: the alert threshold is exactly 1.0 and an alert clears below
  ``clear_threshold`` (0.8). Max rather than a sum keeps the meaning of 1.0 plain and lets either kind
  of anomaly alert alone. The model card shows the false-alarm share the fitted tails expect at 1.0.
* **Contributions.** T² splits exactly into non-negative per-feature parts ``((P Λ^-½ Pᵀ) z)_f²``, Q into
  ``r_f²``. Each is divided by its limit, summed, and normalised to shares summing to 1 per row, so an
  alert names the features that carry the anomaly.
* **Normal range.** ``center ± normal_sigmas * scale`` (3 robust sigmas). Alerts say how far outside it
  a feature is in robust sigmas, ``(x - center) / scale``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from agent.errors import ModelError
from agent.learn.limits import robust_limit, tail_exceedance

KIND = "robust-pca-t2q"
IQR_TO_SIGMA = 1.349  # IQR of a standard normal
SCALE_FLOOR_REL = 1e-3
SCALE_FLOOR_ABS = 1e-6
WINSOR_SIGMAS = 6.0
MIN_ROWS = 20
FOLDS = 5

Array = NDArray[np.float64]


@dataclass(frozen=True)
class FitOptions:
    """Knobs of ``fit``; the defaults are the documented rule and suit most machines.

    Attributes:
        variance: fraction of the variance the kept components must explain.
        max_components: cap on kept components.
        false_alarm: share of normal windows the fitted tail of each statistic leaves above its limit.
        quantile: empirical out-of-fold quantile a limit is never below.
        margin: factor on both; 1.0 applies the rule as fitted.
        clear_threshold: an alert clears once the score falls below this (hysteresis under 1.0).
        normal_sigmas: half-width of the normal band in robust sigmas.
    """

    variance: float = 0.95
    max_components: int = 10
    false_alarm: float = 1e-4
    quantile: float = 0.99
    margin: float = 1.0
    clear_threshold: float = 0.8
    normal_sigmas: float = 3.0


@dataclass(frozen=True)
class RobustPCA:
    """A fitted model of normal. Arrays are float64; ``score`` mirrors the ONNX graph exactly.

    Attributes:
        names: feature names ``<tag>.<feature>``, the column order of every input.
        center, scale: per-feature median and robust sigma.
        components: ``F x k`` orthonormal loadings; ``eigvals``: the ``k`` variances along them.
        t2_limit, q_limit: limits dividing T² and Q in the score.
        threshold, clear_threshold: alert raise / clear levels of the score.
        normal_low, normal_high: per-feature normal band.
        explained: fraction of the variance the kept components explain.
        n_train: training rows.
        expected_false_alarm: share of normal windows the fitted tails put at or above 1.0 (T² or Q).
    """

    names: tuple[str, ...]
    center: Array
    scale: Array
    components: Array
    eigvals: Array
    t2_limit: float
    q_limit: float
    threshold: float
    clear_threshold: float
    normal_low: Array
    normal_high: Array
    explained: float
    n_train: int
    options: FitOptions = field(default_factory=FitOptions)
    expected_false_alarm: float = 0.0

    @property
    def n_components(self) -> int:
        return int(self.components.shape[1])

    @property
    def t2_weights(self) -> Array:
        """``P Λ^-½ Pᵀ``: ``||z W||²`` is T², and ``(z W)_f²`` is feature f's share of it."""
        p = self.components
        return (p / np.sqrt(self.eigvals)) @ p.T

    def standardize(self, x: NDArray[np.floating]) -> Array:
        """``z = (x - center) / scale`` with NaN mapped to 0 (the center)."""
        x = _as_matrix(x, len(self.names))
        z = (x - self.center) / self.scale
        return np.where(np.isnan(x), 0.0, z)

    def statistics(self, x: NDArray[np.floating]) -> tuple[Array, Array]:
        """Hotelling T² and Q (SPE) of each row."""
        return _statistics(self.standardize(x), self.components, self.eigvals)

    def score(self, x: NDArray[np.floating]) -> tuple[Array, Array]:
        """Anomaly score per row (alert at >= ``threshold``) and per-feature shares (rows sum to 1).

        Args:
            x: ``N x F`` feature vectors in ``names`` order; NaN allowed.

        Returns:
            ``(scores[N], contributions[N, F])``.
        """
        z = self.standardize(x)
        t = z @ self.components
        resid = z - t @ self.components.T
        t2 = np.sum(t * t / self.eigvals, axis=1)
        q = np.sum(resid * resid, axis=1)
        scores = np.maximum(t2 / self.t2_limit, q / self.q_limit)
        zw = z @ self.t2_weights
        parts = zw * zw / self.t2_limit + resid * resid / self.q_limit
        contributions = parts / (parts.sum(axis=1, keepdims=True) + 1e-12)
        return scores, contributions

    def sigmas(self, x: NDArray[np.floating]) -> Array:
        """How far each value is from its center, in robust sigmas (signed)."""
        return (_as_matrix(x, len(self.names)) - self.center) / self.scale


def robust_scale(x: Array) -> tuple[Array, Array]:
    """Per-column median and robust sigma (IQR / 1.349, else std, floored); see the module docstring."""
    center = np.nanmedian(x, axis=0)
    q75, q25 = np.nanpercentile(x, [75, 25], axis=0)
    scale = (q75 - q25) / IQR_TO_SIGMA
    floor = np.maximum(SCALE_FLOOR_REL * np.abs(center), SCALE_FLOOR_ABS)
    std = np.nanstd(x, axis=0)
    scale = np.where(scale > floor, scale, std)
    return center, np.maximum(scale, floor)


def fit(
    x: NDArray[np.floating], names: list[str] | tuple[str, ...], options: FitOptions | None = None
) -> RobustPCA:
    """Fit a model of normal on training feature vectors.

    Args:
        x: ``n_windows x F`` matrix recorded during normal operation; NaN allowed.
        names: the ``F`` feature names, in column order.
        options: knobs; the defaults implement the rule in the module docstring.

    Raises:
        ModelError: too few windows, mismatched names, or a feature with no values at all.
    """
    opts = options or FitOptions()
    names = tuple(names)
    x = _as_matrix(x, len(names))
    _check_training(x, names)
    center, scale = robust_scale(x)
    z = np.where(np.isnan(x), 0.0, (x - center) / scale)
    components, eigvals, explained = _principal(z, opts, None)
    k = components.shape[1]
    t2_oof, q_oof = _out_of_fold(z, opts, k)
    t2_limit = robust_limit(t2_oof, opts)
    q_limit = robust_limit(q_oof, opts)
    return RobustPCA(
        names=names,
        center=center,
        scale=scale,
        components=components,
        eigvals=eigvals,
        t2_limit=t2_limit,
        q_limit=q_limit,
        threshold=1.0,
        clear_threshold=opts.clear_threshold,
        normal_low=_floor_nonnegative(names, center - opts.normal_sigmas * scale),
        normal_high=center + opts.normal_sigmas * scale,
        explained=explained,
        n_train=int(x.shape[0]),
        options=opts,
        expected_false_alarm=min(1.0, tail_exceedance(t2_oof, t2_limit) + tail_exceedance(q_oof, q_limit)),
    )


def _as_matrix(x: NDArray[np.floating], n_features: int) -> Array:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise ModelError(
            f"expected feature vectors of {n_features} values, got an array of shape {arr.shape}"
        )
    return arr


def _check_training(x: Array, names: tuple[str, ...]) -> None:
    if not names:
        raise ModelError("no features to train on: the pipeline defines no features")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ModelError(f"feature names must be unique; repeated: {', '.join(dupes)}")
    if x.shape[0] < MIN_ROWS:
        raise ModelError(
            f"only {x.shape[0]} windows of training data; need at least {MIN_ROWS}: record for longer"
        )
    empty = [n for n, col in zip(names, x.T, strict=True) if not np.isfinite(col).any()]
    if empty:
        raise ModelError(f"no values in the training data for {', '.join(empty)}: check those tags were read")
    if np.isinf(x).any():
        raise ModelError("the training data holds infinite values; fix the source scaling or drop those rows")


def _principal(z: Array, opts: FitOptions, k: int | None) -> tuple[Array, Array, float]:
    """Kept loadings, their variances and the explained fraction; ``k`` fixed when given."""
    n, f = z.shape
    zc = np.clip(z, -WINSOR_SIGMAS, WINSOR_SIGMAS)
    cov = zc.T @ zc / max(n - 1, 1)
    eigvals, vecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1]
    eigvals, vecs = np.clip(eigvals[order], 0.0, None), vecs[:, order]
    total = float(eigvals.sum()) or 1.0
    if k is None:
        cum = np.cumsum(eigvals) / total
        k = int(np.searchsorted(cum, opts.variance) + 1)
        k = max(1, min(k, opts.max_components, f - 1 if f > 1 else 1))
    # Sign convention (largest loading positive) so refits give the same model.
    vecs = vecs[:, :k] * np.where(vecs[np.abs(vecs[:, :k]).argmax(axis=0), range(k)] < 0, -1.0, 1.0)
    kept = np.maximum(eigvals[:k], max(1e-6 * total, 1e-12))
    return vecs, kept, float(eigvals[:k].sum() / total)


def _statistics(z: Array, components: Array, eigvals: Array) -> tuple[Array, Array]:
    t = z @ components
    resid = z - t @ components.T
    return np.sum(t * t / eigvals, axis=1), np.sum(resid * resid, axis=1)


def _out_of_fold(z: Array, opts: FitOptions, k: int) -> tuple[Array, Array]:
    """T² and Q of every training row, each scored by components fitted without its fold."""
    n = z.shape[0]
    t2 = np.empty(n)
    q = np.empty(n)
    bounds = np.linspace(0, n, FOLDS + 1).astype(int)
    for lo, hi in itertools.pairwise(bounds):
        rest = np.concatenate([z[:lo], z[hi:]])
        comps, eig, _ = _principal(rest, opts, k)
        t2[lo:hi], q[lo:hi] = _statistics(z[lo:hi], comps, eig)
    return t2, q


# Features that cannot be negative: a band reaching below zero would read as nonsense on an alert.
NONNEGATIVE = ("std", "p2p", "rms", "crest")


def _floor_nonnegative(names: Sequence[str], low: Array) -> Array:
    floor = np.array([0.0 if n.rsplit(".", 1)[-1] in NONNEGATIVE else -np.inf for n in names])
    return np.maximum(low, floor)
