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
    units = {"bearing_temp": "°C", "vibration": "mm/s"}
    top, summary = explain(names, values, np.array([0.5, 0.4, 0.0]), normal, top=2, units=units)
    assert [t["tag"] for t in top] == ["bearing_temp", "vibration"]
    assert top[0]["z"] == pytest.approx(13.0 / 3.0, abs=1e-6) and top[0]["normal"] == [40.0, 50.0]
    assert summary == (
        "bearing_temp mean 58 °C, above its normal 40-50 °C by 8 °C; "
        "vibration RMS 2 mm/s, above its normal 0.5-1.5 mm/s by 0.5 mm/s"
    )
    assert "sigma" not in summary and "z" not in summary.replace("bearing", "")


def test_the_issue_example_in_english_and_in_korean() -> None:
    names, values = ["bearing_temp.mean"], np.array([58.2])
    normal = Normal(
        center=np.array([45.2]), scale=np.array([1.2]), low=np.array([41.5]), high=np.array([48.9])
    )
    units = {"bearing_temp": "°C"}
    _, en = explain(names, values, np.array([1.0]), normal, top=1, units=units)
    assert en == "bearing_temp mean 58.2 °C, above its normal 41.5-48.9 °C by 9.3 °C"
    _, ko = explain(names, values, np.array([1.0]), normal, top=1, units=units, language="ko")
    assert ko == "bearing_temp 평균 58.2 °C, 정상 범위 41.5-48.9 °C보다 9.3 °C 높음"


def test_a_value_inside_its_band_is_never_called_below_normal() -> None:
    """Issue 18: values inside their band were named "2.1 sigma below normal", slope 0.0 as a cause."""
    names = ["bearing_temp.mean", "flow.slope", "flow.mean"]
    normal = Normal(center=np.array([45.0, 0.0, 10.0]), scale=np.array([1.0, 0.01, 1.0]))
    _, summary = explain(names, np.array([55.0, 0.0, 7.9]), np.array([0.6, 0.3, 0.1]), normal, top=3)
    assert summary.startswith("bearing_temp mean 55, above its normal 42-48 by 7")
    assert "slope" not in summary and "flow" not in summary


def test_without_contributions_features_are_ranked_by_distance_from_normal() -> None:
    top, _ = explain(
        ["a.mean", "b.mean"], np.array([1.0, -9.0]), None, Normal(np.zeros(2), np.ones(2)), top=1
    )
    assert top[0]["feature"] == "b.mean"
    assert top[0]["z"] == -9.0


def test_a_contributor_inside_its_normal_band_is_not_named() -> None:
    names = ["vibration.std", "speed.std", "flow.mean"]
    normal = Normal(center=np.zeros(3), scale=np.ones(3))
    top, summary = explain(names, np.array([5.0, -0.3, 3.5]), np.array([0.5, 0.4, 0.1]), normal, top=3)
    assert [t["feature"] for t in top] == ["vibration.std", "flow.mean"]
    assert "speed" not in summary


def test_a_broken_relation_names_the_pair_of_tags() -> None:
    names = ["vibration.mean", "vibration.std", "motor_current.mean"]
    normal = Normal(center=np.zeros(3), scale=np.ones(3))
    contrib = np.array([0.5, 0.3, 0.2])
    top, summary = explain(
        names, np.array([1.4, 0.2, -0.1]), contrib, normal, top=3, units={"vibration": "mm/s"}
    )
    assert [t["feature"] for t in top] == ["vibration.mean", "motor_current.mean"]  # two tags, not one twice
    assert summary == (
        "unusual combination: vibration mean 1.4 mm/s (normal -3 to 3 mm/s) with motor_current mean "
        "-0.1 (normal -3 to 3) (each inside its normal range, but not together)"
    )
    _, ko = explain(names, np.array([1.4, 0.2, -0.1]), contrib, normal, top=3, language="ko")
    assert ko.startswith("비정상적인 조합: vibration 평균 1.4 (정상 -3 ~ 3) + motor_current 평균")


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


def test_adapt_follows_slow_drift_but_not_a_developing_fault() -> None:
    from agent.stream.adapt import MAX_SHIFT, Drift

    normal = Normal(center=np.array([45.0]), scale=np.array([1.0]))
    drift = Drift(normal, hop_s=60.0, time_constant_s=3600.0)
    for k in range(600):  # +1 sigma over 10 h, scores plainly normal: followed
        assert drift.learn(np.array([45.0 + k / 600]), 0.2, 1.0, 1.0, alert_open=False)
    assert drift.offset[0] == pytest.approx(1.0, abs=0.1)
    before = drift.offset.copy()
    assert not drift.learn(np.array([49.0]), 0.7, 1.0, 1.0, alert_open=False)  # score rising: not learned
    assert not drift.learn(np.array([49.0]), 0.1, 1.0, 1.0, alert_open=True)  # alert open
    assert not drift.learn(np.array([49.0]), 0.1, 1.0, 0.5, alert_open=False)  # poor coverage
    np.testing.assert_array_equal(drift.offset, before)
    for _ in range(10_000):  # however patient, normal moves at most MAX_SHIFT sigmas
        drift.learn(np.array([100.0]), 0.1, 1.0, 1.0, alert_open=False)
    assert drift.offset[0] == pytest.approx(MAX_SHIFT)
    np.testing.assert_allclose(drift.apply(np.array([[48.0]])), [[45.0]])


def test_headlines_in_english_and_korean() -> None:
    from agent.stream.alerts import headline

    assert (
        headline("en", Transition.RAISED, "pump", 3.2, 1.0, 0.8) == "pump: anomaly, score 3.2 (threshold 1)"
    )
    assert headline("en", Transition.SUSTAINED, "pump", 3.2, 1.0, 0.8).startswith("pump: still abnormal")
    assert (
        headline("ko", Transition.RAISED, "pump", 3.2, 1.0, 0.8) == "pump: 이상 감지, 이상 점수 3.2 (기준 1)"
    )
    assert headline("ko", Transition.CLEARED, "pump", 0.2, 1.0, 0.8).startswith("pump: 정상 복귀")
