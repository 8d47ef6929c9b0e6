"""A recorded CSV through the real runtime: windows, features, a real ONNX model, alerts in JSONL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import main
from tests.pump import make_data, make_model, source_and_pipeline

CONFIG = """
[agent]
id = "line1"
state_dir = "state"
status_interval = "1h"
{pump}
[[sinks]]
type = "jsonl"
path = "out.jsonl"
kinds = ["alert", "features", "status"]
"""


def setup(tmp_path: Path, speed: float = 0, at_end: str = "stop") -> Path:
    make_data(tmp_path / "data.csv")
    make_model(tmp_path / "model.onnx")
    path = tmp_path / "edge.toml"
    path.write_text(CONFIG.format(pump=source_and_pipeline(speed, at_end)))
    return path


def read(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_raises_and_clears_an_explained_alert(tmp_path: Path) -> None:
    config = setup(tmp_path)
    assert main(["run", "-c", str(config)]) == 0
    out = read(tmp_path / "out.jsonl")
    alerts = [m for m in out if m["kind"] == "alert"]
    assert [a["state"] for a in alerts] == ["raised", "cleared"]
    raised, cleared = alerts
    assert 1_700_000_300_000 <= raised["window"]["end_ms"] <= 1_700_000_320_000
    assert 1_700_000_400_000 <= cleared["window"]["end_ms"] <= 1_700_000_425_000
    # The step enters the window first as spread (std), then as level (mean): either names the tag.
    assert {t["tag"] for t in raised["top"]} == {"bearing_temp"}
    assert raised["top"][0]["z"] > 4
    assert "bearing_temp " in raised["summary"] and "above its normal" in raised["summary"]
    assert "sigma" not in raised["summary"] and "-0." not in raised["summary"]
    assert raised["model"].startswith("sha256:") and raised["threshold"] == 4.0
    features = [m for m in out if m["kind"] == "features"]
    assert len(features) == 600 // 5 - 2
    assert all(f["status"] == "scored" for f in features)
    seqs = [f["seq"] for f in features]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert [m["kind"] for m in out].count("status") == 2  # at start and at stop


def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    config = setup(tmp_path, speed=50, at_end="idle")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out = tmp_path / "out.jsonl"
        deadline = time.monotonic() + 60
        while not out.exists() or out.read_text().count('"features"') < 3:
            assert time.monotonic() < deadline and proc.poll() is None, "no features within 60 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert '"stopping"' in stderr and '"signal"' in stderr and '"stopped"' in stderr
    # The stop status was flushed before exit. It is not necessarily the last line: the outbox sends by
    # priority (status before features), so features still queued at the stop follow it in the file.
    statuses = [m for m in read(tmp_path / "out.jsonl") if m["kind"] == "status"]
    assert len(statuses) == 2, statuses  # at start and at stop (status_interval is 1 h)
    assert statuses[1]["uptime_s"] > statuses[0]["uptime_s"]


def test_a_long_alert_is_re_announced_as_sustained_and_every_message_fits_the_schema(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    config = setup(tmp_path)
    config.write_text(config.read_text().replace("top = 2\n", 'top = 2\nsustained_after = "30s"\n'))
    assert main(["run", "-c", str(config)]) == 0
    alerts = [m for m in read(tmp_path / "out.jsonl") if m["kind"] == "alert"]
    states = [a["state"] for a in alerts]
    assert states[0] == "raised" and states[-1] == "cleared" and states.count("sustained") >= 2
    sustained = next(a for a in alerts if a["state"] == "sustained")
    assert "still abnormal" in sustained["summary"] and "bearing_temp" in sustained["summary"]
    schema = json.loads((Path(__file__).resolve().parents[1] / "agent/schemas/alert.schema.json").read_text())
    for alert in alerts:
        jsonschema.validate({k: v for k, v in alert.items() if k != "kind"}, schema)
