"""SIGHUP against torn, empty and identity-changing config files, and during shutdown (issue 11 item 2)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from agent.config.load import load_config
from agent.runtime.core import Runtime, run_until_stopped
from agent.runtime.reload import guard_reload, read_settled
from tests.conftest import free_port
from tests.pump import make_data, source_and_pipeline
from tests.test_operations import Agent, write


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    make_data(tmp_path / "data.csv", seconds=300, anomaly=(1000, 1000))
    return tmp_path


def features(agent: Agent) -> int:
    return sum(m["key"] == "pump" for m in agent.lines())


def test_an_empty_file_on_sighup_is_refused_and_the_agent_keeps_its_id(folder: Path) -> None:
    port = free_port()
    write(folder, port)
    good = (folder / "edge.toml").read_text()
    agent = Agent(folder)
    try:
        agent.wait_for(lambda: features(agent) >= 3)
        (folder / "edge.toml").write_text("")
        agent.proc.send_signal(signal.SIGHUP)
        agent.wait_for(lambda: "reload refused" in agent.log())
        assert "no enabled source" in agent.log() and "agent.id would change" in agent.log()
        before = features(agent)
        agent.wait_for(lambda: features(agent) > before + 2)  # sources and sinks kept running

        (folder / "edge.toml").write_text(good.replace('id = "line1"', 'id = "line2"'))
        agent.proc.send_signal(signal.SIGHUP)
        agent.wait_for(lambda: agent.log().count("reload refused") == 2)
        assert "from 'line1' to 'line2'" in agent.log()
    finally:
        assert agent.stop() == 0
    assert {m["agent"] for m in agent.lines()} == {"line1"}
    assert '"config reloaded"' not in agent.log()


def test_sighup_during_shutdown_does_not_kill_the_process(folder: Path) -> None:
    write(folder, free_port())
    agent = Agent(folder)
    agent.wait_for(lambda: features(agent) >= 1)
    agent.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 60
    while agent.proc.poll() is None and time.monotonic() < deadline:
        try:
            os.kill(agent.proc.pid, signal.SIGHUP)  # a hang-up at any moment of the shutdown
        except ProcessLookupError:
            break
        time.sleep(0.002)
    assert agent.stop() == 0, agent.log()[-2000:]
    assert '"stopped"' in agent.log()


def test_the_hangup_disposition_is_never_the_default_once_the_run_has_begun(tmp_path: Path) -> None:
    """The deterministic form of the test above: SIGHUP's disposition, checked after every C call.

    The earlier code removed the loop's handler (which restores the default, "terminate") and then
    ignored SIGHUP: a hang-up between the two killed the process after "stopped" (seen once in CI).
    """
    make_data(tmp_path / "data.csv", seconds=40, anomaly=(1000, 1000))
    pump = source_and_pipeline(speed=1000, at_end="stop", model=False)
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[agent]\nstate_dir = "state"\n[health]\nenabled = false\n{pump}\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out.jsonl"\nkinds = ["features"]\n'
    )
    runtime = Runtime(load_config(config, {}), str(config))
    armed: list[bool] = []
    defaulted: list[str] = []

    def watch(_frame: object, event: str, arg: object) -> None:
        if event != "c_return":
            return
        default = signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
        if not default:
            armed.append(True)
        elif armed:
            defaulted.append(repr(arg))

    async def run() -> None:
        sys.setprofile(watch)
        try:
            await run_until_stopped(runtime, asyncio.Event())  # the replay ends: the run stops by itself
        finally:
            sys.setprofile(None)

    previous = signal.getsignal(signal.SIGHUP)
    try:
        asyncio.run(run())
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert armed and (tmp_path / "out.jsonl").read_text()
    assert defaulted == [], f"SIGHUP would have killed the process after: {defaulted[:3]}"


def cfg(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path, environ={})


SOURCE = '[[sources]]\ntype = "replay"\nname = "rec"\npath = "x.csv"\n[[sources.tags]]\nname = "a"\n'
SINK = '[[sinks]]\ntype = "stdout"\n'


def test_guard_refuses_no_source_no_sink_or_a_new_id_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("ts,a\n0,1\n")
    old = cfg(tmp_path, f'[agent]\nid = "a1"\n{SOURCE}{SINK}')
    assert guard_reload(old, cfg(tmp_path, f'[agent]\nid = "a1"\n{SOURCE}{SINK}')) == []
    no_sink = guard_reload(old, cfg(tmp_path, f'[agent]\nid = "a1"\n{SOURCE}'))
    assert len(no_sink) == 1 and "no enabled sink" in no_sink[0]
    allowed = cfg(tmp_path, '[agent]\nid = "a1"\nallow_empty_reload = true\n')
    assert guard_reload(old, allowed) == []
    renamed = guard_reload(old, cfg(tmp_path, f'[agent]\nid = "a2"\nallow_empty_reload = true\n{SOURCE}'))
    assert len(renamed) == 1 and "agent.id would change" in renamed[0]


async def test_a_file_being_written_is_read_only_once_it_settles(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text("")
    final = "".join(f"# line {i}\n" for i in range(20))

    async def slow_writer() -> None:
        # The file grows by appends, each one write: every read sees a prefix, never a truncated moment
        # (rewriting the whole text let two reads on a loaded machine both catch it empty after the
        # truncation). The writer's next timer is always due before the reader's (50 ms < SETTLE_S),
        # so two reads agree only once the writer is done, however late the loop runs.
        for i in range(20):
            with path.open("a") as out:
                out.write(final[len(final) * i // 20 : len(final) * (i + 1) // 20])
            await asyncio.sleep(0.05)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(slow_writer(), name="slow-writer")
        got = await read_settled(str(path))
    assert got == final.encode()
    assert json.dumps(got.decode())  # whole text, not a prefix
