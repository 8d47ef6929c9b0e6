"""The agent records itself (``[recording]``), bounded, and ``train --last`` re-baselines from it (issue 18)."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest

from agent.cli import main
from agent.config.load import load_config
from agent.config.recording import RecordingConfig
from agent.config.sections import PipelineConfig
from agent.learn import export as onnx_export
from agent.records import Reading
from agent.runtime.core import Runtime
from agent.runtime.recording import SelfRecorder
from agent.runtime.segments import segments, tags_hash
from tests.pump import make_data, source_and_pipeline

T0 = 1_700_000_000  # tests/pump.py's first row


def run_agent(tmp_path: Path, recording: str = "") -> Path:
    """Run a real agent over the recorded pump (600 s at 1 Hz, replayed as fast as it goes) to its end."""
    make_data(tmp_path / "data.csv", anomaly=(0, 0))  # all normal
    config = tmp_path / "edge.toml"
    config.write_text(
        '[agent]\nid = "line1"\nstate_dir = "state"\n'
        + recording
        + source_and_pipeline(0, "stop", model=False)
        + '[[sinks]]\ntype = "jsonl"\nname = "file"\npath = "out.jsonl"\nkinds = ["features"]\n'
    )
    cfg = load_config(config, {})
    asyncio.run(Runtime(cfg, str(config)).run(asyncio.Event()))
    return config


def test_a_running_agent_records_itself_and_train_last_re_baselines_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    config = run_agent(tmp_path)
    found = segments(tmp_path / "state" / "recording", "pump")
    assert found, "no recording"
    with open(found[0].path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["timestamp", "bearing_temp", "vibration"]
    recorded = sum(len(s.path.read_text().splitlines()) - 1 for s in found)
    assert recorded == 600  # every reading time the pipeline saw, one row each
    assert rows[201][1] == ""  # the BAD reading at t=200 stays an empty cell, never a zero

    out = tmp_path / "model.onnx"
    assert main(["train", "-c", str(config), "--last", "5m", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    used = int(printed.split("windows used")[0].rsplit(" ", 2)[-2])
    assert 55 <= used <= 60  # 300 s of 10 s windows every 5 s, not the ~118 of the whole recording
    span = onnx_export.read_metadata(out)["training_span"]
    assert span["start"] >= T0 + 599 - 300 and span["end"] == pytest.approx(T0 + 595, abs=5)
    assert [p.name for p in (tmp_path / "state").glob(".train-*")] == []  # the assembled copy is gone


def test_without_a_recording_train_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    config = run_agent(tmp_path, "[recording]\nenabled = false\n")
    assert not (tmp_path / "state" / "recording").exists()
    assert main(["train", "-c", str(config), "--last", "5m", "--out", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert "no recording of pipeline 'pump'" in err and "[recording] enabled = true" in err
    assert not (tmp_path / "m.onnx").exists()


def pipeline(tags: list[str]) -> PipelineConfig:
    return PipelineConfig.model_validate({"name": "p", "tags": tags, "features": ["mean"]})


def feed(recorder: SelfRecorder, hours: float, tags: tuple[str, ...] = ("a", "b")) -> None:
    """One reading per tag per second of event time, in batches of a minute."""
    recorder.start()
    for minute in range(int(hours * 60)):
        start = T0 + 60 * minute
        recorder.add([Reading(t, float(start + s), float(s)) for s in range(60) for t in tags])
    recorder.close()


def total_bytes(root: Path) -> int:
    return sum(s.path.stat().st_size for s in segments(root))


def test_the_recording_is_bounded_by_bytes(tmp_path: Path) -> None:
    cfg = RecordingConfig(max_bytes=200_000, segment=3600, queue=10_000)
    recorder = SelfRecorder(cfg, tmp_path, [pipeline(["a", "b"])], min_open=0)
    feed(recorder, hours=6)  # ~1.1 MB of rows
    kept = segments(tmp_path / "recording")
    assert len(kept) > 3 and total_bytes(tmp_path / "recording") <= 200_000
    assert recorder.dropped == 0 and recorder.failed == 0
    with open(kept[-1].path) as handle:
        last = handle.read().splitlines()[-1]
    assert last.startswith("2023-11-15T04:13:19")  # the newest row is kept: 6 h after T0, minus a second


def test_the_recording_is_bounded_by_age(tmp_path: Path) -> None:
    cfg = RecordingConfig(max_age=3600, segment=600, queue=10_000)
    feed(SelfRecorder(cfg, tmp_path, [pipeline(["a", "b"])], min_open=0), hours=6)
    kept = segments(tmp_path / "recording")
    newest = T0 + 6 * 3600
    assert kept[0].start_ms >= (newest - 3600 - 600) * 1000  # nothing wholly older than an hour
    assert kept[0].start_ms <= (newest - 3600) * 1000  # and the whole last hour is still there


def test_a_fast_replay_of_months_does_not_make_a_file_per_hour(tmp_path: Path) -> None:
    """Segments stay open 10 s of wall time: a replay of months at full speed wrote 1,900 files."""
    cfg = RecordingConfig(max_age=30 * 86400, segment=600, queue=10_000)
    feed(SelfRecorder(cfg, tmp_path, [pipeline(["a", "b"])]), hours=6)
    assert len(segments(tmp_path / "recording")) == 1


def test_changed_tags_start_new_segments_that_train_keeps_apart(tmp_path: Path) -> None:
    recorder = SelfRecorder(RecordingConfig(queue=10_000), tmp_path, [pipeline(["a", "b"])])
    recorder.start()
    recorder.add([Reading("a", float(T0), 1.0), Reading("b", float(T0), 2.0)])
    recorder.configure([pipeline(["a", "c"])])  # what a reload does
    recorder.add([Reading("a", float(T0 + 1), 1.0), Reading("c", float(T0 + 1), 3.0)])
    recorder.close()
    names = sorted(s.path.read_text().splitlines()[0] for s in segments(tmp_path / "recording"))
    assert names == ["timestamp,a,b", "timestamp,a,c"]  # each batch under the tags it was read with
    assert len(segments(tmp_path / "recording", "p", tags_hash(pipeline(["a", "c"])))) == 1
