"""The pump simulator: physics with an injected clock, and the real OPC UA and Modbus servers serving it."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import struct
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient
from structlog.testing import capture_logs

from agent.errors import ConfigError
from plugins.modbus.config import ModbusSourceConfig
from plugins.opcua.config import OpcUaSourceConfig
from plugins.simulator import cli, load_scenario, parse_scenario
from plugins.simulator.machine import Machine
from plugins.simulator.mapping import NAMESPACE, opcua_endpoint, signal_map, sources_toml
from plugins.simulator.scenario import Scenario
from plugins.simulator.servers import Simulator, run_simulator
from tests.conftest import free_port

NO_FAULTS = Scenario()


def series(machine: Machine, name: str, times: np.ndarray) -> np.ndarray:
    return np.array([machine.sample(float(t))[name] for t in times])


def scenario(faults: str) -> Scenario:
    return parse_scenario(f"name = 'pump9'\nseed = 7\n{faults}")


# --- physics, pure, clock injected ---------------------------------------------------------------------
def test_sample_is_a_pure_function_of_time_and_seed() -> None:
    a, b = Machine(NO_FAULTS), Machine(NO_FAULTS)
    assert a.sample(1234.5) == b.sample(1234.5)
    other = Machine(NO_FAULTS.model_copy(update={"seed": 2}))
    assert other.sample(1234.5) != a.sample(1234.5)
    assert set(a.sample(0.0)) == {
        "speed",
        "motor_current",
        "vibration_rms",
        "bearing_temp",
        "pressure",
        "flow",
    }


def test_flow_follows_speed_and_current_follows_load() -> None:
    m = Machine(NO_FAULTS)
    t = np.arange(0, 2400, 5.0)
    speed, flow, current = (series(m, k, t) for k in ("speed", "flow", "motor_current"))
    assert np.corrcoef(speed, flow)[0, 1] > 0.98
    assert np.corrcoef(speed, current)[0, 1] > 0.95
    assert speed.min() == pytest.approx(0.55 * 1480, rel=0.02) and speed.max() == pytest.approx(
        1480, rel=0.02
    )


def test_bearing_temperature_lags_the_load() -> None:
    m = Machine(NO_FAULTS)
    t = np.arange(0, 2 * 1200, 2.0)
    load, temp = series(m, "speed", t), series(m, "bearing_temp", t)
    lags = np.arange(0, 600, 2)
    corr = [np.corrcoef(load[: len(t) - k], temp[k:])[0, 1] for k in range(0, 300)]
    best = lags[int(np.argmax(corr))]
    assert 60 < best < 500  # seconds: a first-order lag of tau=600 s on a 1200 s cycle
    assert temp.std() < 0.5 * 30 * (1 - 0.55) / 2  # and it is smoothed


def test_bearing_wear_raises_vibration_and_temperature() -> None:
    m = Machine(scenario("[[faults]]\ntype = 'bearing_wear'\nat = 1200\nduration = 1200\nseverity = 1.0"))
    before, after = np.arange(0, 1200, 3.0), np.arange(2400, 3600, 3.0)  # one full load cycle each
    vib_before, vib_after = series(m, "vibration_rms", before), series(m, "vibration_rms", after)
    assert vib_after.mean() == pytest.approx(3 * vib_before.mean(), rel=0.05)
    assert series(m, "bearing_temp", after).mean() > series(m, "bearing_temp", before).mean() + 8
    assert m.wear(600) == 0 and m.wear(1800) == pytest.approx(0.5) and m.wear(9999) == 1.0


def test_valve_closing_cuts_flow_and_raises_pressure() -> None:
    m = Machine(
        scenario("[[faults]]\ntype = 'valve_closing'\nat = 100\nduration = 200\nramp = 20\nclosed_to = 0.4")
    )
    clean = Machine(scenario(""))
    t = 250.0
    assert m.valve(t) == pytest.approx(0.4) and m.valve(90) == 1.0 and m.valve(300) == 1.0
    assert m.sample(t)["flow"] < 0.5 * clean.sample(t)["flow"]
    assert m.sample(t)["pressure"] > clean.sample(t)["pressure"] + 1


def test_cavitation_shakes_and_starves_the_pump() -> None:
    m = Machine(scenario("[[faults]]\ntype = 'cavitation'\nat = 100\nduration = 100"))
    clean = Machine(scenario(""))
    t = np.arange(110, 190, 0.1)
    assert (series(m, "vibration_rms", t) > series(clean, "vibration_rms", t) + 2).all()
    assert series(m, "flow", t).mean() < 0.9 * series(clean, "flow", t).mean()
    assert series(m, "pressure", t).std() > 2 * series(clean, "pressure", t).std()


def test_stuck_sensor_is_constant_and_spike_multiplies() -> None:
    m = Machine(
        scenario(
            "[[faults]]\ntype = 'stuck_sensor'\nat = 100\nduration = 50\nsignal = 'bearing_temp'\n"
            "[[faults]]\ntype = 'spike'\nat = 300\nsignal = 'pressure'\nfactor = 3.0"
        )
    )
    clean = Machine(scenario(""))
    stuck = series(m, "bearing_temp", np.arange(100, 150, 0.1))
    assert np.all(stuck == stuck[0]) and stuck[0] == clean.sample(100)["bearing_temp"]
    assert m.sample(151)["bearing_temp"] == clean.sample(151)["bearing_temp"]
    assert m.sample(300.5)["pressure"] == pytest.approx(3 * clean.sample(300.5)["pressure"])
    assert m.sample(301.5)["pressure"] == clean.sample(301.5)["pressure"]


def test_dropout_gives_nan_and_restart_takes_the_plc_down() -> None:
    m = Machine(
        scenario(
            "[[faults]]\ntype = 'dropout'\nat = 10\nduration = 5\nsignals = ['flow']\n"
            "[[faults]]\ntype = 'plc_restart'\nat = 20\nduration = 5"
        )
    )
    values = m.sample(12)
    assert math.isnan(values["flow"]) and not math.isnan(values["speed"])
    assert not m.plc_down(19.9) and m.plc_down(20) and not m.plc_down(25)
    assert [(e.t, e.edge, e.fault.type) for e in m.events(0, 30)] == [
        (10, "start", "dropout"),
        (15, "end", "dropout"),
        (20, "start", "plc_restart"),
        (25, "end", "plc_restart"),
    ]


def test_scenario_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_scenario("[machine]\nspeed_rmp = 3\n[[faults]]\ntype = 'spike'\nat = '1m'\nsignal = 'nope'")
    text = str(err.value)
    assert "machine.speed_rmp" in text
    with pytest.raises(ConfigError, match="names signal 'nope'"):
        parse_scenario("[[faults]]\ntype = 'spike'\nat = '1m'\nsignal = 'nope'")
    with pytest.raises(ConfigError, match=r"faults\.0"):
        parse_scenario("[[faults]]\ntype = 'meteor'\nat = 1")


def test_sample_scenario_is_valid_and_uses_every_fault() -> None:
    s = load_scenario()
    assert {f.type for f in s.faults} == {
        "bearing_wear",
        "valve_closing",
        "cavitation",
        "stuck_sensor",
        "spike",
        "dropout",
        "plc_restart",
    }
    assert min(f.at for f in s.faults) >= 30 * 60  # a clean half hour to learn normal from


def test_signal_map_and_sources_toml() -> None:
    s = load_scenario()
    where = signal_map(s)
    assert where["bearing_temp"]["opcua_node_id"] == "ns=2;s=pump1.bearing_temp"
    assert [w["modbus_address"] for w in where.values()] == [0, 2, 4, 6, 8, 10]
    doc = tomllib.loads(sources_toml(s, opcua_port=4841, modbus_port=5021))
    opc, mb = doc["sources"]
    assert opc["endpoint"] == "opc.tcp://127.0.0.1:4841/edge-agent/simulator" and len(opc["tags"]) == 6
    assert mb["port"] == 5021 and mb["tags"][3] == {
        "name": "bearing_temp_mb",
        "table": "holding_register",
        "address": 6,
        "type": "float32",
        "unit": "degC",
    }


def test_sources_toml_validates_against_the_source_plugins() -> None:
    opc, mb = tomllib.loads(sources_toml(load_scenario()))["sources"]
    OpcUaSourceConfig.model_validate(opc)
    ModbusSourceConfig.model_validate(mb)


# --- the real servers ------------------------------------------------------------------------------------
class FakeClock:
    """Wall time that moves only when the test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


