"""Bounded event time (issue 11 item 3): a PLC clock jump neither moves the window grid nor goes unlogged."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import textwrap
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.config.load import load_config
from agent.records import Quality, Reading, bad
from agent.runtime.core import Runtime
from agent.stream.eventtime import EventTimeGuard
from tests.opcua_server import NS_URI, plant_server

NOW = 1_800_000_000.0


def test_readings_within_the_skew_pass_unchanged() -> None:
    guard = EventTimeGuard(300)
    readings = [Reading("a", NOW - 299, 1.0), Reading("b", NOW + 299, 2.0), bad("c", NOW, "timeout")]
    assert guard(readings, NOW) == readings
    assert guard.total == 0


def test_a_jump_is_restamped_uncertain_and_logged_once_per_episode() -> None:
    with capture_logs() as logs:
        guard = EventTimeGuard(300, log=__import__("structlog").get_logger())
        for k in range(6):  # tag b is an hour ahead for six polls; tag a is fine throughout
            out = guard([Reading("a", NOW + k, 1.0), Reading("b", NOW + k + 3600, 2.0)], NOW + k)
            assert out[1] == Reading(
                "b",
                NOW + k,
                2.0,
                Quality.UNCERTAIN,
                "source clock off by +3600 s; re-stamped with the arrival time",
            )
        guard([Reading("a", NOW + 6, 1.0), Reading("b", NOW + 6, 2.0)], NOW + 6)
        guard([Reading("b", NOW - 7200, 2.0)], NOW + 7)  # a second episode, an hour behind
    events = [(e["event"], e.get("tag"), e.get("offset_s"), e.get("readings_affected")) for e in logs]
    assert events == [
        ("source clock off, readings re-stamped", "b", 3600.0, None),
        ("source clock back within bounds", None, None, 6),
        ("source clock off, readings re-stamped", "b", -7207.0, None),
    ]
    assert guard.total == 7


def test_drop_policy_leaves_them_out() -> None:
    guard = EventTimeGuard(60, "drop")
    assert guard([Reading("a", NOW, 1.0), Reading("b", NOW + 61, 2.0)], NOW) == [Reading("a", NOW, 1.0)]


def test_a_zero_skew_is_refused() -> None:
    with pytest.raises(ValueError, match="skew"):
        EventTimeGuard(0)


CONFIG = """
[agent]
id = "line1"
state_dir = "state"
status_interval = "1h"
[health]
enabled = false
[[sources]]
type = "opcua"
name = "plc"
endpoint = "opc.tcp://127.0.0.1:{port}/"
mode = "poll"
poll_interval = "50ms"
max_clock_skew = "5m"
[[sources.tags]]
name = "v0"
node = "nsu={ns};s=Line1.V0"
[[sources.tags]]
name = "v1"
node = "nsu={ns};s=Line1.V1"
[[pipelines]]
name = "p"
tags = ["v0", "v1"]
features = ["mean"]
[pipelines.window]
period = "100ms"
length = "500ms"
[[sinks]]
type = "jsonl"
path = "out.jsonl"
kinds = ["features"]
"""


def window_ends(path: Path) -> list[float]:
    if not path.exists():
        return []
    return [
        json.loads(line)["window"]["end_ms"] / 1000 for line in path.read_text().splitlines() if line.strip()
    ]


async def test_one_tag_an_hour_ahead_keeps_windows_flowing(tmp_path: Path, port: int) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(textwrap.dedent(CONFIG).format(port=port, ns=NS_URI))
    out, stop = tmp_path / "out.jsonl", asyncio.Event()
    async with plant_server(port) as plant:
        runtime = Runtime(load_config(config, {}), str(config))
        with capture_logs() as logs:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(runtime.run(stop), name="runtime")
                k = 0.0

                async def tick(ahead: float = 0.0) -> None:
                    nonlocal k
                    k += 1
                    now = dt.datetime.now(dt.UTC)
                    await plant.set_one(0, k)
                    await plant.set_one(1, k, now + dt.timedelta(seconds=ahead))
                    await asyncio.sleep(0.1)

                while len(window_ends(out)) < 3:
                    await tick()
                for _ in range(6):  # six ticks of one tag stamped an hour ahead
                    await tick(ahead=3600)
                back = time.time()
                while not any(back + 1 < end < back + 600 for end in window_ends(out)):
                    await tick()
                    assert time.time() < back + 30, f"no windows after the jump: {window_ends(out)[-3:]}"
                stop.set()
    events = [e["event"] for e in logs]
    assert events.count("source clock off, readings re-stamped") == 1
    assert events.count("source clock back within bounds") == 1
    assert max(window_ends(out)) < time.time() + 60  # the grid never went an hour ahead
