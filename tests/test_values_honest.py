"""Values are what they claim (issue 11 item 8): answers that do not fit the request, and non-finite values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import structlog
from asyncua import ua

from agent.records import Quality, Reading, numeric
from agent.stream.windows import TimeWindower
from plugins.opcua.status import reading
from tests.modbus_liar import Liar, registers
from tests.opcua_server import plant_server
from tests.test_modbus_source import make_source, run_source
from tests.test_opcua_source import Collector, plant_tags, running
from tests.test_opcua_source import make_source as opcua_source

SIZE = 10  # the liar's holding table: addresses 0-9


def jsmodbus(unit: int, function: int, address: int, count: int) -> bytes:
    """Answers FC 3 with the registers that exist: a read past the end gets fewer, well formed."""
    return registers(function, [address + i for i in range(count) if address + i < SIZE])


def gateway(unit: int, function: int, address: int, count: int) -> bytes:
    """Answers every read with FC 4 (input registers), as a misconfigured gateway does."""
    return registers(4, [7] * count)


def modbus(tmp_path, port: int, addresses: list[int]):  # type: ignore[no-untyped-def]
    return make_source(
        tmp_path,
        host="127.0.0.1",
        port=port,
        devices=[{"name": "d", "unit": 1, "interval": "20ms", "max_gap": 16}],
        tags=[{"name": f"t{a}", "address": a} for a in addresses],
    )


async def test_a_wrong_function_code_in_the_answer_is_bad(tmp_path, port: int) -> None:  # type: ignore[no-untyped-def]
    source = modbus(tmp_path, port, [0, 1])
    async with Liar(port, gateway):
        got = await run_source(source, lambda rs: len(rs) >= 6)
    assert got and all(r.quality is Quality.BAD for r in got), got[:2]
    assert got[0].reason == "answered function 4 to a function 3 read"


async def test_a_short_answer_fences_off_only_its_tag(tmp_path, port: int) -> None:  # type: ignore[no-untyped-def]
    source = modbus(tmp_path, port, [0, 1, 12])  # 12 is past the end: one block 0-12 gets 10 registers
    status = source.ctx.status
    with structlog.testing.capture_logs() as logs:
        async with Liar(port, jsmodbus):
            got = await run_source(source, lambda rs: sum(r.tag == "t0" for r in rs) >= 10)
    by_tag = {t: [r for r in got if r.tag == t] for t in ("t0", "t1", "t12")}
    assert all(r.quality is Quality.GOOD for r in by_tag["t0"] + by_tag["t1"])
    assert [r.value for r in by_tag["t1"]][-1] == 1.0
    assert by_tag["t12"] and all(r.quality is Quality.BAD for r in by_tag["t12"])
    assert by_tag["t12"][0].reason == "answered 0 registers to a read of 1 at 12"
    assert status.state.value == "up" and status.counters.get("d.failures", 0) == 0
    assert [e["event"] for e in logs].count("tags refused by the device, now read alone") == 1


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_good_non_finite_opcua_value_is_bad(value: float) -> None:
    got = reading("v", ua.DataValue(ua.Variant(value, ua.VariantType.Double)), now=1.0)
    assert got.quality is Quality.BAD and got.value is None
    assert got.reason == f"not a finite number: {value}"
    uncertain = ua.DataValue(ua.Variant(value, ua.VariantType.Float), StatusCode=ua.StatusCode(0x40000000))
    assert reading("v", uncertain, now=1.0).quality is Quality.BAD


def arrived(got: Collector, value: float):  # type: ignore[no-untyped-def]
    def check() -> bool:
        r = got.latest("v0")
        if r is None:
            return False
        return r.value == value if math.isfinite(value) else r.reason == f"not a finite number: {value}"

    return check


async def test_non_finite_values_from_a_real_opcua_server_are_bad(tmp_path, port: int) -> None:  # type: ignore[no-untyped-def]
    async with plant_server(port) as plant:
        source, got = opcua_source(port, tmp_path, plant_tags("Line1.V0")), Collector()
        async with running(source.run(got)):
            await got.wait_for(lambda: got.latest("v0") is not None)
            for value in (math.inf, 5.0, math.nan):
                await plant.set_one(0, value)
                await got.wait_for(arrived(got, value))
    bad = [r for r in got.readings if r.quality is Quality.BAD]
    assert {r.reason for r in bad} == {"not a finite number: inf", "not a finite number: nan"}


def test_inf_is_not_coverage_in_windows() -> None:
    assert numeric(Reading("a", 0.0, math.inf)) is None  # the rule for any source, also third-party ones
    w = TimeWindower(n_tags=1, length=5, hop=5, period=1, max_age=3)
    for t in range(3, 12):
        w.add(0, float(t), math.inf if t % 2 else 1.0, 0.0)
    (window,) = w.take()
    assert not np.isinf(window.values).any()
    assert window.coverage()[0] == pytest.approx(0.6)  # rows 6, 8, 10 of 6-10 held a finite value