FAULTS = """
[[faults]]
type = 'dropout'
at = 100
duration = 10
signals = ['flow', 'pressure']
[[faults]]
type = 'plc_restart'
at = 200
duration = 10
"""


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, FakeClock]]:
    """A simulator driven tick by tick, with time held still between ticks."""
    clock = FakeClock()
    simulator = Simulator(scenario(FAULTS), opcua_port=free_port(), modbus_port=free_port(), clock=clock)
    await simulator.start()
    try:
        yield simulator, clock
    finally:
        await simulator.stop()


async def read_modbus(port: int, count: int = 12) -> list[int] | int:
    """Holding registers, or the exception code the server answered with."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    try:
        assert await client.connect(), "Modbus server not reachable"
        rr = await client.read_holding_registers(0, count=count, device_id=1)
        return int(rr.exception_code) if rr.isError() else list(rr.registers)
    finally:
        client.close()


def floats(registers: list[int]) -> list[float]:
    return [
        struct.unpack(">f", struct.pack(">HH", *registers[i : i + 2]))[0] for i in range(0, len(registers), 2)
    ]


async def test_opcua_and_modbus_serve_machine_sample(sim: tuple[Simulator, FakeClock]) -> None:
    simulator, clock = sim
    clock.now += 42.0
    await simulator.tick()
    expected = Machine(simulator.scenario).sample(42.0)
    where = signal_map(simulator.scenario)
    async with Client(opcua_endpoint("127.0.0.1", simulator.opcua_port), timeout=5) as client:
        assert await client.get_namespace_index(NAMESPACE) == 2
        for name, value in expected.items():
            assert where[name]["opcua_nsu_node_id"] == f"nsu={NAMESPACE};s=pump9.{name}"
            by_index = await client.get_node(where[name]["opcua_node_id"]).read_data_value()
            assert by_index.Value is not None and by_index.Value.Value == value
            assert by_index.SourceTimestamp is not None
            assert by_index.SourceTimestamp.timestamp() == pytest.approx(clock.now)
    registers = await read_modbus(simulator.modbus_port)
    assert isinstance(registers, list)
    assert floats(registers) == [float(np.float32(v)) for v in expected.values()]
    assert simulator.namespace_index == 2


async def test_dropout_makes_the_servers_stop_answering(sim: tuple[Simulator, FakeClock]) -> None:
    simulator, clock = sim
    clock.now += 105.0
    await simulator.tick()
    assert await read_modbus(simulator.modbus_port, count=4) != 0x0B  # speed, current still answer
    assert await read_modbus(simulator.modbus_port) == 0x0B  # gateway target failed to respond
    where = signal_map(simulator.scenario)
    async with Client(opcua_endpoint("127.0.0.1", simulator.opcua_port), timeout=5) as client:
        flow = await client.get_node(where["flow"]["opcua_node_id"]).read_data_value(
            raise_on_bad_status=False
        )
        assert flow.StatusCode is not None
        assert flow.StatusCode.value == ua.StatusCodes.BadNoCommunication
        with pytest.raises(ua.UaStatusCodeError):
            await client.get_node(where["pressure"]["opcua_node_id"]).read_value()
        clock.now += 10.0
        await simulator.tick()
        assert await client.get_node(where["flow"]["opcua_node_id"]).read_value() > 0
    assert isinstance(await read_modbus(simulator.modbus_port), list)


async def test_plc_restart_closes_the_ports_and_comes_back(sim: tuple[Simulator, FakeClock]) -> None:
    simulator, clock = sim
    with capture_logs() as logs:
        clock.now += 201.0
        await simulator.tick()
        assert not simulator.up
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", simulator.modbus_port)
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", simulator.opcua_port)
        clock.now += 10.0
        await simulator.tick()
    assert simulator.up
    assert isinstance(await read_modbus(simulator.modbus_port), list)
    events = [(e["event"], e.get("fault")) for e in logs]
    assert ("fault injected", "dropout") in events and ("fault ended", "dropout") in events
    assert ("fault injected", "plc_restart") in events
    assert any(e == "PLC restart: servers back" for e, _ in events)


async def test_run_simulator_refreshes_values_as_time_passes() -> None:
    clock = FakeClock()
    s = scenario("")
    async with run_simulator(
        s, opcua_port=free_port(), modbus_port=free_port(), clock=clock, speed=10
    ) as sim:
        first = floats(await read_modbus(sim.modbus_port))  # type: ignore[arg-type]
        clock.now += 3.0  # 30 s of scenario time
        for _ in range(200):
            if sim.t == 30.0:
                break
            await asyncio.sleep(0.02)
        second = floats(await read_modbus(sim.modbus_port))  # type: ignore[arg-type]
    assert sim.t == 30.0
    assert second == [float(np.float32(v)) for v in Machine(s).sample(30.0).values()] != first


def test_simulate_command_runs_for_its_duration(capsys: pytest.CaptureFixture[str]) -> None:
    opc, mb = free_port(), free_port()
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers())
    args = parser.parse_args(
        ["simulate", "--speed", "20", "--duration", "1s", "--opcua-port", str(opc), "--modbus-port", str(mb)]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "ns=2;s=pump1.bearing_temp" in out


def test_simulate_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    opc, mb = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "simulate", "--opcua-port", str(opc), "--modbus-port", str(mb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "simulator serving" in line:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
