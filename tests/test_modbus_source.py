"""The Modbus source against real pymodbus servers on loopback: TCP, RTU over a pty pair, RTU over TCP."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import ValidationError
from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.plugin import ComponentStatus, PluginContext, State
from agent.records import Quality, Reading
from plugins.modbus.config import ModbusSourceConfig
from plugins.modbus.decode import Codec
from plugins.modbus.device import DeviceLoop
from plugins.modbus.source import ModbusSource

# name, type, order, address, value (holding registers of the "typed" device)
TYPED = [
    ("u16", "uint16", "AB", 0, 4321),
    ("i16", "int16", "BA", 1, -1234),
    ("u32", "uint32", "CDAB", 2, 123456789),
    ("i32", "int32", "BADC", 4, -987654),
    ("f32", "float32", "DCBA", 6, 1.5),
    ("i64", "int64", "GHEFCDAB", 8, -(2**40) - 7),
    ("u64", "uint64", "BADCFEHG", 12, 2**63 + 11),
    ("f64", "float64", "HGFEDCBA", 16, -2.25),
]


def holding_values() -> list[int]:
    regs = [0] * 30
    for _, dtype, order, address, value in TYPED:
        encoded = Codec(dtype, order).encode(value)
        regs[address : address + len(encoded)] = encoded
    regs[20] = 0b1010  # bits 1 and 3 set
    regs[21:24] = Codec("string", "AB", length=6).encode("PUMP-7")
    return regs


def sim_device(unit: int = 1, holding: list[SimData] | None = None) -> SimDevice:
    """A device with 32 coils, 16 discrete inputs, the typed holding registers and 10 input registers."""
    return SimDevice(
        id=unit,
        simdata=(
            [SimData(0, values=[True, False] * 16, datatype=DataType.BITS)],
            [SimData(0, values=[False] * 15 + [True], datatype=DataType.BITS)],
            holding or [SimData(0, values=holding_values(), datatype=DataType.REGISTERS)],
            [SimData(0, values=list(range(100, 110)), datatype=DataType.REGISTERS)],
        ),
    )


class Plc:
    """A pymodbus TCP server that tests can stop and start again on the same port."""

    def __init__(self, port: int, device: SimDevice, framer: FramerType = FramerType.SOCKET) -> None:
        self.port, self.device, self.framer = port, device, framer
        self.server: ModbusTcpServer | None = None

    async def start(self) -> None:
        self.server = ModbusTcpServer(self.device, address=("127.0.0.1", self.port), framer=self.framer)
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None


@contextlib.asynccontextmanager
async def plc(
    port: int, device: SimDevice | None = None, framer: FramerType = FramerType.SOCKET
) -> AsyncIterator[Plc]:
    server = Plc(port, device or sim_device(), framer)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def typed_tags(device: str | None = None) -> list[dict[str, Any]]:
    tags: list[dict[str, Any]] = [
        {"name": name, "type": dtype, "order": order, "address": address}
        for name, dtype, order, address, _ in TYPED
    ]
    tags += [
        {"name": "bit1", "type": "bit", "bit": 1, "address": 20},
        {"name": "bit2", "type": "bit", "bit": 2, "address": 20},
        {"name": "label", "type": "string", "length": 6, "address": 21},
        {"name": "coil0", "table": "coil", "type": "bool", "address": 0},
        {"name": "coil3", "table": "coil", "type": "bool", "address": 3},
        {"name": "di15", "table": "discrete_input", "type": "bool", "address": 15},
        {"name": "ir2", "table": "input_register", "address": 2, "scale": 0.5, "offset": 1},
    ]
    if device:
        for tag in tags:
            tag["device"] = device
    return tags


def make_source(tmp_path: Path, **section: Any) -> ModbusSource:
    section = {"type": "modbus", "name": "plc", **section}
    config = ModbusSourceConfig.model_validate(section)
    return ModbusSource(config, PluginContext("plc", "agent", tmp_path, ComponentStatus("plc", "source")))


def check_typed(readings: list[Reading]) -> None:
    by_tag = {r.tag: r for r in readings}
    assert all(r.quality is Quality.GOOD for r in readings), [
        r for r in readings if r.quality is not Quality.GOOD
    ]
    for name, _, _, _, value in TYPED:
        assert by_tag[name].value == value, name
    assert by_tag["bit1"].value is True and by_tag["bit2"].value is False
    assert by_tag["label"].value == "PUMP-7"
    assert by_tag["coil0"].value is True and by_tag["coil3"].value is False
    assert by_tag["di15"].value is True
    assert by_tag["ir2"].value == 102 * 0.5 + 1


async def test_tcp_reads_every_type_in_the_fewest_requests(tmp_path: Path, port: int) -> None:
    source = make_source(tmp_path, host="127.0.0.1", port=port, devices=[{"name": "d1"}], tags=typed_tags())
    async with plc(port):
        readings = await source.read_once()
    check_typed(readings)
    holding = [r for r in readings if r.tag in {t[0] for t in TYPED} | {"bit1", "bit2", "label"}]
    assert len({r.ts for r in holding}) == 1  # one request, one timestamp


async def test_rtu_over_tcp(tmp_path: Path, port: int) -> None:
    source = make_source(
        tmp_path,
        transport="rtu_over_tcp",
        host="127.0.0.1",
        port=port,
        devices=[{"name": "d1"}],
        tags=typed_tags(),
    )
    async with plc(port, framer=FramerType.RTU):
        check_typed(await source.read_once())


@pytest.mark.skipif(
    shutil.which("socat") is None, reason="socat is not installed: no pseudo-terminal pair for RTU"
)
async def test_rtu_over_a_serial_pty_pair(tmp_path: Path) -> None:
    server_end, client_end = tmp_path / "plc-tty", tmp_path / "agent-tty"
    socat = await asyncio.create_subprocess_exec(
        "socat",
        f"pty,raw,echo=0,link={server_end}",
        f"pty,raw,echo=0,link={client_end}",
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if server_end.exists() and client_end.exists():
                break
            await asyncio.sleep(0.05)
        server = ModbusSerialServer(sim_device(unit=7), port=str(server_end), baudrate=19200, parity="N")
        await server.serve_forever(background=True)
        try:
            source = make_source(
                tmp_path,
                transport="rtu",
                serial_port=str(client_end),
                parity="N",
                request_pause="5ms",
                devices=[{"name": "d7", "unit": 7}],
                tags=typed_tags(),
            )
            check_typed(await source.read_once())
        finally:
            await server.shutdown()
    finally:
        socat.terminate()
        await socat.wait()


async def test_an_illegal_address_isolates_exactly_one_tag(tmp_path: Path, port: int) -> None:
    # holding registers 0-9 and 20-21 exist; 10-19 is a hole in the device's map
    holding = [
        SimData(0, values=list(range(10)), datatype=DataType.REGISTERS),
        SimData(20, values=[20, 21], datatype=DataType.REGISTERS),
    ]
    tags = [
        {"name": "a", "address": 0},
        {"name": "b", "address": 5, "type": "uint32"},
        {"name": "ghost", "address": 12},
        {"name": "c", "address": 20},
    ]
    source = make_source(tmp_path, host="127.0.0.1", port=port, devices=[{"name": "d1"}], tags=tags)
    connections, pollers = source._build()
    poller = pollers[0]
    assert len(poller.plan) == 1  # one block bridging the hole
    async with plc(port, sim_device(holding=holding)):
        try:
            first = {r.tag: r for r in await poller.poll()}
            second = {r.tag: r for r in await poller.poll()}
        finally:
            connections[0].close()
    for cycle in (first, second):
        assert cycle["ghost"].quality is Quality.BAD and cycle["ghost"].value is None
        assert cycle["ghost"].reason == "illegal data address"
        assert [cycle[t].value for t in ("a", "b", "c")] == [0, (5 << 16) | 6, 20]
        assert all(cycle[t].quality is Quality.GOOD for t in ("a", "b", "c"))
    assert poller.isolated == {"ghost"}
    assert [(r.address, r.count) for r in poller.plan] == [(0, 7), (12, 1), (20, 1)]


async def test_a_refused_hole_between_good_tags_is_fenced_off(tmp_path: Path, port: int) -> None:
    holding = [
        SimData(0, values=list(range(10)), datatype=DataType.REGISTERS),
        SimData(15, values=[15, 16], datatype=DataType.REGISTERS),
    ]
    tags = [{"name": "a", "address": 8}, {"name": "b", "address": 16}]
    source = make_source(tmp_path, host="127.0.0.1", port=port, devices=[{"name": "d1"}], tags=tags)
    connections, pollers = source._build()
    poller = pollers[0]
    async with plc(port, sim_device(holding=holding)):
        try:
            for _ in range(2):
                assert [(r.tag, r.value) for r in await poller.poll()] == [("a", 8), ("b", 16)]
        finally:
            connections[0].close()
    assert poller.isolated == set()
    assert len(poller.plan) == 2


async def run_source(
    source: ModbusSource, until: Callable[[list[Reading]], bool], limit: float = 20.0
) -> list[Reading]:
    """Run the source until ``until(readings)`` holds, then cancel it; returns everything it emitted."""
    readings: list[Reading] = []
    changed = asyncio.Event()

    async def emit(batch: Sequence[Reading]) -> None:
        readings.extend(batch)
        changed.set()

    task = asyncio.create_task(source.run(emit), name="modbus-source-under-test")
    try:
        async with asyncio.timeout(limit):
            while not until(readings):
                changed.clear()
                await changed.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return readings


async def test_a_killed_and_restarted_server_is_recovered(tmp_path: Path, port: int) -> None:
    with structlog.testing.capture_logs() as logs:
        source = make_source(
            tmp_path,
            host="127.0.0.1",
            port=port,
            backoff_max="200ms",
            devices=[{"name": "d1", "interval": "50ms", "timeout": "300ms"}],
            tags=[{"name": "a", "address": 0}],
        )
        server = Plc(port, sim_device())
        await server.start()
        phase = {"n": 0}

        async def restart_when_needed(readings: Sequence[Reading]) -> None:
            if phase["n"] == 0 and any(r.quality is Quality.GOOD for r in readings):
                phase["n"] = 1
                await server.stop()
            elif phase["n"] == 1 and any(r.quality is Quality.BAD for r in readings):
                phase["n"] = 2
                await server.start()

        readings: list[Reading] = []

        recovered = asyncio.Event()

        async def emit(batch: Sequence[Reading]) -> None:
            readings.extend(batch)
            await restart_when_needed(batch)
            if phase["n"] == 2 and batch[-1].quality is Quality.GOOD:
                recovered.set()

        task = asyncio.create_task(source.run(emit), name="modbus-source-under-test")
        try:
            async with asyncio.timeout(20):
                await recovered.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await server.stop()
    qualities = [r.quality for r in readings]
    first_bad = qualities.index(Quality.BAD)
    assert Quality.GOOD in qualities[:first_bad] and Quality.GOOD in qualities[first_bad:]
    bad = readings[first_bad]
    assert bad.value is None and bad.reason
    events = [entry["event"] for entry in logs]
    assert events.count("device down") == 1
    assert events.count("device recovered") == 1
    assert source.ctx.status.state is State.STOPPED or source.ctx.status.state is State.UP


@contextlib.asynccontextmanager
async def black_hole(port: int) -> AsyncIterator[None]:
    """A TCP server that accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", port)
    try:
        yield
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_dead_device_does_not_delay_the_others(tmp_path: Path, port: int) -> None:
    from tests.conftest import free_port

    silent_port, refused_port = free_port(), free_port()
    source = make_source(
        tmp_path,
        host="127.0.0.1",
        port=port,
        backoff_max="1s",
        devices=[
            {"name": "good", "interval": "50ms", "timeout": "1s"},
            {"name": "silent", "port": silent_port, "interval": "50ms", "timeout": "400ms"},
            {"name": "refused", "port": refused_port, "interval": "50ms", "timeout": "400ms"},
        ],
        tags=[
            {"name": "g", "device": "good", "address": 0},
            {"name": "s", "device": "silent", "address": 0},
            {"name": "r", "device": "refused", "address": 0},
        ],
    )
    status = source.ctx.status

    def enough(_: list[Reading]) -> bool:
        return (
            status.counters.get("silent.failures", 0) >= 2 and status.counters.get("refused.failures", 0) >= 2
        )

    async with plc(port), black_hole(silent_port):
        readings = await run_source(source, enough)
    good = [r for r in readings if r.tag == "g"]
    # each silent attempt waits a whole timeout (400 ms = 8 intervals); the good device kept polling meanwhile
    assert status.counters["good.polls"] >= 6
    assert all(r.quality is Quality.GOOD for r in good)
    silent = [r for r in readings if r.tag == "s"]
    assert silent and all(r.quality is Quality.BAD and r.value is None for r in silent)
    assert "no answer" in (silent[0].reason or "")
    refused = [r for r in readings if r.tag == "r"]
    assert refused and "cannot connect" in (refused[0].reason or "")


