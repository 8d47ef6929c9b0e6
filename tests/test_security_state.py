"""State files (issue 10, item 9): a private state directory, no symlink followed, safe names, no
frame locals in crash logs. Run against the real agent (subprocess), real SQLite and real key generation."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest

from agent.config.load import load_config
from agent.delivery.sqlite_store import SqliteOutbox
from agent.errors import ConfigError, FatalError
from agent.ops import logs
from plugins.opcua import security
from tests.conftest import free_port
from tests.pump import make_data, source_and_pipeline
from tests.test_operations import Agent

CONFIG = """
[agent]
id = "line1"
state_dir = "state"
status_interval = "1h"

[health]
port = {port}
{pump}
[[sinks]]
type = "jsonl"
name = "{sink}"
path = "out.jsonl"
kinds = ["features"]
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_state_directory_is_0700_and_its_files_0600_under_a_loose_umask(tmp_path: Path) -> None:
    make_data(tmp_path / "data.csv", seconds=120, anomaly=(1000, 1000))
    pump = source_and_pipeline(speed=20, at_end="loop", model=False)
    (tmp_path / "edge.toml").write_text(CONFIG.format(port=free_port(), pump=pump, sink="out"))
    old = os.umask(0o002)  # the child inherits it: group- and world-readable by default
    try:
        agent = Agent(tmp_path)
    finally:
        os.umask(old)
    try:
        agent.wait_for(lambda: len(agent.lines()) >= 2)
        state = tmp_path / "state"
        assert _mode(state) == 0o700
        files = [p for p in state.rglob("*") if p.is_file()]
        assert any(p.name == "outbox-out.sqlite" for p in files)
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        assert agent.stop() == 0


def test_a_symlink_planted_at_the_client_key_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    (tmp_path / "opcua").mkdir()
    target = tmp_path / "elsewhere.pem"
    target.write_text("precious")
    (tmp_path / "opcua" / security.KEY_NAME).symlink_to(target)
    with pytest.raises(FatalError, match="is a symbolic link"):
        security.ensure_client_cert(tmp_path, "urn:test")
    assert (target.read_text() == "precious" and _mode(target) != 0o600) or target.read_text() == "precious"


def test_a_dangling_symlink_at_the_key_does_not_receive_the_key(tmp_path: Path) -> None:
    (tmp_path / "opcua").mkdir()
    target = tmp_path / "stolen.pem"
    (tmp_path / "opcua" / security.KEY_NAME).symlink_to(target)
    with pytest.raises(FatalError, match="is a symbolic link"):
        security.ensure_client_cert(tmp_path, "urn:test")
    assert not target.exists()


def test_generated_key_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        cert, key = security.ensure_client_cert(tmp_path, "urn:test")
    finally:
        os.umask(old)
    assert _mode(key) == 0o600 and _mode(cert) == 0o600 and _mode(tmp_path / "opcua") == 0o700


@pytest.mark.parametrize("planted", ["outbox.sqlite", "outbox.sqlite-wal"])
def test_an_outbox_through_a_planted_symlink_is_refused(tmp_path: Path, planted: str) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"")
    state = tmp_path / "state"
    state.mkdir()
    (state / planted).symlink_to(target)
    with pytest.raises(FatalError, match="symbolic link"):
        SqliteOutbox(state / "outbox.sqlite", 1 << 20)
    assert target.read_bytes() == b""


@pytest.mark.parametrize("name", ["../../x", "a..b", "../outside", "sub/dir", ".hidden"])
def test_sink_names_that_could_leave_the_state_directory_are_refused(tmp_path: Path, name: str) -> None:
    make_data(tmp_path / "data.csv", seconds=10)
    pump = source_and_pipeline(speed=20, at_end="loop", model=False)
    (tmp_path / "edge.toml").write_text(CONFIG.format(port=free_port(), pump=pump, sink=name))
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.name"):
        load_config(tmp_path / "edge.toml")


def test_source_names_with_dotdot_are_refused(tmp_path: Path) -> None:
    make_data(tmp_path / "data.csv", seconds=10)
    pump = source_and_pipeline(speed=20, at_end="loop", model=False).replace('name = "rec"', 'name = "r..ec"')
    (tmp_path / "edge.toml").write_text(CONFIG.format(port=free_port(), pump=pump, sink="out"))
    with pytest.raises(ConfigError, match=r"sources\[0\]\.name.*'\.\.'"):
        load_config(tmp_path / "edge.toml")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_crash_log_carries_no_frame_locals(fmt: str) -> None:
    out = io.StringIO()
    logs.configure("info", fmt, out)

    def connect(password: str) -> None:
        token = f"secret-{password}"
        raise RuntimeError(f"boom {len(token)}")

    secret = "".join(["hun", "ter2"])  # not in any source line a traceback prints
    try:
        connect(secret)
    except RuntimeError:
        logs.get("test").exception("crashed")
    text = out.getvalue()
    logs.configure("info", "json")
    assert "crashed" in text and "RuntimeError" in text
    assert "hunter2" not in text
    if fmt == "json":
        assert "locals" not in json.loads(text.splitlines()[-1])["exception"][0]["frames"][0]
