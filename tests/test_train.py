"""The learn-normal trainer, its ONNX export (checked with a real onnxruntime) and the model card."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from agent.errors import ModelError
from agent.learn import export as onnx_export
from agent.learn import modelcard
from agent.learn.fit import FitOptions, RobustPCA, fit
from agent.learn.source import hash_training_data
from agent.learn.trainer import fit_and_export

NAMES = [
    "pump.speed",
    "pump.flow",
    "pump.pressure",
    "pump.current",
    "bearing.temp",
    "bearing.vib",
    "ambient.t",
]


def normal_data(n: int, seed: int = 0, load_range: tuple[float, float] = (0.55, 1.0)) -> np.ndarray:
    """Pump-like features: two latent drivers (load, valve) plus independent noise, in plant units."""
    rng = np.random.default_rng(seed)
    load = rng.uniform(*load_range, n)
    valve = 1.0 - rng.gamma(2.0, 0.02, n)
    noise = rng.normal(size=(n, len(NAMES)))
    return np.column_stack(
        [
            1480 * load + 2 * noise[:, 0],
            120 * load * valve + 0.8 * noise[:, 1],
            1 + 4 * load**2 * (1 + 0.6 * (1 - valve)) + 0.03 * noise[:, 2],
            8 + 34 * load + 0.3 * noise[:, 3],
            25 + 30 * load + 0.4 * noise[:, 4],
            1.8 * (0.4 + 0.6 * load**2) + 0.05 * noise[:, 5],
            20 + 1.5 * noise[:, 6],
        ]
    )


@pytest.fixture(scope="module")
def model() -> RobustPCA:
    return fit(normal_data(3000), NAMES)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, model: RobustPCA) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    return onnx_export.export(
        model, path, window={"size": "10s"}, span=(1.7e9, 1.7e9 + 7200), data_hash="ab" * 32
    )


def test_normal_data_scores_low_and_the_threshold_is_one(model: RobustPCA) -> None:
    scores, contrib = model.score(normal_data(4000, seed=1))
    assert model.threshold == 1.0
    assert np.mean(scores >= model.threshold) < 0.02
    assert np.median(scores) < 0.5
    np.testing.assert_allclose(contrib.sum(axis=1), 1.0, atol=1e-9)
    assert (contrib >= 0).all()


@pytest.mark.parametrize("feature", [1, 4, 5])
def test_a_shifted_feature_scores_high_and_is_named_first(model: RobustPCA, feature: int) -> None:
    x = normal_data(200, seed=2)
    x[:, feature] += 8 * model.scale[feature]
    scores, contrib = model.score(x)
    assert np.mean(scores >= model.threshold) > 0.95
    assert np.mean(contrib.argmax(axis=1) == feature) > 0.9
    assert np.median(model.sigmas(x)[:, feature]) > 6


def test_an_unusual_but_consistent_state_raises_t() -> None:
    """Everything high together: the learned correlations hold, the level is new."""
    rng = np.random.default_rng(4)
    mixing = rng.normal(size=(2, 6))

    def linear(latent: np.ndarray) -> np.ndarray:
        return latent @ mixing + 0.05 * rng.normal(size=(len(latent), 6))

    m = fit(linear(rng.normal(size=(2000, 2))), [f"f.{i}" for i in range(6)])
    far = linear(np.column_stack([np.full(200, 6.0), rng.normal(size=200)]))
    t2, q = m.statistics(far)
    scores, _ = m.score(far)
    assert np.mean(scores >= 1.0) > 0.95
    assert np.median(t2 / m.t2_limit) > 3 * np.median(q / m.r_limit)


def test_fit_is_deterministic_and_keeps_a_residual_space() -> None:
    x = normal_data(500)
    a, b = fit(x, NAMES), fit(x, NAMES)
    np.testing.assert_array_equal(a.components, b.components)
    assert a.t2_limit == b.t2_limit
    assert 1 <= a.n_components <= len(NAMES) - 1
    assert a.explained >= 0.95 or a.n_components == len(NAMES) - 1


def test_constant_feature_and_missing_values_are_handled() -> None:
    x = normal_data(400)
    x = np.column_stack([x, np.full(len(x), 50.0)])
    x[::7, 2] = np.nan
    names = [*NAMES, "pump.setpoint"]
    m = fit(x, names)
    assert m.scale[-1] == pytest.approx(0.05)  # floor: 1e-3 of the center
    scores, _ = m.score(np.column_stack([normal_data(300, seed=5), [50.0] * 300]))
    assert np.isfinite(scores).all()
    assert np.mean(scores >= 1.0) < 0.03
    moved = np.column_stack([normal_data(50, 6), [52.0] * 50])
    scores, contrib = m.score(moved)
    assert (scores > 1.0).all() and (contrib.argmax(axis=1) == len(names) - 1).all()


def test_nan_is_scored_as_the_center(model: RobustPCA) -> None:
    x = np.tile(model.center, (1, 1))
    x[0, 3] = np.nan
    scores, contrib = model.score(x)
    assert scores[0] == pytest.approx(0.0, abs=1e-9)
    assert np.isfinite(contrib).all()


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.ones((5, len(NAMES))), "only 5 windows"),
        (np.column_stack([normal_data(50)[:, :-1], np.full(50, np.nan)]), "no values in the training data"),
        (np.ones((50, 3)), "expected feature vectors"),
    ],
)
def test_bad_training_data_says_what_to_do(x: np.ndarray, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        fit(x, NAMES)


def test_repeated_feature_names_are_refused() -> None:
    with pytest.raises(ModelError, match=r"repeated: a\.x"):
        fit(np.random.default_rng(0).normal(size=(50, 3)), ["a.x", "a.x", "b.y"])


@pytest.mark.parametrize("batch", [1, 2, 257])
def test_onnx_gives_the_numpy_scores_and_contributions(model: RobustPCA, exported: Path, batch: int) -> None:
    x = normal_data(batch, seed=7)
    x[: batch // 2, 4] += 10 * model.scale[4]  # some anomalous rows
    x[::3, 1] = np.nan  # and missing values
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    score, contrib = session.run(["score", "contributions"], {"features": x.astype(np.float32)})
    want_score, want_contrib = model.score(x.astype(np.float32))
    assert score.shape == (batch,) and contrib.shape == (batch, len(NAMES))
    assert score.dtype == np.float32 and contrib.dtype == np.float32
    np.testing.assert_allclose(score, want_score, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(contrib, want_contrib, rtol=2e-3, atol=2e-5)


def test_onnx_graph_contract_and_metadata(model: RobustPCA, exported: Path) -> None:
    proto = onnx.load(str(exported))
    assert proto.ir_version == 8
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    (inp,) = proto.graph.input
    assert inp.name == "features"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == len(NAMES)
    assert [o.name for o in proto.graph.output] == ["score", "contributions"]
    meta = onnx_export.read_metadata(exported)
    assert meta["feature_names"] == NAMES
    assert meta["kind"] == "robust-pca-tr"
    assert meta["false_alarm_rate"] == pytest.approx(model.expected_false_alarm)
    assert 0 < meta["false_alarm_rate"] < 1e-3
    assert meta["threshold"] == 1.0 and meta["clear_threshold"] == 0.8
    np.testing.assert_allclose(meta["center"], model.center)
    np.testing.assert_allclose(meta["scale"], model.scale)
    np.testing.assert_allclose(meta["normal_low"], model.normal_low)
    np.testing.assert_allclose(meta["normal_high"], model.normal_high)
    assert meta["window"] == {"size": "10s"}
    assert meta["training_span"] == {"start": 1.7e9, "end": 1.7e9 + 7200}
    assert meta["data_hash"] == "ab" * 32
    raw = {p.key: p.value for p in proto.metadata_props}
    assert all(
        isinstance(json.loads(raw[f"edge_agent.{k}"]), list) for k in ("center", "scale", "feature_names")
    )


def test_fit_and_export_writes_model_and_card(tmp_path: Path) -> None:
    x = normal_data(600)
    result = fit_and_export(
        x,
        NAMES,
        tmp_path / "out" / "model.onnx",
        window={"size": "10s", "step": "10s"},
        span=(1.7e9, 1.7e9 + 6000),
        card_path=tmp_path / "out" / "model.md",
        png_path=tmp_path / "out" / "model.png",
    )
    assert result.model_path.exists() and result.card_path is not None
    assert result.data_hash == hash_training_data(x)
    assert result.alert_fraction < 0.02
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["model.onnx", "model.md"] + (["model.png"] if modelcard.plotting_available() else [])
    )
    card = result.card_path.read_text()
    for name in NAMES:
        assert f"`{name}`" in card
    assert "**Expected false alarms:**" in card and result.data_hash in card
    assert "2023-11-14 22:13:20 UTC" in card


def test_model_card_picture_when_matplotlib_is_installed(model: RobustPCA) -> None:
    pytest.importorskip("matplotlib")
    x = normal_data(300)
    png = modelcard.render_png(model, model.score(x)[0], x)
    assert png is not None and png.startswith(b"\x89PNG")


def test_interrupted_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old model")
    with pytest.raises(TypeError):
        onnx_export.write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_missing_onnx_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # what an environment without the extra looks like
    # the command for this install: its own interpreter's pip, from where it was installed (issue 12)
    with pytest.raises(ModelError, match=rf"{re.escape(sys.executable)} -m pip install .*\[train\]"):
        fit_and_export(normal_data(100), NAMES, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (4, len(NAMES)), elements=st.floats(-1e4, 1e4) | st.just(np.nan)))
def test_scores_and_contributions_are_well_formed_for_any_input(x: np.ndarray) -> None:
    m = _SMALL_MODEL
    scores, contrib = m.score(x)
    assert (scores >= 0).all() and np.isfinite(scores).all()
    assert (contrib >= 0).all()
    sums = contrib.sum(axis=1)
    assert np.all((np.abs(sums - 1) < 1e-6) | (sums == 0))


_SMALL_MODEL = fit(normal_data(200, seed=9), NAMES, FitOptions(max_components=3))


def test_one_or_two_extreme_training_windows_do_not_set_the_limit() -> None:
    """Issue 18: a gap or a temperature step in one window took the T² limit from ~50 to >1000."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    clean = fit(x, [f"f.{i}" for i in range(6)])
    spoiled = x.copy()
    spoiled[100] += 40.0
    spoiled[200] -= 40.0
    odd = fit(spoiled, [f"f.{i}" for i in range(6)])
    assert odd.t2_limit < 1.5 * clean.t2_limit and odd.r_limit < 1.5 * clean.r_limit
    assert 0 < clean.expected_false_alarm < 1e-3
