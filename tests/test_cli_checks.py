"""``check --connect`` and ``once`` as a user runs them, against a real pymodbus server and a real mosquitto.

A dead PLC is a failure (exit 1, FAILED, no raw library log line); the broker probe never takes the
running agent's client id nor touches its retained status; a wrong byte order is flagged with what every
order would decode to.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.conftest import free_port
from tests.mosquitto import Mosquitto, Subscriber, eventually, running_mosquitto
from tests.test_modbus_source import plc, sim_device

REPO = str(Path(__file__).resolve().parent.parent)


def config(modbus_port: int, tags: str, broker_port: int | None = None) -> str:
    text = f"""
[agent]
id = "line1"
state_dir = "state"
[health]
enabled = false
[[sources]]
type = "modbus"
name = "press"
host = "127.0.0.1"
port = {modbus_port}
[[sources.devices]]
name = "plc"
timeout = "1s"
{tags}
[[pipelines]]
name = "p"
tags = ["temp"]
features = ["mean"]
[pipelines.window]
length = "10s"
hop = "10s"
period = "1s"
"""
    if broker_port is not None:
        text += f'[[sinks]]\ntype = "mqtt"\nhost = "127.0.0.1"\nport = {broker_port}\nprefix = "t"\n'
    return text


TWO_TAGS = """
[[sources.tags]]
name = "temp"
address = 0
type = "float32"
order = "ABCD"
[[sources.tags]]
name = "count"
address = 2
type = "uint16"
"""


async def edge_agent(cwd: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", *args,
        cwd=cwd, env={**os.environ, "PYTHONPATH": REPO},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    yield from running_mosquitto(tmp_path)


def registers(values: list[int]) -> SimDevice:
    return sim_device(holding=[SimData(0, values=values, datatype=DataType.REGISTERS)])


# 41.5 as float32 ABCD is 0x4226 0x0000; 1234 as uint16.
GOOD_BLOCK = [0x4226, 0x0000, 1234, 0, 0, 0, 0, 0]


async def test_check_connect_fails_for_a_dead_plc_without_a_raw_library_line(tmp_path: Path) -> None:
    (tmp_path / "edge.toml").write_text(config(free_port(), TWO_TAGS))
    code, out, err = await edge_agent(tmp_path, "check", "-c", "edge.toml", "--connect")
    assert code == 1, out + err
    assert "connect press: FAILED: 0/2 tags good: cannot connect to 127.0.0.1" in out, out
    assert "OK, 0/2" not in out
    assert "Connection to" not in err and "pymodbus" not in err, err


async def test_once_exits_non_zero_when_nothing_could_be_read(tmp_path: Path) -> None:
    (tmp_path / "edge.toml").write_text(config(free_port(), TWO_TAGS))
    code, out, err = await edge_agent(tmp_path, "once", "-c", "edge.toml")
    assert code == 1, out + err
    assert "press: FAILED: 0/2 tags good" in err
    assert "Connection to" not in err, err


async def test_check_connect_and_once_pass_against_a_live_plc(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "edge.toml").write_text(config(port, TWO_TAGS))
    async with plc(port, registers(GOOD_BLOCK)):
        code, out, err = await edge_agent(tmp_path, "check", "-c", "edge.toml", "--connect")
        assert code == 0, out + err
        assert "connect press: OK, 2/2 tags good" in out and "suspect" not in out
        code, out, err = await edge_agent(tmp_path, "once", "-c", "edge.toml")
    assert code == 0, out + err
    assert "41.5" in out and "1234" in out and "wrongly decoded" not in err


async def test_check_connect_probes_the_broker_without_dropping_the_running_agent(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    port = free_port()
    (tmp_path / "edge.toml").write_text(config(port, TWO_TAGS, mosquitto.port))
    watcher = Subscriber(mosquitto.port, "t/#")
    dropped = threading.Event()
    agent = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-agent-line1")  # the agent's id
    agent.on_disconnect = lambda *_: dropped.set()
    agent.connect("127.0.0.1", mosquitto.port, keepalive=10)
    agent.loop_start()
    try:
        await eventually(agent.is_connected, what="the stand-in agent to connect")
        async with plc(port, registers(GOOD_BLOCK)):
            code, out, err = await edge_agent(tmp_path, "check", "-c", "edge.toml", "--connect")
        assert code == 0, out + err
        assert "connect mqtt: OK" in out
        # A sentinel through the stand-in agent's own session: once it arrives, anything check sent is in.
        agent.publish("t/sentinel", b"{}", qos=1)
        got = await watcher.wait_for(lambda ms: any(m.topic == "t/sentinel" for m in ms))
        assert not dropped.is_set(), "check --connect took the running agent's client id"
        assert [m.topic for m in got] == ["t/sentinel"], "check --connect published a status"
        assert "edge-agent-line1-check-" in mosquitto.log_text()
    finally:
        agent.disconnect()
        agent.loop_stop()
        watcher.close()


async def test_check_connect_fails_when_the_broker_is_down(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "edge.toml").write_text(config(port, TWO_TAGS, free_port()))
    async with plc(port, registers(GOOD_BLOCK)):
        code, out, err = await edge_agent(tmp_path, "check", "-c", "edge.toml", "--connect")
    assert code == 1, out + err
    assert "connect press: OK, 2/2 tags good" in out
    assert "connect mqtt: FAILED: broker 127.0.0.1" in out and "refused the connection" in out


WORD_SWAPPED = GOOD_BLOCK.copy()
CDAB_TAGS = TWO_TAGS.replace('order = "ABCD"', 'order = "CDAB"')


async def test_a_wrong_byte_order_is_flagged_with_every_order_and_the_right_one(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "edge.toml").write_text(config(port, CDAB_TAGS))
    async with plc(port, registers(GOOD_BLOCK)):
        code, out, err = await edge_agent(tmp_path, "once", "-c", "edge.toml")
        assert code == 0, out + err  # the values were read; the suspicion is a note, not a failure
        assert (
            'temp: float32 CDAB gives subnormal; registers 0x4226 0x0000; looks right: order = "ABCD"' in err
        )
        # 0x4226 0x0000 in each order: ABCD 41.5, BADC 0x26420000, CDAB 0x00004226, DCBA 0x00002642
        for line in (r"ABCD +41\.5 +plausible +<- looks right", r"BADC +6\.73\d*e-16 +tiny",
                     r"CDAB +2\.37\d*e-41 +subnormal +<- configured", r"DCBA +1\.37\d*e-41 +subnormal"):  # fmt: skip
            assert re.search(line, err), (line, err)
        code, out, err = await edge_agent(tmp_path, "check", "-c", "edge.toml", "--connect")
    assert code == 0, out + err
    assert "connect press: OK, 2/2 tags good (1 suspect: see below)" in out
    assert 'looks right: order = "ABCD"' in out


async def test_a_device_sending_nan_in_the_configured_order_gets_the_right_order(tmp_path: Path) -> None:
    # 0x7FC0 0x4226 is a NaN as ABCD; read CDAB it is 0x42267FC0 = 41.62
    port = free_port()
    (tmp_path / "edge.toml").write_text(config(port, TWO_TAGS))
    async with plc(port, registers([0x7FC0, 0x4226, 1234, 0, 0, 0, 0, 0])):
        code, out, err = await edge_agent(tmp_path, "once", "-c", "edge.toml")
    assert code == 0, out + err
    assert (
        'temp: float32 ABCD gives a NaN pattern; registers 0x7FC0 0x4226; looks right: order = "CDAB" (also plausible: BADC)'
        in err
    )


async def test_a_word_swapped_int32_is_flagged(tmp_path: Path) -> None:
    port = free_port()
    tags = TWO_TAGS.replace('type = "float32"\norder = "ABCD"', 'type = "int32"\norder = "CDAB"')
    (tmp_path / "edge.toml").write_text(config(port, tags))
    async with plc(port, registers([0x0000, 0x04D2, 7, 0, 0, 0, 0, 0])):  # 1234 as int32 ABCD
        code, out, err = await edge_agent(tmp_path, "once", "-c", "edge.toml")
    assert code == 0, out + err
    assert "80871424" in out
    assert "temp: int32 CDAB gives 65,536x another order" in err and 'looks right: order = "ABCD"' in err