async def test_overruns_skip_slots_instead_of_piling_up(tmp_path: Path, port: int) -> None:
    source = make_source(
        tmp_path,
        host="127.0.0.1",
        port=port,
        devices=[{"name": "d1", "interval": "20ms"}],
        tags=[{"name": "a", "address": 0}],
    )

    three_polls = asyncio.Event()

    async def slow_emit(batch: Sequence[Reading]) -> None:
        await asyncio.sleep(0.1)  # a consumer five intervals slow
        if loop.polls >= 3:
            three_polls.set()

    connections, pollers = source._build()
    loop = DeviceLoop(pollers[0], source.ctx.status, source.ctx.log, 1.0, lambda *_: None)
    async with plc(port):
        task = asyncio.create_task(loop.run(slow_emit), name="device-loop-under-test")
        try:
            async with asyncio.timeout(10):
                await three_polls.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            connections[0].close()
    assert loop.overruns >= loop.polls - 1 > 0


def test_slots_after_an_outage_stay_on_the_grid(tmp_path: Path) -> None:
    source = make_source(
        tmp_path, host="h", devices=[{"name": "d1", "interval": 2}], tags=[{"name": "a", "address": 0}]
    )
    _, pollers = source._build()
    loop = DeviceLoop(pollers[0], source.ctx.status, source.ctx.log, 30.0, lambda *_: None)
    assert loop._slot_after(10.0, 9.0) == 10.0
    assert loop._slot_after(10.0, 10.5) == 12.0
    assert loop._slot_after(10.0, 17.0) == 18.0


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"tags": [{"name": "x", "table": "coil", "type": "float32", "address": 0}]},
            "a coil table holds single",
        ),
        ({"tags": [{"name": "x", "address": 0, "bit": 3}]}, "`bit` needs type = 'bit'"),
        ({"tags": [{"name": "x", "address": 0, "type": "bit"}]}, "needs `bit = N`"),
        ({"tags": [{"name": "x", "address": 0, "type": "string"}]}, "needs `length`"),
        ({"tags": [{"name": "x", "address": 0, "device": "nope"}]}, "refers to device 'nope'"),
        (
            {"tags": [{"name": "x", "address": 0, "type": "int32", "order": "AB"}]},
            "does not fit type 'int32'",
        ),
        ({"tags": [{"name": "x", "address": 0, "type": "bool"}]}, "use type = 'bit'"),
        (
            {"tags": [{"name": "x", "address": 0, "type": "string", "length": 4, "scale": 2}]},
            "scale and offset",
        ),
        ({"address_base": 1, "tags": [{"name": "x", "address": 30001}]}, "Modicon number of another table"),
        ({"address_base": 1, "tags": [{"name": "x", "address": 0}]}, "address 0 does not exist"),
        ({"tags": [{"name": "x", "address": 65535, "type": "uint32"}]}, "runs past 65535"),
        ({"transport": "rtu"}, "needs serial_port"),
        ({"devices": [{"name": "d", "order": "ABCDEFGH"}]}, "device order"),
    ],
)
def test_config_errors_say_what_to_fix(section: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"type": "modbus", "name": "plc", "host": "10.0.0.1", "devices": [{"name": "d"}]}
    with pytest.raises(ValidationError, match=message):
        ModbusSourceConfig.model_validate({**base, **section})


