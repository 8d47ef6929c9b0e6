"""Features of a window, vectorised over all tags at once.

The feature vector is tag-major: for each tag in the pipeline's order, each feature in the configured
order, named ``<tag>.<feature>``. A tag with no good value in the window gives NaN features (never 0).

Definitions (population statistics over the good values of the window; t in seconds):

| name      | definition                                                  |
|-----------|-------------------------------------------------------------|
| mean      | arithmetic mean                                             |
| std       | standard deviation (ddof 0)                                 |
| min, max  | smallest and largest value                                  |
| rms       | sqrt(mean(x^2))                                             |
| p2p       | max - min (peak to peak)                                    |
| slope     | least-squares slope against time, units per second          |
| skewness  | m3 / m2^1.5; 0 when the window is constant (*)              |
| kurtosis  | excess kurtosis m4 / m2^2 - 3; 0 when constant (*)          |
| crest     | max(abs(x)) / rms; 0 when rms is 0                          |
| last      | the last good value                                         |

(*) constant: variance m2 <= 1e-150, or m2 <= 1e-24 * mean^2 (float rounding noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import numpy as np

from agent.config.sections import FeatureName

FEATURES: tuple[str, ...] = get_args(FeatureName)  # one list, declared with the config


def feature_names(tags: Sequence[str], features: Sequence[str]) -> list[str]:
    """The stable names of the feature vector, in its order."""
    return [f"{tag}.{feature}" for tag in tags for feature in features]


def compute(values: np.ndarray, times: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """Feature vector of one window.

    Args:
        values: (rows, tags) float array, NaN where no good value.
        times: (rows,) epoch seconds of the rows (used by slope).
        features: names from ``FEATURES``, in the order wanted.

    Returns:
        float64 array of length ``tags * len(features)``, tag-major.
    """
    valid = ~np.isnan(values)
    count = valid.sum(axis=0)
    has = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(valid, values, 0.0)
        mean = x.sum(axis=0) / count
        dev = np.where(valid, values - mean, 0.0)
        m2 = (dev**2).sum(axis=0) / count
        out: dict[str, np.ndarray] = {"mean": mean, "std": np.sqrt(m2)}
        wanted = set(features)
        if wanted & {"min", "p2p"}:
            out["min"] = np.where(has, np.where(valid, values, np.inf).min(axis=0), np.nan)
        if wanted & {"max", "p2p"}:
            out["max"] = np.where(has, np.where(valid, values, -np.inf).max(axis=0), np.nan)
        if "p2p" in wanted:
            out["p2p"] = out["max"] - out["min"]
        if wanted & {"rms", "crest"}:
            out["rms"] = np.sqrt((x**2).sum(axis=0) / count)
        if "crest" in wanted:
            peak = np.where(has, np.abs(x).max(axis=0), np.nan)
            out["crest"] = np.where(out["rms"] > 0, peak / out["rms"], np.where(has, 0.0, np.nan))
        if "slope" in wanted:
            t = (times - times[0])[:, None] * np.ones_like(values)
            tmean = np.where(valid, t, 0.0).sum(axis=0) / count
            tdev = np.where(valid, t - tmean, 0.0)
            sxx = (tdev**2).sum(axis=0)
            out["slope"] = np.where(sxx > 0, (tdev * dev).sum(axis=0) / sxx, np.where(has, 0.0, np.nan))
        # Numerically constant: tiny variance, absolute or relative to the mean (m2**2 would underflow).
        flat = (m2 > 1e-150) & (m2 > 1e-24 * mean**2)
        if "skewness" in wanted:
            m3 = (dev**3).sum(axis=0) / count
            out["skewness"] = np.where(flat, m3 / m2**1.5, np.where(has, 0.0, np.nan))
        if "kurtosis" in wanted:
            m4 = (dev**4).sum(axis=0) / count
            out["kurtosis"] = np.where(flat, m4 / m2**2 - 3.0, np.where(has, 0.0, np.nan))
        if "last" in wanted:
            rows = values.shape[0]
            idx = rows - 1 - np.argmax(valid[::-1], axis=0)
            out["last"] = np.where(has, values[idx, np.arange(values.shape[1])], np.nan)
    return np.stack([out[name] for name in features], axis=1).ravel()
