"""A model trained off the gateway (scikit-learn -> skl2onnx) is checked and hot-swapped like a trained one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.config.load import load_config
from agent.learn.trainer import training_windows
from agent.stream.inference import ModelSlot, load

pytest.importorskip("skl2onnx")
from sklearn.ensemble import IsolationForest

from agent.learn.external import from_sklearn
from tests.test_learn import REPLAY_CONFIG, synthetic_csv


def test_an_isolation_forest_meets_the_contract_passes_check_and_is_hot_swapped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    synthetic_csv(tmp_path / "data.csv")
    config = tmp_path / "edge.toml"
    config.write_text(REPLAY_CONFIG.format(model='model = "m.onnx"'))
    train = [
        "train",
        "-c",
        str(config),
        "--data",
        str(tmp_path / "data.csv"),
        "--out",
        str(tmp_path / "m.onnx"),
    ]
    assert main(train) == 0
    pipe = load_config(config).pipelines[0]
    found = asyncio.run(training_windows(pipe, tmp_path / "data.csv"))

    # The off-gateway part: fit on the same feature rows, convert, put on the agent's scale.
    forest = IsolationForest(n_estimators=50, random_state=0).fit(found.x)
    external = tmp_path / "forest.onnx"
    external.write_bytes(from_sklearn(forest, found.x, found.names))

    model = load(external, found.names)
    assert model.meta_float("threshold") == 1.0 and model.normal.low is not None
    scores, _ = model.score(found.x)
    assert np.mean(scores >= 1.0) < 0.01  # calibrated: its own normal rarely reaches 1.0
    far = found.x.copy()
    far += 100.0 * found.x.std(axis=0)  # every feature far outside anything seen
    assert np.mean(model.score(far)[0] >= 1.0) > 0.9

    slot = ModelSlot(tmp_path / "m.onnx", found.names)
    trained_id = slot.model.id
    os.replace(external, tmp_path / "m.onnx")
    assert slot.refresh() == ("swapped", slot.model.id) and slot.model.id != trained_id
    capsys.readouterr()
    assert main(["check", "-c", str(config)]) == 0


def test_an_external_model_of_other_features_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    forest = IsolationForest(n_estimators=10, random_state=0).fit(x)
    path = tmp_path / "forest.onnx"
    path.write_bytes(from_sklearn(forest, x, ["a.mean", "b.mean", "c.mean"]))
    from agent.errors import ModelError

    with pytest.raises(ModelError, match="first difference at #1"):
        load(path, ["a.mean", "x.mean", "c.mean"])
