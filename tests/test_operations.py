"""The agent as a service, on a real subprocess: systemd notify and watchdog, /metrics, SIGHUP reload."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.pump import make_data, source_and_pipeline

BASE = """
[agent]
id = "line1"
state_dir = "state"
status_interval = "1h"
model_check_interval = "200ms"

[health]
port = {port}

{pump}{extra}
[[sinks]]
type = "jsonl"
path = "out.jsonl"
kinds = ["features", "alert"]
"""


class Agent:
    """``edge-agent run`` in a subprocess, with helpers to wait on its output."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.stderr = open(folder / "stderr.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "-c", str(folder / "edge.toml")],
            cwd=folder,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )

    def log(self) -> str:
        return (self.folder / "stderr.log").read_text()

    def lines(self) -> list[dict]:  # type: ignore[type-arg]
        path = self.folder / "out.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def wait_for(self, predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            assert self.proc.poll() is None, f"agent exited early:\n{self.log()}"
            time.sleep(0.1)
        raise AssertionError(f"condition not met in {timeout}s; log:\n{self.log()[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    make_data(tmp_path / "data.csv", seconds=300, anomaly=(1000, 1000))
    return tmp_path


def write(folder: Path, port: int, extra: str = "") -> None:
    pump = source_and_pipeline(speed=20, at_end="loop", model=False)
    (folder / "edge.toml").write_text(BASE.format(port=port, pump=pump, extra=extra))


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(30)
    yield sock
    sock.close()


def test_ready_then_watchdog_pings_under_systemd(folder: Path, notify_socket: socket.socket) -> None:
    write(folder, free_port())
    env = {"NOTIFY_SOCKET": str(folder / "notify.sock"), "WATCHDOG_USEC": "400000"}
    agent = Agent(folder, env)
    try:
        messages: list[str] = []
        while sum("WATCHDOG=1" in m for m in messages) < 3:
            messages.append(notify_socket.recv(4096).decode())
        ready = [i for i, m in enumerate(messages) if "READY=1" in m]
        assert ready, messages
        assert any("WATCHDOG=1" in m for m in messages[ready[0] + 1 :])
    finally:
        assert agent.stop() == 0
    tail: list[str] = []
    notify_socket.settimeout(1)
    try:
        while True:
            tail.append(notify_socket.recv(4096).decode())
    except TimeoutError:
        pass
    assert any("STOPPING=1" in m for m in tail)


def test_metrics_and_readiness_from_a_running_agent(folder: Path) -> None:
    port = free_port()
    write(folder, port)
    agent = Agent(folder)
    try:
        agent.wait_for(lambda: len(agent.lines()) >= 3)

        def get(path: str) -> tuple[int, str]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read().decode()
            conn.close()
            return resp.status, body

        assert get("/healthz")[0] == 200
        assert get("/readyz")[0] == 200
        status, text = get("/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
        }
        assert samples[("edge_agent_source_state", (("source", "rec"), ("state", "up")))] == 1
        assert samples[("edge_agent_source_readings_total", (("source", "rec"),))] > 0
        assert samples[("edge_agent_windows_scored_total", (("pipeline", "pump"),))] == 0  # no model
        assert samples[("edge_agent_outbox_capacity_bytes", (("sink", "jsonl"),))] > 0
        info = [labels for (n, labels) in samples if n == "edge_agent_info"]
        assert info and ("agent", "line1") in info[0]
        ages = [
            v for (n, labels), v in samples.items() if "last_good_age" in n and ("tag", "vibration") in labels
        ]
        assert ages and 0 <= ages[0] < 60
    finally:
        assert agent.stop() == 0


def test_sighup_applies_a_valid_change_and_refuses_an_invalid_one(folder: Path) -> None:
    port = free_port()
    write(folder, port)
    agent = Agent(folder)
    try:
        agent.wait_for(lambda: sum(m["key"] == "pump" for m in agent.lines()) >= 3)
        (folder / "edge.toml").write_text(
            BASE.format(port=port, pump=source_and_pipeline(20, "loop", model=False), extra="").replace(
                "[agent]", "[agent]\nbogus = 1"
            )
        )
        agent.proc.send_signal(signal.SIGHUP)
        agent.wait_for(lambda: "reload refused" in agent.log())
        assert "agent.bogus: unknown key" in agent.log()
        before = sum(m["key"] == "pump" for m in agent.lines())
        agent.wait_for(lambda: sum(m["key"] == "pump" for m in agent.lines()) > before)  # still running

        extra = '[[pipelines]]\nname = "vib"\ntags = ["vibration"]\nfeatures = ["rms"]\n'
        write(folder, port, extra)
        agent.proc.send_signal(signal.SIGHUP)
        agent.wait_for(lambda: "config reloaded" in agent.log())
        agent.wait_for(lambda: any(m["key"] == "vib" for m in agent.lines()))
        n_pump = sum(m["key"] == "pump" for m in agent.lines())
        agent.wait_for(lambda: sum(m["key"] == "pump" for m in agent.lines()) > n_pump + 2)
    finally:
        assert agent.stop() == 0
    pump = [m["seq"] for m in agent.lines() if m["key"] == "pump"]
    assert pump == list(range(1, len(pump) + 1)), "an untouched pipeline kept its stream: no gap, no repeat"
    reload_line = next(json.loads(x) for x in agent.log().splitlines() if '"config reloaded"' in x)
    assert reload_line["pipelines"] == ["vib"] and reload_line["sources"] == [] and reload_line["sinks"] == []
