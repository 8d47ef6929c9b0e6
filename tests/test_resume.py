"""After a restart the first features message of a pipeline names the window span it missed (issue 11 item 7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.records import Kind, Message
from agent.runtime.resume import WindowMarks
from tests.pump import make_data, source_and_pipeline

CONFIG = """
[agent]
id = "line1"
state_dir = "state"
status_interval = "1h"
[health]
enabled = false
{pump}
[[sinks]]
type = "jsonl"
path = "out.jsonl"
kinds = ["features"]
"""


def features(path: Path) -> list[dict]:  # type: ignore[type-arg]
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def spawn(folder: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "-c", "edge.toml"],
        cwd=folder,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_the_first_window_after_a_sigkill_says_what_was_missed(tmp_path: Path) -> None:
    make_data(tmp_path / "data.csv", seconds=600, anomaly=(1000, 1000))
    (tmp_path / "edge.toml").write_text(CONFIG.format(pump=source_and_pipeline(20, "idle", model=False)))
    out = tmp_path / "out.jsonl"
    first = spawn(tmp_path)
    try:
        deadline = time.monotonic() + 60
        while len(features(out)) < 5 or not (tmp_path / "state" / "windows.json").exists():
            assert time.monotonic() < deadline and first.poll() is None, "no features"
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    seen = len(features(out))
    last_seq = max(m["seq"] for m in features(out))
    last_end = json.loads((tmp_path / "state" / "windows.json").read_text())["pump"]
    # Time went on while the agent was dead: the same machine, an hour later.
    lines = (tmp_path / "data.csv").read_text().splitlines()
    later = [lines[0]] + [f"{int(r.split(',')[0]) + 3600},{r.split(',', 1)[1]}" for r in lines[1:]]
    (tmp_path / "data.csv").write_text("\n".join(later) + "\n")
    (tmp_path / "edge.toml").write_text(CONFIG.format(pump=source_and_pipeline(0, "stop", model=False)))
    second = spawn(tmp_path)
    assert second.wait(120) == 0
    # a kill -9 may resend what was delivered just before it, with the same seq (docs/mqtt.md, Durability)
    after = [m for m in features(out)[seen:] if m["seq"] > last_seq]
    start_ms = after[0]["window"]["start_ms"]  # payload times are epoch ms (issue 14)
    assert after[0]["missed"] == {"from_ms": round(last_end * 1000), "to_ms": start_ms}
    assert start_ms > (last_end + 3000) * 1000
    assert all("missed" not in m for m in after[1:])


def msg(key: str, start: float, end: float) -> Message:
    return Message(
        Kind.FEATURES, key, end, {"window": {"start_ms": round(start * 1000), "end_ms": round(end * 1000)}}
    )


def test_a_replay_that_starts_over_or_a_damaged_file_names_no_gap(tmp_path: Path) -> None:
    path = tmp_path / "windows.json"
    marks = WindowMarks(path)
    marks.stamp([msg("p", 100, 110)])
    assert marks.save()
    again = WindowMarks(path)
    first = msg("p", 0, 10)  # event time went back: a replay from its start
    again.stamp([first])
    assert "missed" not in first.payload
    path.write_text("{not json")
    assert WindowMarks(path).before == {}
