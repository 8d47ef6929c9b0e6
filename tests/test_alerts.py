"""Alert hysteresis and explanations, fed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from agent.stream.alerts import AlertState, Normal, Transition, explain


def run(state: AlertState, scores: list[float]) -> list[tuple[int, Transition]]:
    return [(i, t) for i, s in enumerate(scores) if (t := state.update(s)) is not None]


def test_raises_after_n_consecutive_windows_and_clears_after_m_below_the_clear_threshold() -> None:
    state = AlertState(threshold=1.0, clear_threshold=0.5, raise_after=3, clear_after=2)
    scores = [0.2, 1.5, 1.6, 0.3, 1.2, 1.3, 1.4, 0.8, 0.7, 0.4, 0.45, 0.1]
    assert run(state, scores) == [(6, Transition.RAISED), (10, Transition.CLEARED)]


def test_a_noisy_score_around_the_threshold_does_not_flap() -> None:
    state = AlertState(threshold=1.0, clear_threshold=0.7, raise_after=2, clear_after=2)
    rng = np.random.default_rng(1)
    scores = [1.2, 1.2, *(0.95 + rng.uniform(-0.2, 0.2, 200))]
    transitions = run(state, scores)
    assert transitions == [(1, Transition.RAISED)]


def test_explanation_names_top_features_and_how_far_from_normal() -> None:
    names = ["bearing_temp.mean", "vibration.rms", "flow.mean"]
    values = np.array([58.0, 2.0, 10.0])
    normal = Normal(
        center=np.array([45.0, 1.0, 10.0]),
        scale=np.array([3.0, 0.25, 1.0]),
        low=np.array([40.0, 0.5, 8.0]),
        high=np.array([50.0, 1.5, 12.0]),
    )
    top, summary = explain(names, values, np.array([0.5, 0.4, 0.0]), normal, top=2)
    assert [t["tag"] for t in top] == ["bearing_temp", "vibration"]
    assert top[0]["z"] == pytest.approx(13.0 / 3.0, abs=1e-6) and top[0]["normal"] == [40.0, 50.0]
    assert "bearing_temp.mean 4.3 sigma above normal" in summary
    assert "vibration.rms 4.0 sigma above normal" in summary


def test_without_contributions_features_are_ranked_by_distance_from_normal() -> None:
    top, _ = explain(
        ["a.mean", "b.mean"], np.array([1.0, -9.0]), None, Normal(np.zeros(2), np.ones(2)), top=1
    )
    assert top[0]["feature"] == "b.mean"
    assert top[0]["z"] == -9.0


def test_a_contributor_inside_its_normal_band_is_not_named() -> None:
    names = ["vibration.std", "speed.std", "flow.mean"]
    normal = Normal(center=np.zeros(3), scale=np.ones(3))
    top, summary = explain(names, np.array([5.0, -0.3, 2.5]), np.array([0.5, 0.4, 0.1]), normal, top=3)
    assert [t["feature"] for t in top] == ["vibration.std", "flow.mean"]
    assert "speed" not in summary


def test_a_broken_relation_with_every_feature_in_range_says_so() -> None:
    names = ["vibration_rms.mean", "motor_current.mean"]
    normal = Normal(center=np.zeros(2), scale=np.ones(2))
    top, summary = explain(names, np.array([1.4, -0.1]), np.array([0.7, 0.3]), normal, top=2)
    assert [t["feature"] for t in top] == ["vibration_rms.mean", "motor_current.mean"]
    assert summary.startswith("no single feature outside its normal range, but an unusual combination of: ")


def test_cusum_raises_a_big_step_in_one_window_and_a_moderate_one_in_three() -> None:
    big = AlertState(threshold=1.0, clear_threshold=0.8, rule="cusum")
    assert run(big, [0.2, 0.3, 8.0]) == [(2, Transition.RAISED)]
    moderate = AlertState(threshold=1.0, clear_threshold=0.8, rule="cusum")
    assert run(moderate, [0.2, 2.0, 2.0, 2.0]) == [(3, Transition.RAISED)]


def test_cusum_raises_a_score_that_stays_just_under_the_threshold_but_not_normal_noise() -> None:
    rng = np.random.default_rng(3)
    noise = AlertState(threshold=1.0, clear_threshold=0.8, rule="cusum")
    assert run(noise, list(rng.uniform(0.1, 0.85, 2000))) == []
    creeping = AlertState(threshold=1.0, clear_threshold=0.8, rule="cusum")
    transitions = run(creeping, [0.95] * 30)
    assert transitions and transitions[0][1] is Transition.RAISED
    # the consecutive rule never raises on it: no single window reaches the threshold
    assert run(AlertState(1.0, 0.8, raise_after=3), [0.95] * 30) == []


def test_cusum_clears_a_few_windows_after_the_machine_is_back() -> None:
    state = AlertState(threshold=1.0, clear_threshold=0.8, clear_after=3, rule="cusum")
    transitions = run(state, [5.0] * 200 + [0.3] * 10)
    assert transitions[0] == (1, Transition.RAISED)
    assert transitions[1][1] is Transition.CLEARED and transitions[1][0] <= 205


def test_a_long_alert_is_re_announced_as_sustained() -> None:
    state = AlertState(threshold=1.0, clear_threshold=0.8, rule="cusum", sustained_after=60.0)
    seen = [(t, tr) for t in range(0, 150, 5) if (tr := state.update(3.0, float(t))) is not None]
    assert seen == [(5, Transition.RAISED), (65, Transition.SUSTAINED), (125, Transition.SUSTAINED)]
