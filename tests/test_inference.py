"""Loading, checking and hot-swapping real ONNX models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from agent.errors import ModelError
from agent.stream.inference import ModelSlot, load
from tests.onnx_models import zscore_model

NAMES = ["t.mean", "t.std", "v.mean"]


def test_scores_and_contributions_in_one_batch(tmp_path: Path) -> None:
    model = load(zscore_model(tmp_path / "m.onnx", NAMES, [0, 0, 0], [1, 1, 2]), NAMES)
    scores, contrib = model.score(np.array([[0, 0, 0], [3, 0, 0], [0, 0, 6]], dtype=np.float32))
    assert scores.tolist() == pytest.approx([0.0, 3.0, 3.0])
    assert contrib is not None and contrib[2].tolist() == pytest.approx([0, 0, 3.0])
    assert model.meta_float("threshold") == 1.0 and model.id.startswith("sha256:")


def test_a_model_fixed_to_batch_one_is_run_row_by_row(tmp_path: Path) -> None:
    model = load(zscore_model(tmp_path / "m.onnx", NAMES, [0, 0, 0], [1, 1, 1], batch=1), NAMES)
    scores, _ = model.score(np.ones((4, 3), dtype=np.float32))
    assert scores.tolist() == pytest.approx([1.0] * 4)


def test_input_size_mismatch_is_refused_with_both_numbers(tmp_path: Path) -> None:
    path = zscore_model(tmp_path / "m.onnx", NAMES[:2], [0, 0], [1, 1], metadata=False)
    with pytest.raises(ModelError, match="expects 2 features but the pipeline produces 3"):
        load(path, NAMES)


def test_feature_names_from_metadata_must_match(tmp_path: Path) -> None:
    path = zscore_model(tmp_path / "m.onnx", ["t.mean", "t.max", "v.mean"], [0] * 3, [1] * 3)
    with pytest.raises(ModelError, match=r"first difference at #1: model 't\.max', pipeline 't\.std'"):
        load(path, NAMES)


def test_corrupt_and_missing_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ModelError, match="not a model onnxruntime can load"):
        load(tmp_path / "bad.onnx", NAMES)
    with pytest.raises(ModelError, match="cannot read model file"):
        load(tmp_path / "missing.onnx", NAMES)


def test_changed_file_is_swapped_and_a_bad_one_keeps_the_last_good(tmp_path: Path) -> None:
    path = zscore_model(tmp_path / "m.onnx", NAMES, [0, 0, 0], [1, 1, 1])
    slot = ModelSlot(path, NAMES)
    first = slot.model.id
    assert slot.refresh() is None
    zscore_model(tmp_path / "next.onnx", NAMES, [1, 1, 1], [1, 1, 1], threshold=2.0)
    os.replace(tmp_path / "next.onnx", path)
    assert slot.refresh() == ("swapped", slot.model.id) and slot.model.id != first
    good = slot.model.id
    path.write_bytes(b"half a model")
    what, reason = slot.refresh() or ("", "")
    assert what == "rejected" and "not a model" in reason
    assert slot.model.id == good
    assert slot.model.score(np.zeros((1, 3), dtype=np.float32))[0].tolist() == pytest.approx([1.0])
