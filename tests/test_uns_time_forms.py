"""One time form in every payload (issue 14): integer epoch milliseconds, ISO text only beside it for people.

The real agent writes every kind of message to a JSON-lines sink; every payload must validate against
its schema (version 2), and every time in it must be an integer of milliseconds: ``ts_ms``, each
reading's ``ts_ms``, ``window.start_ms`` / ``end_ms``, ``since_ms``, ``started_at_ms``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema

from tests.pump import make_data, make_model, source_and_pipeline

SCHEMAS = Path(__file__).resolve().parents[1] / "agent" / "schemas"
ISO_FOR_PEOPLE = {"ts", "since", "started_at"}

CONFIG = """
[agent]
id = "gw1"
state_dir = "state"
status_interval = "1s"

[health]
enabled = false

{pump}
[[sinks]]
type = "jsonl"
path = "out.jsonl"
kinds = ["alert", "status", "features", "readings"]
"""


def times(obj: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (key path, value) whose key names a time."""
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            where = f"{path}.{key}" if path else key
            if key in ISO_FOR_PEOPLE or key.endswith("_ms") or key in ("start", "end", "time", "timestamp"):
                out.append((where, value))
            out += times(value, where)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += times(value, f"{path}[{i}]")
    return out


def test_every_time_in_every_payload_is_integer_milliseconds(tmp_path: Path) -> None:
    make_data(tmp_path / "data.csv", seconds=600, anomaly=(300, 400))
    make_model(tmp_path / "model.onnx")
    (tmp_path / "edge.toml").write_text(CONFIG.format(pump=source_and_pipeline(speed=100)))
    run = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(tmp_path / "edge.toml")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    schemas = {p.name.split(".")[0]: json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")}
    seen = set()
    for line in lines:
        kind = line.pop("kind")
        line.pop("key")
        seen.add(kind)
        jsonschema.validate(line, schemas[kind])
        assert line["schema"] == f"edge-agent/{kind}/2"
        for where, value in times(line):
            if where.rsplit(".", 1)[-1] in ISO_FOR_PEOPLE:
                assert isinstance(value, str) and value.endswith("Z"), (kind, where, value)
            else:
                assert isinstance(value, int) and not isinstance(value, bool), (kind, where, value)
                assert value > 1_600_000_000_000, (kind, where, value)  # milliseconds, not seconds
    assert seen == {"alert", "status", "features", "readings"}
