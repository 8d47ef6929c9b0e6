"""Bad configs are explained: file, key path, bad value, what is allowed; exit code 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.config.load import load_config
from tests.onnx_models import zscore_model

GOOD = """
[agent]
id = "gw1"

[[sources]]
type = "replay"
name = "rec"
path = "data.csv"
[[sources.tags]]
name = "temp"
column = "value"
[[sources.tags]]
name = "vib"

[[pipelines]]
name = "pump"
tags = ["temp", "vib"]
features = ["mean", "std"]
{model}
[pipelines.window]
length = "10s"
hop = "5s"

[[sinks]]
type = "jsonl"
path = "out.jsonl"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    path = write(tmp_path, text)
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert str(path) in err
    return err


def test_good_config_passes_and_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(write(tmp_path, GOOD.format(model="")))]) == 0
    out = capsys.readouterr().out
    assert "pump" in out and "2 tags x 2 features = 4" in out and "jsonl" in out


MISTAKES = {
    "unknown key": (
        GOOD.replace('column = "value"', 'colum = "value"'),
        "sources[0].tags[0].colum: unknown key 'colum'; did you mean 'column'?",
    ),
    "wrong type": (
        GOOD.replace('hop = "5s"', 'hop = "5s"\nmin_coverage = "most"'),
        "pipelines[0].window.min_coverage: Input should be a valid number",
    ),
    "missing required": (
        GOOD.replace('path = "data.csv"', ""),
        "sources[0].path: required key 'path' is missing",
    ),
    "duplicate tag": (
        GOOD.replace('name = "vib"', 'name = "temp"'),
        "sources[0].tags[1].name: tag 'temp' is already defined at sources[0].tags[0].name",
    ),
    "unknown tag in pipeline": (
        GOOD.replace('tags = ["temp", "vib"]', 'tags = ["temp", "vibe"]'),
        "pipelines[0].tags[1]: unknown tag 'vibe'; did you mean 'vib'?",
    ),
    "window shorter than hop": (
        GOOD.replace('hop = "5s"', 'hop = "20s"'),
        "pipelines[0].window: hop (20s) is longer than length (10s)",
    ),
    "bad duration": (GOOD.replace('length = "10s"', 'length = "10 secs"'), "bad duration '10 secs'"),
    "toml syntax": (GOOD.replace('id = "gw1"', 'id = "gw1'), "TOML syntax error: "),
    "unknown plugin": (GOOD.replace('type = "jsonl"', 'type = "kafka"'), "sinks[0]: unknown type 'kafka'"),
    "bad feature name": (
        GOOD.replace('features = ["mean", "std"]', 'features = ["mean", "median"]'),
        "pipelines[0].features[1]: Input should be 'mean', 'std'",
    ),
    "duplicate pipeline": (
        GOOD + '\n[[pipelines]]\nname = "pump"\ntags = ["temp"]\n',
        "pipelines[1].name: name 'pump' is already used by pipelines[0]",
    ),
}


@pytest.mark.parametrize("kind", sorted(MISTAKES))
def test_each_kind_of_mistake_is_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    text, expected = MISTAKES[kind]
    err = check(tmp_path, text.format(model=""), capsys)
    assert expected in err


def test_toml_error_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = check(tmp_path, GOOD.format(model="").replace('id = "gw1"', 'id = "gw1'), capsys)
    assert "line 3" in err


def test_unreadable_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = check(tmp_path, GOOD.format(model='model = "missing.onnx"'), capsys)
    assert "pipelines[0].model: cannot read model file" in err


def test_model_input_size_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zscore_model(tmp_path / "m.onnx", ["a", "b", "c"], [0, 0, 0], [1, 1, 1], metadata=False)
    err = check(tmp_path, GOOD.format(model='model = "m.onnx"\n[pipelines.alert]\nthreshold = 1.0'), capsys)
    assert "pipelines[0].model:" in err and "expects 3 features but the pipeline produces 4" in err


def test_model_without_threshold_needs_one_in_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ["temp.mean", "temp.std", "vib.mean", "vib.std"]
    zscore_model(tmp_path / "m.onnx", names, [0] * 4, [1] * 4, threshold=None)
    err = check(tmp_path, GOOD.format(model='model = "m.onnx"'), capsys)
    assert "pipelines[0].alert.threshold: no alert threshold" in err
    path = write(tmp_path, GOOD.format(model='model = "m.onnx"\n[pipelines.alert]\nthreshold = 2.5'))
    assert main(["check", "-c", str(path)]) == 0


def test_environment_overrides_by_index_and_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.format(model=""))
    env = {
        "EDGE_AGENT__AGENT__LOG_LEVEL": "debug",
        "EDGE_AGENT__SOURCES__rec__SPEED": "2.5",
        "EDGE_AGENT__PIPELINES__0__WINDOW__LENGTH": "20s",
    }
    cfg = load_config(path, env)
    assert cfg.agent.log_level == "debug"
    assert cfg.sources[0].speed == 2.5  # type: ignore[attr-defined]
    assert cfg.pipelines[0].window.length == 20.0


def test_environment_mistakes_name_the_variable(tmp_path: Path) -> None:
    from agent.errors import ConfigError

    with pytest.raises(ConfigError, match="EDGE_AGENT__SINKS__nope__PATH: no item 'nope'"):
        load_config(write(tmp_path, GOOD.format(model="")), {"EDGE_AGENT__SINKS__nope__PATH": "x"})


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD.format(model="")), {})
    assert cfg.sources[0].path == tmp_path / "data.csv"  # type: ignore[attr-defined]


def test_schema_is_json_and_knows_the_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    text = json.dumps(schema)
    assert '"replay"' in text and '"jsonl"' in text and "shutdown_timeout" in text


def test_exit_code_2_and_no_traceback_from_the_real_command(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.format(model="").replace("[agent]", "[agent]\nbogus = 1"))
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "agent.bogus: unknown key 'bogus'" in proc.stderr and "Traceback" not in proc.stderr


def test_every_relative_path_field_resolves_whatever_model_holds_it(tmp_path: Path) -> None:
    """The walk skips models that cannot hold a path (10,000 Modbus tags, issue 17): none is missed."""
    (tmp_path / "pw").write_text("secret\n")
    text = """
[agent]
state_dir = "state"
[[sources]]
type = "replay"
name = "rec"
path = "data.csv"
[[sources.tags]]
name = "a"
[[pipelines]]
name = "p"
tags = ["a"]
model = "models/p.onnx"
[[sinks]]
type = "jsonl"
path = "out/x.jsonl"
[[sinks]]
type = "mqtt"
host = "127.0.0.1"
username = "u"
password_file = "pw"
tls_ca_file = "certs/ca.pem"
"""
    path = tmp_path / "edge.toml"
    path.write_text(text)
    cfg = load_config(path, {})
    mqtt: Any = cfg.sinks[1]
    assert cfg.agent.state_dir == tmp_path / "state"
    assert cfg.sources[0].path == tmp_path / "data.csv"  # type: ignore[attr-defined]
    assert cfg.pipelines[0].model == tmp_path / "models" / "p.onnx"
    assert cfg.sinks[0].path == tmp_path / "out" / "x.jsonl"  # type: ignore[attr-defined]
    assert mqtt.tls_ca_file == tmp_path / "certs" / "ca.pem"
    assert mqtt.password.get_secret_value() == "secret"
