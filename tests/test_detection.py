"""What the model of normal calls an anomaly (issue 18): the largest mode and residual, limits for short data.

The Tennessee Eastman benchmark (``benchmarks/bench_tep.py``) found the cause of its false alarms: normal
runs whose whole pressure and steam loop swings wider than the training run did pushed the *sums* of
Hotelling's T² and Q over their limits; and 480 overlapping hourly windows were treated as 480 facts
when they are worth ~32. These tests pin both rules on synthetic data where the truth is known.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from agent.learn import limits
from agent.learn.fit import fit
from agent.learn.trainer import fit_and_export

F, K = 60, 3
MIXING = np.random.default_rng(11).normal(size=(K, F))
NAMES = [f"t{i:02d}.mean" for i in range(F)]


def plant(n: int, seed: int, amplitude: float = 1.0) -> np.ndarray:
    """Three shared modes over 60 features plus each feature's own noise, all scaled by ``amplitude``."""
    rng = np.random.default_rng(seed)
    return amplitude * (rng.normal(size=(n, K)) @ MIXING + rng.normal(size=(n, F)))


def test_a_whole_plant_swinging_a_little_wider_is_not_an_anomaly() -> None:
    """Before issue 18 the score summed squared residuals over ~50 directions: 30% more swing everywhere
    put 10% of normal windows over the limit (TEP: 25% of d09's normal hours). Now ~1%."""
    model = fit(plant(2000, seed=1), NAMES)
    scores, _ = model.score(plant(3000, seed=2, amplitude=1.3))
    assert np.mean(scores >= 1.0) < 0.03


def test_one_tag_leaving_its_relations_is_raised_and_named() -> None:
    model = fit(plant(2000, seed=1), NAMES)
    x = plant(500, seed=3)
    x[:, 7] += 8 * model.resid_scale[7] * model.scale[7]  # 8 of its own residual sigmas, nothing else moves
    scores, contributions = model.score(x)
    assert np.mean(scores >= 1.0) > 0.9
    assert np.mean(contributions.argmax(axis=1) == 7) > 0.95


def test_independent_windows_of_overlapping_windows() -> None:
    rng = np.random.default_rng(5)
    white = rng.normal(size=20_000)
    assert limits.independent_windows(white) == pytest.approx(20_000, rel=0.1)
    # A window of 20 samples every sample: tau = 20 (a moving average of 20 independent values).
    overlapped = np.convolve(white, np.ones(20) / 20, mode="valid")
    assert limits.independent_windows(overlapped) == pytest.approx(overlapped.size / 20, rel=0.25)


def test_widening_is_hotellings_prediction_correction() -> None:
    stats = pytest.importorskip("scipy.stats")
    assert limits.widening(1, 1e6, 1e-4) == pytest.approx(1.0, abs=1e-3)
    assert limits.widening(3, 4, 1e-4) == math.inf  # n <= dims + 1: nothing can be said
    for dims, n in ((1, 13), (1, 32), (10, 32), (3, 200)):
        exact = (
            ((n - 1) * (n + 1) / (n * (n - dims)) * stats.f.ppf(1 - 1e-4, dims, n - dims))
            / stats.chi2.ppf(1 - 1e-4, dims)
            * dims
        )
        assert limits.widening(dims, n, 1e-4) == pytest.approx(exact, rel=0.06)


def test_a_slow_recording_widens_the_mode_limit_and_the_card_says_so(tmp_path: Path) -> None:
    """Windows of a slow process, one every 1/20 of its time constant: ~n/20 independent windows."""
    rng = np.random.default_rng(8)
    white = rng.normal(size=(620, K))
    latent = np.column_stack([np.convolve(c, np.ones(20) / 20, mode="valid") for c in white.T])
    slow = latent @ MIXING * 4 + 0.3 * rng.normal(size=(latent.shape[0], F))
    result = fit_and_export(slow, NAMES, tmp_path / "m.onnx", card_path=tmp_path / "m.md")
    fast = fit(plant(600, seed=9), NAMES)
    assert fast.calibration.widening < 1.1 < 1.25 < result.model.calibration.widening
    assert result.model.calibration.windows < 100
    card = (tmp_path / "m.md").read_text()
    assert f"widened x{result.model.calibration.widening:.3g}" in card
    assert "false_alarm_rate" in card
