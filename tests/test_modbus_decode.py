"""Decoding of every Modbus data type in every byte/word order: known vectors and round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.modbus.decode import ORDERS, Codec, resolve_order

# Vectors as device manuals print them (value -> registers on the wire, per order).
KNOWN = [
    # 123456789 = 0x075BCD15, the Simply Modbus / Kepware example
    ("uint32", "ABCD", [0x075B, 0xCD15], 123456789),
    ("uint32", "CDAB", [0xCD15, 0x075B], 123456789),
    ("uint32", "BADC", [0x5B07, 0x15CD], 123456789),
    ("uint32", "DCBA", [0x15CD, 0x5B07], 123456789),
    # float 123.456 = 0x42F6E979; "word swapped" energy meters send CDAB
    ("float32", "ABCD", [0x42F6, 0xE979], 123.456),
    ("float32", "CDAB", [0xE979, 0x42F6], 123.456),
    ("float32", "BADC", [0xF642, 0x79E9], 123.456),
    ("float32", "DCBA", [0x79E9, 0xF642], 123.456),
    ("float32", "CDAB", [0x0000, 0x3F80], 1.0),
    ("int32", "ABCD", [0xFFFF, 0xFFFE], -2),
    ("int32", "CDAB", [0xFFFE, 0xFFFF], -2),
    ("int16", "AB", [0xFF38], -200),
    ("int16", "BA", [0x38FF], -200),
    ("uint16", "AB", [0x1234], 0x1234),
    ("uint16", "BA", [0x3412], 0x1234),
    ("int64", "ABCDEFGH", [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
    ("int64", "BADCFEHG", [0x0201, 0x0403, 0x0605, 0x0807], 0x0102030405060708),
    ("int64", "GHEFCDAB", [0x0708, 0x0506, 0x0304, 0x0102], 0x0102030405060708),
    ("int64", "HGFEDCBA", [0x0807, 0x0605, 0x0403, 0x0201], 0x0102030405060708),
    ("uint64", "ABCDEFGH", [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], 2**64 - 1),
    ("float64", "ABCDEFGH", [0x3FF0, 0, 0, 0], 1.0),
    ("float64", "GHEFCDAB", [0, 0, 0, 0x3FF0], 1.0),
    ("float64", "HGFEDCBA", [0, 0, 0, 0xF03F], 1.0),
    ("float64", "BADCFEHG", [0xF03F, 0, 0, 0], 1.0),
    ("float64", "ABCDEFGH", [0x4005, 0xBF0A, 0x8B14, 0x5769], 2.718281828459045),
]


@pytest.mark.parametrize(("dtype", "order", "registers", "value"), KNOWN)
def test_known_vectors_decode_and_encode(dtype: str, order: str, registers: list[int], value: float) -> None:
    codec = Codec(dtype, order)
    decoded = codec.decode_registers(registers)
    if dtype.startswith("float"):
        assert decoded == pytest.approx(value, rel=1e-7)
    else:
        assert decoded == value
        assert codec.encode(value) == registers


def test_strings_in_both_byte_orders_strip_padding() -> None:
    assert Codec("string", "AB", length=6).decode_registers([0x4142, 0x4344, 0x0000]) == "ABCD"
    assert Codec("string", "BA", length=4).decode_registers([0x4241, 0x4443]) == "ABCD"
    assert Codec("string", "AB", length=4).decode_registers([0x4142, 0x2020]) == "AB"


def test_bit_of_a_register_counts_from_the_least_significant_bit() -> None:
    assert Codec("bit", "AB", bit=0).decode_registers([0x0001]) is True
    assert Codec("bit", "AB", bit=15).decode_registers([0x8000]) is True
    assert Codec("bit", "AB", bit=1).decode_registers([0x0001]) is False
    assert Codec("bit", "BA", bit=0).decode_registers([0x0100]) is True  # byte-swapped register


def test_scale_and_offset_apply_to_numbers() -> None:
    assert Codec("int16", "AB", scale=0.1, offset=-40).decode_registers([655]) == pytest.approx(25.5)


def test_a_device_order_in_the_32_bit_vocabulary_maps_to_other_widths() -> None:
    assert resolve_order("int16", "CDAB") == "AB"
    assert resolve_order("int16", "DCBA") == "BA"
    assert resolve_order("float64", "CDAB") == "GHEFCDAB"
    assert resolve_order("uint64", "BADC") == "BADCFEHG"
    with pytest.raises(ValueError, match="does not fit type 'int32'"):
        resolve_order("int32", "ABCDEFGH")


def test_decode_reads_at_an_offset_inside_a_block() -> None:
    block = [0xAAAA, 0x42F6, 0xE979, 0xBBBB]
    from plugins.modbus.decode import registers_to_bytes

    assert Codec("float32", "ABCD").decode(registers_to_bytes(block), 1) == pytest.approx(123.456, rel=1e-7)


INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
WIDTH = {
    "int16": 2,
    "uint16": 2,
    "int32": 4,
    "uint32": 4,
    "float32": 4,
    "int64": 8,
    "uint64": 8,
    "float64": 8,
}
CASES = [(dtype, order) for dtype, width in WIDTH.items() for order in ORDERS[width]]


@pytest.mark.parametrize(("dtype", "order"), CASES)
@given(data=st.data())
def test_round_trip_every_type_and_order(dtype: str, order: str, data: st.DataObject) -> None:
    codec = Codec(dtype, order)
    if dtype in INT_RANGES:
        low, high = INT_RANGES[dtype]
        value: float = data.draw(st.integers(low, high))
    else:
        value = data.draw(st.floats(width=32 if dtype == "float32" else 64, allow_nan=False))
    registers = codec.encode(value)
    assert len(registers) == WIDTH[dtype] // 2
    assert all(0 <= r <= 0xFFFF for r in registers)
    decoded = codec.decode_registers(registers)
    assert decoded == value or (math.isinf(value) and decoded == value)


@pytest.mark.parametrize("order", ["AB", "BA"])
@given(text=st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20))
def test_round_trip_strings(order: str, text: str) -> None:
    codec = Codec("string", order, length=20)
    assert codec.decode_registers(codec.encode(text)) == text


@given(bit=st.integers(0, 15), on=st.booleans(), order=st.sampled_from(["AB", "BA"]))
def test_round_trip_bits(bit: int, on: bool, order: str) -> None:
    codec = Codec("bit", order, bit=bit)
    assert codec.decode_registers(codec.encode(on)) is on
