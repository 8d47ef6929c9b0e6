"""Replay and train read real files: other delimiters, named columns, and files that cannot be read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from agent.cli import main

REPO = str(Path(__file__).resolve().parent.parent)

CONFIG = """
[agent]
id = "t"
state_dir = "state"
[bus]
overflow = "block"
[[sources]]
type = "replay"
name = "plant"
path = "{data}"
at_end = "stop"
timestamp_column = "Zeit"
delimiter = ";"
[[sources.tags]]
name = "load"
column = "Load (kW)"
unit = "kW"
[[sources.tags]]
name = "temp"
column = "Oil temp (°C)"
unit = "°C"
[[pipelines]]
name = "line"
tags = ["load", "temp"]
features = ["mean", "std"]
{model}
[pipelines.window]
length = "30s"
hop = "10s"
[[sinks]]
type = "jsonl"
path = "out.jsonl"
kinds = ["features", "alert"]
"""


def semicolon_csv(path: Path, seconds: int = 900, step_at: int | None = None) -> None:
    rng = np.random.default_rng(5)
    lines = ["Zeit;Load (kW);Oil temp (°C)"]
    for t in range(seconds):
        load = 50 + 10 * np.sin(t / 60) + rng.normal(0, 1)
        temp = 30 + 0.4 * load + rng.normal(0, 0.3) + (15 if step_at is not None and t >= step_at else 0)
        lines.append(f"{1_700_000_000 + t};{load:.4f};{temp:.4f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_train_and_run_read_a_semicolon_file_with_named_columns_and_units(tmp_path: Path) -> None:
    """Issue 18: `train` ignored the source's timestamp_column and column; no `;` files."""
    semicolon_csv(tmp_path / "train.csv")
    config = tmp_path / "edge.toml"
    config.write_text(CONFIG.format(data="train.csv", model=""))
    args = [
        "train",
        "-c",
        str(config),
        "--data",
        str(tmp_path / "train.csv"),
        "--out",
        str(tmp_path / "m.onnx"),
    ]
    assert main(args) == 0

    semicolon_csv(tmp_path / "test.csv", seconds=600, step_at=400)
    config.write_text(CONFIG.format(data="test.csv", model='model = "m.onnx"'))
    assert main(["run", "-c", str(config)]) == 0
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    features = [m for m in out if m["kind"] == "features"]
    assert features and all(m["status"] == "scored" for m in features)
    raised = [m for m in out if m["kind"] == "alert" and m["state"] == "raised"]
    assert raised, "the 15 °C step in oil temperature raised no alert"
    assert 1_700_000_400_000 <= raised[0]["window"]["end_ms"] <= 1_700_000_415_000  # within 15 s of the step
    assert "temp " in raised[0]["summary"] and "°C, above its normal" in raised[0]["summary"]


def test_a_one_shot_replay_of_a_missing_file_exits_non_zero(tmp_path: Path) -> None:
    """Issue 18: at_end = "stop" with an unreadable file retried every 30 s forever."""
    config = tmp_path / "edge.toml"
    config.write_text(CONFIG.format(data="nowhere.csv", model=""))
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "cannot open replay file" in proc.stderr + proc.stdout
