"""MQTT settings that weaken security are said out loud, and the published config hash holds no secret
(issue 10, items 6-7). Run through the real CLI: ``check`` and ``run`` in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.config.load import config_hash, load_config
from tests.conftest import free_port
from tests.pump import make_data, source_and_pipeline

CONFIG = """
[agent]
id = "line1"
state_dir = "state"
status_interval = "200ms"
[health]
port = {health}
{pump}
[[sinks]]
type = "mqtt"
name = "broker"
host = "127.0.0.1"
port = {port}
username = "edge"
password = "{password}"
{tls}
[[sinks]]
type = "jsonl"
path = "out.jsonl"
kinds = ["status"]
"""


MQTT_PORT = free_port()  # nothing listens: these tests need no broker


def _write(folder: Path, password: str = "hunter2", tls: str = "", health: int | None = None) -> Path:
    make_data(folder / "data.csv", seconds=60)
    pump = source_and_pipeline(speed=20, at_end="loop", model=False)
    text = CONFIG.format(health=health or free_port(), pump=pump, port=MQTT_PORT, password=password, tls=tls)
    (folder / "edge.toml").write_text(text)
    return folder / "edge.toml"


def _check(path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_check_warns_about_a_password_without_tls(tmp_path: Path) -> None:
    out = _check(_write(tmp_path))
    assert "security warnings (1):" in out and "broker: a password is sent to the broker without TLS" in out


def test_check_warns_about_skipping_certificate_verification(tmp_path: Path) -> None:
    out = _check(_write(tmp_path, tls="tls = true\ntls_insecure_skip_verify = true"))
    assert (
        "broker: tls_insecure_skip_verify = true: the broker's certificate and host name are not checked"
        in out
    )
    assert "without TLS" not in out


def test_a_verified_tls_connection_gets_no_warning(tmp_path: Path) -> None:
    assert "security warnings" not in _check(_write(tmp_path, tls="tls = true"))


def test_run_warns_once_at_start_and_publishes_a_hash_without_the_password(tmp_path: Path) -> None:
    path = _write(tmp_path, tls="tls = true\ntls_insecure_skip_verify = true")
    stderr = open(tmp_path / "stderr.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(path)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    out = tmp_path / "out.jsonl"
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and len(out.read_text().splitlines()) >= 3):
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "stderr.log").read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        stderr.close()
    log = (tmp_path / "stderr.log").read_text()
    warned = [json.loads(x) for x in log.splitlines() if "insecure setting" in x]
    assert [w["target"] for w in warned] == ["broker"]
    assert "tls_insecure_skip_verify" in warned[0]["warning"]
    published = {json.loads(x)["config_hash"] for x in out.read_text().splitlines()}
    assert published == {config_hash(load_config(path))}
    assert published != {hashlib.sha256(path.read_bytes()).hexdigest()[:12]}, "not a hash of the raw file"
    assert "hunter2" not in log


def test_the_config_hash_does_not_depend_on_secrets_but_on_everything_else(tmp_path: Path) -> None:
    """An offline guess of the password cannot be checked against the hash: it does not change with it."""
    port = free_port()
    base = config_hash(_write(tmp_path, password="hunter2", health=port))
    assert config_hash(_write(tmp_path, password="correct horse battery staple", health=port)) == base
    (tmp_path / "pw").write_text("from-a-file\n")
    text = (
        (tmp_path / "edge.toml")
        .read_text()
        .replace('password = "correct horse battery staple"', f'password_file = "{tmp_path / "pw"}"')
    )
    (tmp_path / "edge.toml").write_text(text)
    assert config_hash(tmp_path / "edge.toml") == base
    assert config_hash(_write(tmp_path, password="hunter2", health=port + 1)) != base, "a real change shows"
