"""Library errors reach the JSON log as one line each, not as raw tracebacks (issue 11 item 9)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from tests.modbus_liar import Liar, garbage
from tests.mosquitto import eventually

CONFIG = """
[agent]
id = "g"
state_dir = "state"
log_format = "json"
[health]
enabled = false
[[sources]]
type = "modbus"
name = "plc"
host = "127.0.0.1"
port = {port}
[[sources.devices]]
name = "d"
unit = 1
interval = "50ms"
timeout = "300ms"
[[sources.tags]]
name = "t0"
address = 0
[[sinks]]
type = "jsonl"
path = "out.jsonl"
kinds = ["readings"]
"""


def spawn(folder: Path, stderr: IO[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "-c", "edge.toml"],
        cwd=folder,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


async def test_garbage_modbus_frames_log_json_lines_only(tmp_path: Path, port: int) -> None:
    (tmp_path / "edge.toml").write_text(CONFIG.format(port=port))
    err = tmp_path / "stderr.log"
    async with Liar(port, lambda *_: None) as liar:
        liar.raw = garbage
        with err.open("w") as stream:
            proc = spawn(tmp_path, stream)
            try:
                await eventually(lambda: len(liar.requests) >= 20, what="20 garbage answers", within=60)
            finally:
                proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(proc.wait, 30)
    lines = err.read_text().splitlines()
    assert proc.returncode == 0, lines[-5:]
    bad = [line for line in lines if not line.startswith("{")]
    assert not bad, "\n".join(bad[:10])
    records = [json.loads(line) for line in lines]
    library = [r for r in records if r.get("component") == "library"]
    assert library and "ModbusIOException" in library[0]["error"]
    assert len(library) <= 2, library  # the same line repeating is held back for a minute
