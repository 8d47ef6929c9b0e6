"""``run`` and the small promises around it: status on a clean start, birth and will paired by session,
environment typos blamed on the variable, the help texts, a quiet simulator."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.mosquitto import Mosquitto, Received, Subscriber, running_mosquitto
from tests.pump import make_data, source_and_pipeline
from tests.test_cli_checks import edge_agent

REPO = str(Path(__file__).resolve().parent.parent)
CONFIG = """
[agent]
id = "gw1"
state_dir = "state"
status_interval = "1s"
[health]
enabled = false
{pump}
[[sinks]]
type = "mqtt"
host = "127.0.0.1"
port = {port}
prefix = "plant"
kinds = ["status"]
[sinks.outbox]
durable = false
"""


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    yield from running_mosquitto(tmp_path)


async def start_agent(folder: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "run", "-c", "edge.toml",
        cwd=folder, env={**os.environ, "PYTHONPATH": REPO},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


def statuses(messages: list[Received]) -> list[dict]:  # type: ignore[type-arg]
    return [m.body for m in messages if m.topic == "plant/gw1/status"]


async def test_clean_start_status_is_live_and_birth_and_will_share_a_session(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    make_data(tmp_path / "data.csv")
    (tmp_path / "edge.toml").write_text(
        CONFIG.format(pump=source_and_pipeline(speed=1, model=False), port=mosquitto.port)
    )
    watcher = Subscriber(mosquitto.port, "plant/#", client_id="watcher")
    try:
        agent = await start_agent(tmp_path)
        got = await watcher.wait_for(lambda ms: any("seq" in s for s in statuses(ms)), within=60)
        births = [s for s in statuses(got) if s.get("state") == "online" and "seq" not in s]
        periodic = [s for s in statuses(got) if "seq" in s]
        # the broker was up all along: the first status did not wait through any outage
        assert periodic[0]["replayed"] is False, periodic[0]
        assert births and births[0]["session"] == 1
        agent.send_signal(signal.SIGKILL)  # the broker publishes the last will
        await agent.wait()
        got = await watcher.wait_for(lambda ms: statuses(ms)[-1].get("state") == "offline")
        will = statuses(got)[-1]
        assert will["session"] == births[0]["session"], "the will names the session of the birth it ends"

        agent = await start_agent(tmp_path)
        await watcher.wait_for(
            lambda ms: any(s.get("session") == 2 and s["state"] == "online" for s in statuses(ms))
        )
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.wait(), 60) == 0
        got = await watcher.wait_for(lambda ms: statuses(ms)[-1].get("state") == "offline")
        assert statuses(got)[-1]["session"] == 2
    finally:
        watcher.close()


async def test_an_env_typo_is_blamed_on_the_variable_not_the_file(tmp_path: Path) -> None:
    (tmp_path / "edge.toml").write_text('[agent]\nid = "x"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "check", "-c", "edge.toml",
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": REPO, "EDGE_AGENT__AGENT__LOGLEVEL": "debug"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 2
    line = err.decode().splitlines()[1].strip()
    assert line.startswith(
        "EDGE_AGENT__AGENT__LOGLEVEL (environment): agent.loglevel: unknown key 'loglevel'; did you mean 'log_level'?"
    ), line
    assert "edge.toml:" not in line


async def test_run_help_mentions_sighup_and_opcua_cert_has_a_description(tmp_path: Path) -> None:
    code, out, _ = await edge_agent(tmp_path, "run", "--help")
    assert code == 0 and "SIGHUP reloads the config file" in " ".join(out.split())
    code, out, _ = await edge_agent(tmp_path, "opcua-cert", "--help")
    assert code == 0 and "trusted folder" in " ".join(out.split())


async def test_simulate_prints_no_plaintext_password_warning(tmp_path: Path) -> None:
    code, out, err = await edge_agent(
        tmp_path,
        "simulate",
        "--opcua-port",
        str(free_port()),
        "--modbus-port",
        str(free_port()),
        "--duration",
        "1s",
    )
    assert code == 0, out + err
    assert "plaintext" not in err and "No signing policy" not in err, err