def test_address_base_one_accepts_manual_and_modicon_numbers() -> None:
    base: dict[str, Any] = {
        "type": "modbus",
        "name": "plc",
        "host": "h",
        "address_base": 1,
        "devices": [{"name": "d"}],
    }
    tags = [
        {"name": "hr", "address": 40001},
        {"name": "hr6", "address": 400010},
        {"name": "ir", "address": 30002, "table": "input_register"},
        {"name": "di", "address": 10001, "table": "discrete_input", "type": "bool"},
        {"name": "co", "address": 5, "table": "coil", "type": "bool"},
        {"name": "plain", "address": 100},
    ]
    config = ModbusSourceConfig.model_validate({**base, "tags": tags})
    assert [t.protocol_address(1) for t in config.tags] == [0, 9, 1, 0, 4, 99]


def test_the_sample_config_is_valid() -> None:
    import tomllib

    from plugins.modbus import SPEC

    text = SPEC.sample_text()
    assert text is not None
    section = tomllib.loads(text)["sources"][0]
    config = ModbusSourceConfig.model_validate(section)
    assert len(config.devices) == 2 and len(config.tags) == 6


async def test_a_unit_unreachable_behind_a_gateway_backs_off_alone(tmp_path: Path, port: int) -> None:
    from pymodbus.constants import ExcCodes

    async def target_gone(*_: Any) -> ExcCodes:
        return ExcCodes.GATEWAY_NO_RESPONSE

    behind = SimDevice(
        id=9, simdata=[SimData(0, values=[1, 2], datatype=DataType.REGISTERS)], action=target_gone
    )
    source = make_source(
        tmp_path,
        host="127.0.0.1",
        port=port,
        backoff_max="1s",
        devices=[
            {"name": "here", "unit": 1, "interval": "20ms"},
            {"name": "gone", "unit": 9, "interval": "20ms"},
        ],
        tags=[{"name": "h", "device": "here", "address": 0}, {"name": "g", "device": "gone", "address": 0}],
    )
    status = source.ctx.status

    def enough(_: list[Reading]) -> bool:
        return status.counters.get("gone.failures", 0) >= 2 and status.counters.get("here.polls", 0) >= 10

    server = ModbusTcpServer([sim_device(unit=1), behind], address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        readings = await run_source(source, enough)
    finally:
        await server.shutdown()
    assert all(r.quality is Quality.GOOD for r in readings if r.tag == "h")
    gone = [r for r in readings if r.tag == "g"]
    assert gone and all(r.quality is Quality.BAD for r in gone)
    assert gone[0].reason == "unit 9 unreachable: gateway target device failed to respond"
    # the gone unit retries on its backoff, not on every 20 ms slot
    assert status.counters["gone.failures"] < status.counters["here.polls"]
