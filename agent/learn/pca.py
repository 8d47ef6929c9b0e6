"""The linear algebra of the model of normal: robust scaling, principal components, T and residuals.

Pure numpy, no clock, no I/O; ``agent.learn.fit`` states the rules these implement and ``agent.learn.limits``
calibrates the statistics they compute.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
IQR_TO_SIGMA = 1.349  # IQR of a standard normal
SCALE_FLOOR_REL = 1e-3
SCALE_FLOOR_ABS = 1e-6
WINSOR_SIGMAS = 6.0
# A residual spread below this (in robust sigmas of the feature) is float32 rounding, not noise: a
# feature the others predict exactly (a setpoint, a duplicated tag) must not turn 1e-6 into an alert.
RESID_FLOOR = 1e-2


def robust_scale(x: Array) -> tuple[Array, Array]:
    """Per-column median and robust sigma (IQR / 1.349, else std, floored); see ``agent.learn.fit``."""
    center = np.nanmedian(x, axis=0)
    q75, q25 = np.nanpercentile(x, [75, 25], axis=0)
    scale = (q75 - q25) / IQR_TO_SIGMA
    floor = np.maximum(SCALE_FLOOR_REL * np.abs(center), SCALE_FLOOR_ABS)
    std = np.nanstd(x, axis=0)
    scale = np.where(scale > floor, scale, std)
    return center, np.maximum(scale, floor)


def residual_scale(resid: Array) -> Array:
    """Per-feature robust spread of residuals (IQR / 1.349, else std), floored at ``RESID_FLOOR``."""
    q75, q25 = np.percentile(resid, [75, 25], axis=0)
    scale = (q75 - q25) / IQR_TO_SIGMA
    scale = np.where(scale > RESID_FLOOR, scale, resid.std(axis=0))
    return np.asarray(np.maximum(scale, RESID_FLOOR))


def principal(z: Array, variance: float, max_components: int, k: int | None) -> tuple[Array, Array, float]:
    """Kept loadings, their variances and the explained fraction; ``k`` fixed when given.

    Components of the second moment about the median of ``z`` winsorised at ``WINSOR_SIGMAS``; the
    fewest explaining ``variance``, at most ``max_components`` and at most ``F - 1``.
    """
    n, f = z.shape
    zc = np.clip(z, -WINSOR_SIGMAS, WINSOR_SIGMAS)
    cov = zc.T @ zc / max(n - 1, 1)
    eigvals, vecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1]
    eigvals, vecs = np.clip(eigvals[order], 0.0, None), vecs[:, order]
    total = float(eigvals.sum()) or 1.0
    if k is None:
        cum = np.cumsum(eigvals) / total
        k = int(np.searchsorted(cum, variance) + 1)
        k = max(1, min(k, max_components, f - 1 if f > 1 else 1))
    # Sign convention (largest loading positive) so refits give the same model.
    vecs = vecs[:, :k] * np.where(vecs[np.abs(vecs[:, :k]).argmax(axis=0), range(k)] < 0, -1.0, 1.0)
    kept = np.maximum(eigvals[:k], max(1e-6 * total, 1e-12))
    return vecs, kept, float(eigvals[:k].sum() / total)


def project(z: Array, components: Array, eigvals: Array) -> tuple[Array, Array]:
    """T of each row, the largest one-mode Hotelling statistic ``max_j t_j² / λ_j``, and the row's
    residual off the component plane (``N x F``)."""
    t = z @ components
    resid = z - t @ components.T
    return np.max(t * t / eigvals, axis=1), resid


def largest_residual(resid: Array, resid_scale: Array) -> Array:
    """R: per row, the largest squared residual of one feature in units of its normal residual spread."""
    return np.asarray(np.max((resid / resid_scale) ** 2, axis=1))
