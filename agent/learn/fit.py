"""Learn what normal looks like: a robust-scaled PCA watching its most unusual mode and its largest residual.

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
  variance, at most ``max_components`` and at most ``F - 1`` so the residual space is never empty.
* **Statistics.** T = the largest, over kept components, of ``t_j² / λ_j``: one learned mode further out
  than normal (everything hot together, a load beyond the trained range). R = the largest, over
  features, of ``(r_f / s_f)²``, where ``r_f`` is the feature's residual off the component plane (what
  the other features do not explain) and ``s_f`` its normal spread (IQR / 1.349 of its out-of-fold
  residuals, floored at 0.01): one tag has left what its relations predict (flow fell while speed held).
  Both are *maxima*, not sums (issue 18). Hotelling's T² and Q sum over the kept modes and over the ~94
  residual directions of TEP's 104 features; on Tennessee Eastman a normal run whose pressure and steam
  loop swings 1.5-2x wider than in d00.dat pushed both sums past their limits on 25% of its first 8
  hours, while a lone tag had to drift ~10 sigma before the residual sum noticed. A maximum is quiet
  when a whole loop swings a little wider, and sees one mode or one tag leave its range.
* **Limits and the score.** Each statistic is scored on the training windows *out of fold* (5 contiguous
  folds, each scored by a model fitted on the other four), so the limits are the ones new data meets, not
  the optimistic in-sample ones. Its limit is the larger of (a) an exponential tail fitted to the top 10%
  of those values (start: their 90th percentile; scale: median excess / ln 2), read where it leaves
  ``false_alarm`` (1 in 10 000) of windows above, and (b) their empirical ``quantile`` (99th
  percentile), times ``margin`` (1.0). T's limit is also **widened** for how little independent data the
  recording holds on the modes: the components are the large, slow, shared variation of the machine, and
  overlapping windows of a slow process are near copies, so T's training windows are worth
  ``n_eff = n / tau`` independent ones (``tau``: their integrated autocorrelation time; the 480 hourly
  windows of TEP's d00.dat, one every 3 minutes, are worth ~32), and a mode's variance learned from
  ``n_eff`` windows is uncertain: the factor is Hotelling's prediction-limit correction for one
  direction (``agent.learn.limits.widening``: 1.0 on a long recording, 1.33 at 32). R's limit is not
  widened: the residuals are the fast, local part of the signals, and widening it too was measured to
  cost detections (NAB, the simulator) without removing any false alarm. The tails are exponential-shaped
  for both statistics, so (a) needs no Gaussian assumption; the median excess ignores the few most
  extreme windows (a gap, a temperature step), so one or two odd windows cannot move a limit far
  (issue 18: with ``1.25 x`` a top quantile of ~36 windows, one window took the T² limit from ~50 to
  >1000). ``score = max(T / T_lim, R / R_lim)``: the alert threshold is exactly 1.0 and an alert clears
  below ``clear_threshold`` (0.8). The model card shows the false-alarm share the fitted tails expect at
  1.0 (``expected_false_alarm``, the metadata's ``false_alarm_rate``).
* **Contributions.** The T part per feature is the exact split of the sum over modes,
  ``((P Λ^-½ Pᵀ) z)_f²``; R's is ``(r_f / s_f)²``. Each is divided by its limit, summed, and normalised to
  shares summing to 1 per row, so an alert names the features that carry the anomaly.
* **Normal range.** ``center ± normal_sigmas * scale`` (3 robust sigmas). Alerts say how far outside it
  a feature is in robust sigmas, ``(x - center) / scale``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from agent.errors import ModelError
from agent.learn import limits
from agent.learn.pca import largest_residual, principal, project, residual_scale, robust_scale

__all__ = ["KIND", "MIN_ROWS", "Array", "FitOptions", "RobustPCA", "fit", "robust_scale"]

KIND = "robust-pca-tr"
MIN_ROWS = 20

Array = NDArray[np.float64]

# A widening past this leaves T effectively off (too few independent windows to know the modes); a
# finite cap keeps the limit a number the ONNX graph and the card can carry.
MAX_WIDENING = 1e3


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
class Calibration:
    """How T's limit was widened, for the card: independent windows and the factor."""

    windows: float = 0.0
    widening: float = 1.0


