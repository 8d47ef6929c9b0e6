"""Features against straightforward reference formulas, including gaps and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.stream.features import FEATURES, compute, feature_names


def flat(m2: float, mean: float) -> bool:
    """The documented 'not constant' rule."""
    return bool(m2 > 1e-150 and m2 > 1e-24 * mean**2)


def reference(x: np.ndarray, t: np.ndarray) -> dict[str, float]:
    keep = ~np.isnan(x)
    x, t = x[keep], t[keep]
    mean = x.mean()
    m2 = ((x - mean) ** 2).mean()
    rms = np.sqrt((x**2).mean())
    slope = np.polyfit(t - t[0], x, 1)[0] if len(x) > 1 and np.ptp(t) > 0 else 0.0
    return {
        "mean": mean,
        "std": x.std(),
        "min": x.min(),
        "max": x.max(),
        "rms": rms,
        "p2p": np.ptp(x),
        "slope": slope,
        "skewness": ((x - mean) ** 3).mean() / m2**1.5 if flat(m2, mean) else 0.0,
        "kurtosis": ((x - mean) ** 4).mean() / m2**2 - 3 if flat(m2, mean) else 0.0,
        "crest": np.abs(x).max() / rms if rms > 0 else 0.0,
        "last": x[-1],
    }


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(-1e3, 1e3, allow_nan=False), st.just(float("nan"))), min_size=3, max_size=40
    ).filter(lambda xs: sum(x == x for x in xs) >= 2)
)
def test_every_feature_matches_the_reference(values: list[float]) -> None:
    x = np.array(values)
    t = np.arange(len(x), dtype=float) * 0.5 + 1e9
    got = dict(zip(FEATURES, compute(x[:, None], t, FEATURES), strict=True))
    for name, want in reference(x, t).items():
        assert got[name] == pytest.approx(want, rel=1e-6, abs=1e-6), name


def test_a_tag_without_good_values_gives_nan_features_never_zero() -> None:
    x = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan]])
    out = compute(x, np.arange(3.0), FEATURES).reshape(2, -1)
    assert np.isnan(out[1]).all()
    assert not np.isnan(out[0]).any()


def test_vector_is_tag_major_with_stable_names() -> None:
    x = np.array([[1.0, 10.0], [3.0, 30.0]])
    assert feature_names(["a", "b"], ["mean", "max"]) == ["a.mean", "a.max", "b.mean", "b.max"]
    assert compute(x, np.arange(2.0), ["mean", "max"]).tolist() == [2.0, 3.0, 20.0, 30.0]
