"""``record`` and ``train`` against a real simulator (real OPC UA server) and the real runtime."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.config.load import load_config
from agent.learn.record import RowBuilder, record
from agent.learn.trainer import training_windows
from agent.records import Reading, bad
from plugins.simulator import parse_scenario
from plugins.simulator.mapping import opcua_endpoint, signal_map
from plugins.simulator.servers import run_simulator
from tests.conftest import free_port

REPO = str(Path(__file__).resolve().parent.parent)  # the code under test, whatever is installed

SPEED = 120.0  # a simulator update every 12 s of scenario time
SCENARIO = 'name = "pump1"\n[machine]\ncycle = "8m"\nbearing_tau = "4m"\n'
TAGS = ["speed", "motor_current", "bearing_temp", "flow"]


def sim_config(opcua_port: int, model: str = "") -> str:
    """An agent config reading the simulator over OPC UA, with a pipeline over four signals."""
    where = signal_map(parse_scenario(SCENARIO))
    lines = [
        '[agent]\nid = "t"\nstate_dir = "state"\n',
        "[[sources]]",
        'type = "opcua"\nname = "sim"',
        f'endpoint = "{opcua_endpoint("127.0.0.1", opcua_port)}"',
        'mode = "subscription"\npublishing_interval = 0.25\nsampling_interval = 0.05',
        'trigger = "status_value_timestamp"\n',
    ]
    for tag in TAGS:
        lines.append(f'[[sources.tags]]\nname = "{tag}"\nnode = "{where[tag]["opcua_nsu_node_id"]}"\n')
    lines += [
        "[[pipelines]]",
        'name = "pump"',
        f"tags = {json.dumps(TAGS)}",
        'features = ["mean", "std"]',
        model,
        '[pipelines.window]\nperiod = "12s"\nlength = "2m"\nhop = "24s"\n',
    ]
    return "\n".join(lines)


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


def test_row_builder_holds_values_up_to_max_age_and_blanks_bad() -> None:
    rows = RowBuilder(["a", "b"], max_age=3.0)
    out = rows.add([Reading("a", 10.0, 1.0), Reading("b", 10.0, 2.0), Reading("x", 10.0, 9.0)])
    out += rows.add([Reading("a", 11.0, 1.5), bad("b", 12.0, "timeout")])
    out += rows.add([Reading("a", 14.5, 3.0)])
    assert out == [
        (10.0, [1.0, 2.0]),
        (11.0, [1.5, 2.0]),  # b not read at 11: its value from 10 is still fresh
        (12.0, [1.5, None]),  # BAD is an empty cell
        (14.5, [3.0, None]),  # a's value from 11 is 3.5 s old by now
    ]
    assert rows.span == 4.5


async def test_record_then_train_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    opcua_port = free_port()
    config = tmp_path / "edge.toml"
    config.write_text(sim_config(opcua_port))
    cfg = load_config(config)
    out = tmp_path / "data" / "normal.csv"
    async with run_simulator(
        parse_scenario(SCENARIO), opcua_port=opcua_port, modbus_port=free_port(), speed=SPEED
    ):
        result = await record(cfg, cfg.pipelines[0], out, 15 * 60.0, asyncio.Event())
    assert result.reason == "duration" and result.path == out and result.span >= 15 * 60
    rows = read_csv(out)
    assert rows[0] == ["timestamp", *TAGS]
    assert len(rows) - 1 == result.rows >= 40
    stamps = [r[0] for r in rows[1:]]
    assert stamps == sorted(stamps) and stamps[0].endswith("+00:00")
    assert all(cell and float(cell) > 0 for r in rows[1:] for cell in r[1:])
    assert leftovers(out.parent) == []

    # train runs in its own event loop (it is a command): give it a thread of its own here.
    code = await asyncio.to_thread(
        main,
        [
            "train",
            "-c",
            str(config),
            "--pipeline",
            "pump",
            "--data",
            str(out),
            "--out",
            str(tmp_path / "m.onnx"),
        ],
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "windows used" in printed and "threshold 1" in printed and str(tmp_path / "m.onnx") in printed
    assert (tmp_path / "m.onnx").exists() and (tmp_path / "m.md").exists()
    assert "bearing_temp.mean" in (tmp_path / "m.md").read_text()

    config.write_text(sim_config(opcua_port, model='model = "m.onnx"'))
    assert main(["check", "-c", str(config)]) == 0
    assert "model sha256:" in capsys.readouterr().out


def synthetic_csv(path: Path, seconds: int = 1200, gap: int | None = 500) -> None:
    """Two correlated tags at 1 Hz, with an empty (BAD) cell at ``gap``."""
    rng = np.random.default_rng(3)
    lines = ["timestamp,load,temp"]
    for t in range(seconds):
        load = 50 + 20 * np.sin(t / 60) + rng.normal(0, 1)
        temp = 30 + 0.4 * load + rng.normal(0, 0.3)
        cell = "" if t == gap else f"{temp:.4f}"
        lines.append(f"{1_700_000_000 + t},{load:.4f},{cell}")
    path.write_text("\n".join(lines) + "\n")


REPLAY_CONFIG = """
[agent]
id = "t"
state_dir = "state"
[bus]
overflow = "block"
[[sources]]
type = "replay"
name = "rec"
path = "data.csv"
[[sources.tags]]
name = "load"
[[sources.tags]]
name = "temp"
[[pipelines]]
name = "line"
tags = ["load", "temp"]
features = ["mean", "std", "slope"]
{model}
[pipelines.window]
length = "30s"
hop = "10s"
[[sinks]]
type = "jsonl"
path = "out.jsonl"
kinds = ["features", "alert"]
"""


def test_train_sees_the_feature_vectors_the_runtime_scores(tmp_path: Path) -> None:
    synthetic_csv(tmp_path / "data.csv")
    config = tmp_path / "edge.toml"
    config.write_text(REPLAY_CONFIG.format(model=""))
    args = [
        "train",
        "-c",
        str(config),
        "--data",
        str(tmp_path / "data.csv"),
        "--out",
        str(tmp_path / "m.onnx"),
    ]
    assert main(args) == 0
    pipe = load_config(config).pipelines[0]
    found = asyncio.run(training_windows(pipe, tmp_path / "data.csv"))
    assert found.skipped == {} and found.x.shape == (len(found.ends), 6)

    config.write_text(REPLAY_CONFIG.format(model='model = "m.onnx"'))
    assert main(["run", "-c", str(config)]) == 0
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    features = [m for m in out if m["kind"] == "features"]
    ends = [m["ts_ms"] / 1000 for m in features]
    assert ends == pytest.approx(found.ends)
    runtime_x = np.array([[m["features"][n] for n in found.names] for m in features], dtype=float)
    np.testing.assert_allclose(runtime_x, found.x, rtol=1e-9, atol=1e-12)
    assert all(m["status"] == "scored" for m in features)
    assert not [m for m in out if m["kind"] == "alert"]  # its own normal data does not alert


def test_train_refuses_too_little_data_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    synthetic_csv(tmp_path / "data.csv", seconds=40, gap=None)
    config = tmp_path / "edge.toml"
    config.write_text(REPLAY_CONFIG.format(model=""))
    args = [
        "train",
        "-c",
        str(config),
        "--data",
        str(tmp_path / "data.csv"),
        "--out",
        str(tmp_path / "m.onnx"),
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    # 39 s of data: 20 windows of 30 s do not fit even a second apart; the message says what does.
    assert "too short for 20 windows of 30s" in err
    assert 'set length = "20s" in [pipelines.window]' in err and "record at least 49s" in err
    assert not (tmp_path / "m.onnx").exists() and leftovers(tmp_path) == []


def test_train_on_a_short_recording_picks_a_shorter_hop_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18: 150 s cut into 30 s windows every 10 s gave 13 windows, and train refused."""
    synthetic_csv(tmp_path / "data.csv", seconds=150, gap=None)
    config = tmp_path / "edge.toml"
    config.write_text(REPLAY_CONFIG.format(model=""))
    args = [
        "train",
        "-c",
        str(config),
        "--data",
        str(tmp_path / "data.csv"),
        "--out",
        str(tmp_path / "m.onnx"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert 'trained with hop = 3s instead; set hop = "3s" in [pipelines.window]' in out
    assert (tmp_path / "m.onnx").exists()


def test_train_with_the_default_window_on_400_seconds_at_1_hz(tmp_path: Path) -> None:
    """Issue 18: the default (60 s tumbling) refused 400 s of 1 Hz data: "6 usable windows of 6"."""
    synthetic_csv(tmp_path / "data.csv", seconds=400, gap=None)
    config = tmp_path / "edge.toml"
    config.write_text(REPLAY_CONFIG.format(model="").replace('length = "30s"\nhop = "10s"\n', ""))
    args = [
        "train",
        "-c",
        str(config),
        "--data",
        str(tmp_path / "data.csv"),
        "--out",
        str(tmp_path / "m.onnx"),
    ]
    assert main(args) == 0 and (tmp_path / "m.onnx").exists()


def test_windows_with_a_gap_longer_than_max_age_are_left_out_and_counted(tmp_path: Path) -> None:
    lines = tmp_path / "data.csv"
    synthetic_csv(lines, seconds=600, gap=None)
    rows = lines.read_text().splitlines()
    del rows[200:206]  # the source was silent for 7 s (max_age is 3 s): too short for low coverage
    lines.write_text("\n".join(rows) + "\n")
    config = tmp_path / "edge.toml"
    config.write_text(REPLAY_CONFIG.format(model=""))
    pipe = load_config(config).pipelines[0]
    found = asyncio.run(training_windows(pipe, lines))
    assert found.skipped["gap longer than max_age"] >= 2 and found.skipped["low coverage"] == 0
    args = ["train", "-c", str(config), "--data", str(lines), "--out", str(tmp_path / "m.onnx")]
    assert main(args) == 0
    card = (tmp_path / "m.md").read_text()
    assert (
        f"| windows left out | {found.skipped['gap longer than max_age']} (gap longer than max_age)" in card
    )


def test_train_names_missing_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data.csv").write_text("timestamp,load\n1700000000,1.0\n")
    config = tmp_path / "edge.toml"
    config.write_text(REPLAY_CONFIG.format(model=""))
    args = [
        "train",
        "-c",
        str(config),
        "--data",
        str(tmp_path / "data.csv"),
        "--out",
        str(tmp_path / "m.onnx"),
    ]
    assert main(args) == 1
    assert "no column for temp" in capsys.readouterr().err


def test_unknown_pipeline_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(REPLAY_CONFIG.format(model=""))
    args = ["record", "-c", str(config), "--pipeline", "nope", "--duration", "1m", "--out", "x.csv"]
    assert main(args) == 2
    assert "no pipeline 'nope'; pipelines: line" in capsys.readouterr().err


def test_record_interrupted_keeps_a_complete_file(tmp_path: Path) -> None:
    opcua_port = free_port()
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    config = tmp_path / "edge.toml"
    config.write_text(sim_config(opcua_port))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": REPO}
    cli = [sys.executable, "-m", "agent.cli"]
    ports = ["--opcua-port", str(opcua_port), "--modbus-port", str(free_port())]
    sim = subprocess.Popen(
        [*cli, "simulate", "--scenario", "scenario.toml", "--speed", str(SPEED), *ports],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rec = None
    try:
        rec = subprocess.Popen(
            [*cli, "record", "-c", "edge.toml", "--duration", "10h", "--out", "normal.csv"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            temps = leftovers(tmp_path)
            if temps and len(temps[0].read_text().splitlines()) > 5:
                break
            time.sleep(0.1)
        assert not (tmp_path / "normal.csv").exists()  # nothing at --out while recording
        rec.send_signal(signal.SIGINT)
        stdout, stderr = rec.communicate(timeout=20)
    finally:
        for proc in (rec, sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
    assert rec.returncode == 0, stderr
    assert "interrupted, kept" in stdout
    assert '"progress"' in stderr and '"recording"' in stderr  # not a terminal: log lines, not a bar
    rows = read_csv(tmp_path / "normal.csv")
    assert rows[0] == ["timestamp", *TAGS] and len(rows) > 5
    assert all(len(r) == len(TAGS) + 1 for r in rows)
    assert leftovers(tmp_path) == []


def test_train_last_re_baselines_on_the_tail_of_the_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    synthetic_csv(tmp_path / "data.csv", seconds=1200, gap=None)
    config = tmp_path / "edge.toml"
    config.write_text(REPLAY_CONFIG.format(model=""))
    args = [
        "train",
        "-c",
        str(config),
        "--data",
        str(tmp_path / "data.csv"),
        "--out",
        str(tmp_path / "m.onnx"),
    ]
    assert main([*args, "--last", "5m"]) == 0
    # 300 s of data, 30 s windows every 10 s: 27-28 windows, not the 118 of the whole file.
    out = capsys.readouterr().out
    used = int(out.split("windows used")[0].rsplit(" ", 2)[-2])
    assert 25 <= used <= 29
    card = (tmp_path / "m.md").read_text()
    assert "2023-11-14 22:28" in card  # the span starts 5 min before the end (22:33:19), not at 22:13:20
