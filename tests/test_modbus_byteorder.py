"""The byte-order assistant: pure properties (hypothesis) and ``edge-agent modbus-scan`` on a real server."""

from __future__ import annotations

import asyncio
import math
import os
import struct
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from pymodbus.simulator import DataType, SimData

from plugins.modbus.byteorder import common_order, float_problem, judge, scan
from plugins.modbus.decode import ORDERS, Codec
from tests.conftest import free_port
from tests.test_modbus_source import plc, sim_device

REPO = str(Path(__file__).resolve().parent.parent)
# Process values: what a PLC reports (temperatures, pressures, speeds), well inside float32.
process_values = st.floats(min_value=0.01, max_value=1e5).map(
    lambda v: struct.unpack(">f", struct.pack(">f", v))[0]
)
signs = st.sampled_from([1.0, -1.0])
orders32 = st.sampled_from(ORDERS[4])


@given(process_values, signs, orders32)
def test_the_true_order_of_a_process_value_is_always_plausible(value: float, sign: float, order: str) -> None:
    registers = Codec("float32", order).encode(sign * value)
    verdict = judge("float32", order, registers)
    assert verdict.values[order] == sign * value
    assert order in verdict.plausible and not verdict.suspicious
    assert verdict.best == order  # a plausible configured order is kept


@given(process_values, signs, orders32, orders32)
def test_a_wrong_order_is_either_flagged_or_still_a_process_value(
    value: float, sign: float, true: str, configured: str
) -> None:
    registers = Codec("float32", true).encode(sign * value)
    verdict = judge("float32", configured, registers)
    if verdict.suspicious:
        assert verdict.best is not None and true in verdict.plausible
        assert verdict.best in verdict.plausible
    else:
        assert float_problem("float32", float(verdict.values[configured])) is None


@given(st.floats(min_value=0.01, max_value=1e5), orders32)
def test_a_word_swap_of_a_short_mantissa_value_is_never_plausible(value: float, true: str) -> None:
    # 41.5, 1013.25, 0.75: the low bytes are zero, so the word-swapped orders are subnormal or tiny
    short = struct.unpack(">f", struct.pack(">f", value)[:2] + b"\0\0")[0]
    verdict = judge("float32", "ABCD", Codec("float32", true).encode(short))
    swapped = {"ABCD": "CDAB", "BADC": "DCBA", "CDAB": "ABCD", "DCBA": "BADC"}
    assert true in verdict.plausible and swapped[true] in verdict.problems
    assert set(verdict.plausible) <= {
        true,
        {"ABCD": "BADC", "BADC": "ABCD", "CDAB": "DCBA", "DCBA": "CDAB"}[true],
    }


@given(st.integers(min_value=1, max_value=65535), st.sampled_from(["int32", "uint32"]), orders32)
def test_a_small_integer_in_a_wrong_order_is_flagged(value: int, dtype: str, true: str) -> None:
    registers = Codec(dtype, true).encode(value)
    for configured in ORDERS[4]:
        verdict = judge(dtype, configured, registers)
        if abs(verdict.values[configured]) >= 2**16 * value:
            assert verdict.suspicious and abs(verdict.values[verdict.best or ""]) <= value


@given(st.binary(min_size=4, max_size=4), orders32)
def test_judge_is_total_over_any_register_pair(raw: bytes, configured: str) -> None:
    registers = list(struct.unpack(">2H", raw))
    verdict = judge("float32", configured, registers)
    assert set(verdict.values) == set(ORDERS[4])
    for order, value in verdict.values.items():
        assert (order in verdict.problems) == (float_problem("float32", float(value)) is not None)
    assert verdict.describe().count("\n") == 3


def test_nan_infinite_subnormal_and_huge_are_named() -> None:
    assert float_problem("float32", math.nan) == "a NaN pattern"
    assert float_problem("float32", math.inf) == "infinite"
    assert float_problem("float32", 2.3e-41) == "subnormal"
    assert float_problem("float32", -1.48e38) == "huge magnitude (-1.48e+38)"
    assert (
        float_problem("float32", 0.0) is None
        and float_problem("float64", 1e-300) == "tiny magnitude (1e-300)"
    )


def test_a_vibration_value_read_word_swapped_is_flagged_and_fixed() -> None:
    registers = Codec("float32", "ABCD").encode(2.26)  # what the server sends
    verdict = judge("float32", "CDAB", registers)  # what the tag says
    assert verdict.suspicious and verdict.best == "ABCD"
    assert round(float(verdict.values["ABCD"]), 2) == 2.26


def test_common_order_names_the_device_wide_fix() -> None:
    a = judge("float32", "CDAB", Codec("float32", "ABCD").encode(41.5))
    b = judge("float64", "GHEFCDAB", Codec("float64", "ABCDEFGH").encode(1013.25))
    assert common_order([a, b]) == "ABCD"
    assert common_order([a, judge("float32", "ABCD", Codec("float32", "DCBA").encode(2.5))]) is None


def test_scan_finds_floats_in_their_order_integers_and_words() -> None:
    block = [
        *Codec("float32", "CDAB").encode(41.5),
        *Codec("float32", "ABCD").encode(-12.25),
        *Codec("uint32", "CDAB").encode(1234),
        1234,
        0xFFFE,
    ]
    guesses = [(g.offset, g.dtype, g.order, g.value) for g in scan(block)]
    assert guesses == [
        (0, "float32", "CDAB", 41.5),
        (2, "float32", "ABCD", -12.25),
        (4, "uint32", "CDAB", 1234),
        (6, "uint16", "AB", 1234),
        (7, "int16", "AB", -2),
    ]


async def test_modbus_scan_reads_a_real_server_and_suggests_tags(tmp_path: Path) -> None:
    port = free_port()
    values = [0] * 10 + [*Codec("float32", "CDAB").encode(41.5), *Codec("float32", "ABCD").encode(1013.25), 7]
    device = sim_device(holding=[SimData(0, values=values, datatype=DataType.REGISTERS)])
    async with plc(port, device):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "modbus-scan", f"127.0.0.1:{port}", "--address", "10", "--count", "5",
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": REPO},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = (b.decode() for b in await asyncio.wait_for(proc.communicate(), 60))
    assert proc.returncode == 0, out + err
    assert "float32 CDAB" in err and "41.5" in err and "1013.25" in err
    assert 'address = 10\ntype = "float32"\norder = "CDAB"' in out
    assert 'address = 12\ntype = "float32"\norder = "ABCD"' in out
    assert 'address = 14\ntype = "uint16"' in out


async def test_modbus_scan_against_nothing_says_so_and_exits_1(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "modbus-scan", f"127.0.0.1:{free_port()}", "--timeout", "1",
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": REPO},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = (b.decode() for b in await asyncio.wait_for(proc.communicate(), 60))
    assert proc.returncode == 1
    assert (
        err.strip()
        == f"modbus-scan: cannot connect to 127.0.0.1:{err.split(':')[-1].split()[0]} (refused or unreachable)"
    )
