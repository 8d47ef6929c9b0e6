"""Issue 11 item 1 against the real agent: its state directory on a 4 MiB tmpfs filled to the last byte.

The broker is down, so readings pile up in the outbox; then the file system fills. Before, the agent
exited 1 ("database or disk is full", then "cannot rollback - no transaction is active") and crash-
looped. Now it stays up, logs the episode once, and when space returns and the broker comes back the
consumer gets the backlog with a visible jump in ``seq`` where readings were dropped. Needs root to mount
the tmpfs (skipped otherwise; ``tests/test_full_disk.py`` covers the outbox everywhere).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.mosquitto import Mosquitto, Subscriber
from tests.pump import make_data, source_and_pipeline
from tests.test_full_disk import fill, tmpfs

CONFIG = """
[agent]
id = "gw1"
state_dir = "state"
status_interval = "1h"
readings_interval = "200ms"

[health]
enabled = false

{pump}
[[sinks]]
type = "mqtt"
host = "127.0.0.1"
port = {port}
prefix = "plant"
kinds = ["readings"]
[sinks.qos]
readings = 1
"""
FULL = "state directory full, dropping new messages by priority until space returns"
BACK = "state directory writable again"


def events(log: Path) -> list[str]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line).get("event", ""))
        except ValueError:
            out.append(line)
    return out


def wait(predicate, what: str, within: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_agent_survives_a_full_state_directory_and_resumes(tmp_path: Path) -> None:
    make_data(tmp_path / "data.csv", seconds=3600, anomaly=(3000, 3100))
    broker = Mosquitto(tmp_path / "mosquitto")
    pump = source_and_pipeline(speed=10, at_end="idle", model=False)  # 6 min of live data
    (tmp_path / "edge.toml").write_text(CONFIG.format(port=broker.port, pump=pump))
    log = tmp_path / "agent.log"
    with tmpfs(tmp_path / "state", "4m"), open(log, "w") as err:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "-c", str(tmp_path / "edge.toml")],
            cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        broker.start()
        sub = Subscriber(broker.port, "plant/#")  # its persistent session outlives the outage
        topic = "plant/gw1/readings/rec"
        try:
            wait(lambda: any(m.topic == topic for m in sub.snapshot()), "the first readings")
            broker.stop()  # the outage: readings pile up in the outbox
            wal = tmp_path / "state" / "outbox-mqtt.sqlite-wal"
            wait(lambda: wal.exists() and wal.stat().st_size > 50_000, "a backlog")
            filler = fill(tmp_path / "state")
            wait(lambda: FULL in events(log), "the full-disk episode")
            assert agent.poll() is None, "the agent stays up"
            os.unlink(filler)
            wait(lambda: BACK in events(log), "space noticed again")
            broker.start()

            def seqs() -> list[int]:
                return sorted({m.body["seq"] for m in sub.snapshot() if m.topic == topic})

            wait(
                lambda: (
                    (s := seqs())
                    and s[-1] - s[0] + 1 > len(s)
                    and not any(
                        m.body["replayed"] for m in [m for m in sub.snapshot() if m.topic == topic][-3:]
                    )
                ),
                "a seq jump, then live data",
                90,
            )
            assert agent.poll() is None
            assert events(log).count(FULL) >= 1 and events(log).count(FULL) == events(log).count(BACK)
        finally:
            sub.close()
            agent.send_signal(signal.SIGTERM)
            code = agent.wait(30)
            broker.kill()
    assert code == 0
