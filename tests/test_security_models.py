"""Hostile model files (issue 10, items 1-2): external data, custom operators, metadata that does not parse.

The attacks run against real onnxruntime and, for hot swap and SIGHUP, against the real agent in a
subprocess: the hostile file is refused, the last good model keeps scoring, the agent stays up and
nothing of the secret file is ever published.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import ModelError
from agent.stream.inference import ModelSlot, load
from tests.conftest import free_port
from tests.hostile_models import custom_op_model, exfil_model, model_with_metadata
from tests.pump import FEATURE_NAMES, make_data, make_model, source_and_pipeline
from tests.test_operations import Agent

SECRET = b"hunter2-mqtt-password"
NAMES = FEATURE_NAMES

CONFIG = """
[agent]
id = "line1"
state_dir = "state"
status_interval = "1h"
model_check_interval = "200ms"

[health]
port = {port}
{pump}
[[sinks]]
type = "jsonl"
path = "out.jsonl"
kinds = ["features", "alert"]
"""


@pytest.mark.parametrize(
    ("location", "in_constant"),
    [("secret.bin", False), ("../secret.bin", False), ("{abs}", False), ("secret.bin", True)],
    ids=["relative", "dotdot", "absolute", "constant-node"],
)
def test_a_model_with_external_data_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, location: str, in_constant: bool
) -> None:
    (tmp_path / "secret.bin").write_bytes(SECRET)
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)  # onnxruntime resolves a relative location against the working directory
    where = location.replace("{abs}", str(tmp_path / "secret.bin"))
    path = exfil_model(tmp_path / "models" / "m.onnx", NAMES, where, in_constant=in_constant)
    with pytest.raises(ModelError, match="tensor 'leak' keeps its data in an external file"):
        load(path, NAMES)


def test_a_custom_operator_domain_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"operator domain 'com\.attacker'"):
        load(custom_op_model(tmp_path / "m.onnx", NAMES), NAMES)


def test_truncated_protobuf_is_a_model_error(tmp_path: Path) -> None:
    data = make_model(tmp_path / "good.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="not a model onnxruntime can load"):
        load(tmp_path / "cut.onnx", NAMES)


DEEP = "[" * 100_000 + "]" * 100_000

BAD_METADATA = [
    ({"edge_agent.threshold": "abc"}, r"edge_agent\.threshold = 'abc' is not a finite number"),
    ({"edge_agent.threshold": "nan"}, r"edge_agent\.threshold = 'nan' is not a finite number"),
    ({"edge_agent.threshold": "4", "edge_agent.clear_threshold": "x"}, r"clear_threshold = 'x'"),
    (
        {"edge_agent.feature_names": "123", "edge_agent.threshold": "4"},
        r"feature_names = '123' must be a list",
    ),
    ({"edge_agent.feature_names": "[1, 2]", "edge_agent.threshold": "4"}, r"must be a list of strings"),
    (
        {"edge_agent.feature_names": "[", "edge_agent.threshold": "4"},
        r"feature_names = '\[' is not valid JSON",
    ),
    (
        {"edge_agent.feature_names": DEEP, "edge_agent.threshold": "4"},
        r"feature_names = '\[\[\[.*nested too deeply",
    ),
    ({"edge_agent.center": DEEP, "edge_agent.threshold": "4"}, r"edge_agent\.center = .*nested too deeply"),
    ({"edge_agent.center": '"abc"', "edge_agent.threshold": "4"}, r"center = '\"abc\"' must be a list of 4"),
    ({"edge_agent.scale": "[1, 2]", "edge_agent.threshold": "4"}, r"scale = '\[1, 2\]' must be a list of 4"),
    ({"edge_agent.normal_low": "[1, 2, 3, NaN]", "edge_agent.threshold": "4"}, r"normal_low = .* finite"),
    ({}, r"no edge_agent\.threshold metadata and the config sets none"),
]


@pytest.mark.parametrize(("props", "message"), BAD_METADATA, ids=[m[1][:30] for m in BAD_METADATA])
def test_metadata_that_does_not_parse_is_a_model_error_naming_key_and_value(
    tmp_path: Path, props: dict[str, str], message: str
) -> None:
    path = model_with_metadata(tmp_path / "m.onnx", NAMES, props)
    with pytest.raises(ModelError, match=message):
        load(path, NAMES, required=("threshold",))


def test_a_slot_keeps_the_last_good_model_whatever_the_new_file_holds(tmp_path: Path) -> None:
    path = make_model(tmp_path / "m.onnx")
    slot = ModelSlot(path, NAMES, ("threshold",))
    good = slot.model.id
    for i, (props, _) in enumerate(BAD_METADATA):
        model_with_metadata(tmp_path / "next.onnx", NAMES, {**props, "edge_agent.n": str(i)})
        os.replace(tmp_path / "next.onnx", path)
        change = slot.refresh()
        assert change is not None and change[0] == "rejected" and slot.model.id == good


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    make_data(tmp_path / "data.csv", seconds=600, anomaly=(100, 500))
    make_model(tmp_path / "model.onnx")
    (tmp_path / "secret.bin").write_bytes(SECRET)
    pump = source_and_pipeline(speed=20, at_end="loop", model=True)
    (tmp_path / "edge.toml").write_text(CONFIG.format(port=free_port(), pump=pump))
    return tmp_path


def _swap_in(folder: Path, build) -> None:  # type: ignore[no-untyped-def]
    tmp = build(folder / "new.onnx")
    os.replace(tmp, folder / "model.onnx")


def test_hot_swapped_hostile_models_are_refused_once_each_and_the_agent_stays_up(folder: Path) -> None:
    agent = Agent(folder)
    try:
        agent.wait_for(lambda: any(m["kind"] == "alert" for m in agent.lines()))
        good = next(m["model"] for m in agent.lines() if m["key"] == "pump")
        hostile = [
            lambda p: exfil_model(p, NAMES, "secret.bin"),
            lambda p: custom_op_model(p, NAMES),
            lambda p: model_with_metadata(p, NAMES, {"edge_agent.threshold": "abc"}),
            lambda p: model_with_metadata(p, NAMES, {"edge_agent.feature_names": "123"}),
            lambda p: model_with_metadata(p, NAMES, {"edge_agent.feature_names": DEEP}),
            lambda p: model_with_metadata(p, NAMES, {"edge_agent.center": "[1]"}),  # and no threshold
        ]
        for n, build in enumerate(hostile, start=1):
            _swap_in(folder, build)
            agent.wait_for(lambda n=n: agent.log().count("new model refused") >= n)
        before = len(agent.lines())
        agent.wait_for(lambda: len(agent.lines()) > before + 3)  # still scoring with the last good model
        assert agent.log().count("new model refused") == len(hostile), "each bad file is logged once"
    finally:
        code = agent.stop()
    assert code == 0, agent.log()[-2000:]
    models = {m.get("model") for m in agent.lines()}
    assert models == {good}
    _assert_secret_never_published(folder)


def _assert_secret_never_published(folder: Path) -> None:
    text = (folder / "out.jsonl").read_text()
    assert SECRET.decode() not in text
    leaked = [float(b) for b in SECRET[:4]]
    for line in text.splitlines():
        for item in json.loads(line).get("top", []):
            assert item.get("contribution") not in leaked


def test_sighup_to_a_config_with_a_hostile_model_keeps_the_running_one(folder: Path) -> None:
    agent = Agent(folder)
    try:
        agent.wait_for(lambda: any(m["key"] == "pump" for m in agent.lines()))
        exfil_model(folder / "evil.onnx", NAMES, "secret.bin")
        model_with_metadata(folder / "odd.onnx", NAMES, {"edge_agent.feature_names": "123"})
        config = (folder / "edge.toml").read_text()
        for n, name in enumerate(["evil.onnx", "odd.onnx"], start=1):
            (folder / "edge.toml").write_text(config.replace('model = "model.onnx"', f'model = "{name}"'))
            agent.proc.send_signal(signal.SIGHUP)
            agent.wait_for(lambda n=n: agent.log().count("reload refused") >= n)
        before = len(agent.lines())
        agent.wait_for(lambda: len(agent.lines()) > before + 3)
    finally:
        code = agent.stop()
    assert code == 0
    assert "external file" in agent.log() and "feature_names = '123'" in agent.log()
    _assert_secret_never_published(folder)


def test_check_explains_a_hostile_model_without_a_traceback(folder: Path) -> None:
    model_with_metadata(folder / "model.onnx", NAMES, {"edge_agent.threshold": "abc"})
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check", "-c", str(folder / "edge.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "edge_agent.threshold = 'abc' is not a finite number" in proc.stderr + proc.stdout