@dataclass(frozen=True)
class RobustPCA:
    """A fitted model of normal. Arrays are float64; ``score`` mirrors the ONNX graph exactly.

    Attributes:
        names: feature names ``<tag>.<feature>``, the column order of every input.
        center, scale: per-feature median and robust sigma.
        components: ``F x k`` orthonormal loadings; ``eigvals``: the ``k`` variances along them.
        resid_scale: per-feature normal spread of the residual, dividing it in R.
        t2_limit, r_limit: limits dividing T (the largest one-mode T²) and R in the score.
        threshold, clear_threshold: alert raise / clear levels of the score.
        normal_low, normal_high: per-feature normal band.
        explained: fraction of the variance the kept components explain.
        n_train: training rows.
        expected_false_alarm: share of normal windows the fitted tails put at or above 1.0 (T or R).
        calibration: independent windows and widening behind T's limit.
    """

    names: tuple[str, ...]
    center: Array
    scale: Array
    components: Array
    eigvals: Array
    resid_scale: Array
    t2_limit: float
    r_limit: float
    threshold: float
    clear_threshold: float
    normal_low: Array
    normal_high: Array
    explained: float
    n_train: int
    options: FitOptions = field(default_factory=FitOptions)
    expected_false_alarm: float = 0.0
    calibration: Calibration = field(default_factory=Calibration)

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
        """T (largest one-mode T²) and R (largest standardised residual, squared) of each row."""
        t2, resid = project(self.standardize(x), self.components, self.eigvals)
        return t2, largest_residual(resid, self.resid_scale)

    def score(self, x: NDArray[np.floating]) -> tuple[Array, Array]:
        """Anomaly score per row (alert at >= ``threshold``) and per-feature shares (rows sum to 1).

        Args:
            x: ``N x F`` feature vectors in ``names`` order; NaN allowed.

        Returns:
            ``(scores[N], contributions[N, F])``.
        """
        z = self.standardize(x)
        t2, resid = project(z, self.components, self.eigvals)
        r_sq = (resid / self.resid_scale) ** 2
        scores = np.maximum(t2 / self.t2_limit, r_sq.max(axis=1) / self.r_limit)
        zw = z @ self.t2_weights
        parts = zw * zw / self.t2_limit + r_sq / self.r_limit
        contributions = parts / (parts.sum(axis=1, keepdims=True) + 1e-12)
        return scores, contributions

    def sigmas(self, x: NDArray[np.floating]) -> Array:
        """How far each value is from its center, in robust sigmas (signed)."""
        return (_as_matrix(x, len(self.names)) - self.center) / self.scale


def fit(
    x: NDArray[np.floating], names: list[str] | tuple[str, ...], options: FitOptions | None = None
) -> RobustPCA:
    """Fit a model of normal on training feature vectors, in time order (the widening reads their
    autocorrelation; shuffled rows only make it 1.0).

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
    components, eigvals, explained = principal(z, opts.variance, opts.max_components, None)
    k = components.shape[1]
    t2_oof, resid_oof = limits.out_of_fold(z, opts, k)
    resid_scale = residual_scale(resid_oof)
    r_oof = largest_residual(resid_oof, resid_scale)
    n_eff = limits.independent_windows(t2_oof)
    cal = Calibration(n_eff, min(limits.widening(1, n_eff, opts.false_alarm), MAX_WIDENING))
    t2_limit = limits.robust_limit(t2_oof, opts, cal.widening)
    r_limit = limits.robust_limit(r_oof, opts)
    expected = limits.tail_exceedance(t2_oof, t2_limit) + limits.tail_exceedance(r_oof, r_limit)
    return RobustPCA(
        names=names,
        center=center,
        scale=scale,
        components=components,
        eigvals=eigvals,
        resid_scale=resid_scale,
        t2_limit=t2_limit,
        r_limit=r_limit,
        threshold=1.0,
        clear_threshold=opts.clear_threshold,
        normal_low=_floor_nonnegative(names, center - opts.normal_sigmas * scale),
        normal_high=center + opts.normal_sigmas * scale,
        explained=explained,
        n_train=int(x.shape[0]),
        options=opts,
        expected_false_alarm=min(1.0, expected),
        calibration=cal,
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


# Features that cannot be negative: a band reaching below zero would read as nonsense on an alert.
NONNEGATIVE = ("std", "p2p", "rms", "crest")


def _floor_nonnegative(names: Sequence[str], low: Array) -> Array:
    floor = np.array([0.0 if n.rsplit(".", 1)[-1] in NONNEGATIVE else -np.inf for n in names])
    return np.maximum(low, floor)
