"""The real `edge-agent run` against a real mosquitto: outage, SIGKILL during the outage, restart.

Every seq of every topic must arrive exactly once after de-duplication, in order, and the explained
alert must be among them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.delivery.sqlite_store import SqliteOutbox
from tests.mosquitto import Mosquitto, Received, Subscriber, running_mosquitto
from tests.pump import make_data, make_model, source_and_pipeline

CONFIG = """
[agent]
id = "gw1"
state_dir = "state"
status_interval = "1h"
shutdown_timeout = "20s"

[health]
enabled = false

{pump}
[[sinks]]
type = "mqtt"
host = "127.0.0.1"
port = {port}
prefix = "plant"
kinds = ["alert", "features"]
"""


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    yield from running_mosquitto(tmp_path)


def delivered_all(got: list[Received], db: Path) -> bool:
    """Whether every seq the (stopped) agent's outbox ever gave a features/alerts topic has arrived."""
    box = SqliteOutbox(db, 10**6)
    try:
        final = {topic: seq for topic, seq in box._seq.items() if topic[0] in ("features", "alert")}
    finally:
        box.close()
    kind_of = {"features": "features", "alerts": "alert"}  # topic level -> outbox kind
    levels = [(m.topic.split("/"), m.body.get("seq")) for m in got]
    seen = {(kind_of.get(parts[2]), parts[-1], seq) for parts, seq in levels if len(parts) == 4}
    return all((kind, key, seq) in seen for (kind, key), last in final.items() for seq in range(1, last + 1))


def spawn(folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(folder / "edge.toml")],
        cwd=folder,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


class Tail:
    """Collects a running process's stderr in a thread, so a test can wait for a log line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self._stream = proc.stderr
        self._lines: list[str] = []
        self._thread = threading.Thread(target=self._read, name="tail-stderr", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self._lines.append(line)

    def text(self) -> str:
        return "".join(list(self._lines))

    def done(self) -> str:
        """The whole stderr, once the process has exited."""
        self._thread.join(30)
        return self.text()


def wait(predicate, within: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_outage_and_sigkill_lose_nothing(tmp_path: Path, mosquitto: Mosquitto) -> None:
    make_data(tmp_path / "data.csv", seconds=600, anomaly=(300, 400))
    make_model(tmp_path / "model.onnx")
    (tmp_path / "edge.toml").write_text(
        CONFIG.format(port=mosquitto.port, pump=source_and_pipeline(speed=40))
    )
    sub = Subscriber(mosquitto.port, "plant/#")
    try:
        first = spawn(tmp_path)
        wait(lambda: sum("/features/" in m.topic for m in sub.snapshot()) >= 5)
        mosquitto.stop()  # outage: the agent keeps reading and buffers to its outbox
        before = len(sub.snapshot())
        time.sleep(1.5)
        first.send_signal(signal.SIGKILL)  # and dies during the outage
        first.wait(10)
        first.stderr.close()  # type: ignore[union-attr]
        mosquitto.start()
        second = spawn(tmp_path)  # the replay starts over; the outbox resends what was not acked
        _, err = second.communicate(timeout=120)  # at the end of the file the agent stops by itself
        assert second.returncode == 0, err
        wait(lambda: len(sub.snapshot()) > before)
        db = tmp_path / "state" / "outbox-mqtt.sqlite"
        wait(lambda: delivered_all(sub.snapshot(), db))  # the subscriber's session has drained
        got = sub.snapshot()
    finally:
        sub.close()
    for kind in ("features", "alerts"):
        bodies = [m.body for m in got if f"/{kind}/" in m.topic]
        seqs = [b["seq"] for b in bodies]
        unique = sorted(set(seqs))
        assert unique == list(range(1, unique[-1] + 1)), f"{kind}: a seq is missing"
        first_seen = list(dict.fromkeys(seqs))
        assert first_seen == unique, f"{kind}: out of order"
    features = [m.body for m in got if "/features/" in m.topic]
    assert any(b["replayed"] for b in features), "what waited through the outage is marked replayed"
    alerts = [m.body for m in got if "/alerts/" in m.topic]
    assert alerts and alerts[0]["state"] == "raised" and alerts[0]["top"][0]["tag"] == "bearing_temp"


def test_sighup_with_fixed_credentials_delivers_what_was_buffered(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    from tests.mosquitto import PASSWORD, USER

    make_data(tmp_path / "data.csv", seconds=600, anomaly=(1000, 1000))
    make_model(tmp_path / "model.onnx")
    secret = tmp_path / "mqtt-password"
    secret.write_text("wrong\n")
    config = CONFIG.format(port=mosquitto.auth_port, pump=source_and_pipeline(speed=20, at_end="idle"))
    config += f'username = "{USER}"\npassword_file = "{secret}"\n'
    (tmp_path / "edge.toml").write_text(config)
    sub = Subscriber(mosquitto.port, "plant/#")  # the anonymous listener shares the broker's topics
    agent = spawn(tmp_path)
    log = Tail(agent)
    try:
        wait(lambda: '"failed, needs attention"' in log.text())  # the broker refused the password
        assert not any("/features/" in m.topic for m in sub.snapshot())  # refused: buffering
        secret.write_text(PASSWORD + "\n")
        agent.send_signal(signal.SIGHUP)
        wait(lambda: sum("/features/" in m.topic for m in sub.snapshot()) >= 10)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=60)
        err = log.done()
        sub.close()
    assert agent.returncode == 0, err
    assert '"config reloaded"' in err and '"sinks": ["mqtt"]' in err
    seqs = sorted({m.body["seq"] for m in sub.snapshot() if "/features/" in m.topic})
    assert seqs[0] == 1 and seqs == list(range(1, seqs[-1] + 1)), "the backlog from before the fix arrived"
