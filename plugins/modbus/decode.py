"""Register and bit decoding: every data type in every byte/word order. Pure, no protocol library.

How an order string is read: the letters name the bytes of the value in big-endian order, ``A`` being
the most significant byte; the string lists them in the order they travel on the wire, which is
register 0 high byte, register 0 low byte, register 1 high byte, and so on. So for a 32-bit value
0xAABBCCDD (bytes A=AA, B=BB, C=CC, D=DD):

    ABCD  registers [0xAABB, 0xCCDD]  big-endian bytes, most significant word first (Modbus default)
    BADC  registers [0xBBAA, 0xDDCC]  bytes swapped inside each register, words big-endian
    CDAB  registers [0xCCDD, 0xAABB]  words swapped ("word swap", low word first), bytes big-endian
    DCBA  registers [0xDDCC, 0xBBAA]  fully little-endian

The 64-bit names extend the same idea (ABCDEFGH, BADCFEHG, GHEFCDAB, HGFEDCBA), and the 16-bit ones are
AB and BA. ``Codec`` is compiled once per tag so the poll loop only slices and unpacks.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from agent.records import Value

BIT_TYPES: Final = frozenset({"bool"})
INT_TYPES: Final = frozenset({"int16", "uint16", "int32", "uint32", "int64", "uint64"})
FLOAT_TYPES: Final = frozenset({"float32", "float64"})
REGISTER_TYPES: Final = INT_TYPES | FLOAT_TYPES | {"bit", "string"}
ALL_TYPES: Final = BIT_TYPES | REGISTER_TYPES

_STRUCT: Final = {
    "int16": "h",
    "uint16": "H",
    "bit": "H",
    "int32": "i",
    "uint32": "I",
    "float32": "f",
    "int64": "q",
    "uint64": "Q",
    "float64": "d",
}
WIDTH_BYTES: Final = {"int16": 2, "uint16": 2, "bit": 2, "int32": 4, "uint32": 4, "float32": 4}
WIDTH_BYTES.update({"int64": 8, "uint64": 8, "float64": 8})

_IDENTITY: Final = frozenset({"AB", "ABCD", "ABCDEFGH"})
_REVERSED: Final = frozenset({"BA", "DCBA", "HGFEDCBA"})
ORDERS: Final = {
    2: ("AB", "BA"),
    4: ("ABCD", "BADC", "CDAB", "DCBA"),
    8: ("ABCDEFGH", "BADCFEHG", "GHEFCDAB", "HGFEDCBA"),
}
# A device-wide default order is written in the 32-bit vocabulary; this is what it means at other widths.
_FROM_32: Final = {
    2: {"ABCD": "AB", "BADC": "BA", "CDAB": "AB", "DCBA": "BA"},
    8: {"ABCD": "ABCDEFGH", "BADC": "BADCFEHG", "CDAB": "GHEFCDAB", "DCBA": "HGFEDCBA"},
}


def register_count(dtype: str, length: int = 0) -> int:
    """How many registers (or bits, for ``bool``) one value of ``dtype`` occupies."""
    if dtype == "bool":
        return 1
    if dtype == "string":
        return (length + 1) // 2
    return WIDTH_BYTES[dtype] // 2


def resolve_order(dtype: str, order: str) -> str:
    """The order to use for ``dtype`` given an order string of any width (a tag's or its device's).

    Raises:
        ValueError: the order does not name a layout of this type's width.
    """
    width = 2 if dtype == "string" else WIDTH_BYTES.get(dtype, 0)
    if width == 0:
        raise ValueError(f"type {dtype!r} has no byte order")
    if order in ORDERS[width]:
        return order
    if len(order) == 4 and width in _FROM_32 and order in _FROM_32[width]:
        return _FROM_32[width][order]
    allowed = ", ".join(ORDERS[width] + (ORDERS[4] if width != 4 else ()))
    raise ValueError(f"order {order!r} does not fit type {dtype!r}; use one of {allowed}")


@dataclass(frozen=True, slots=True)
class Codec:
    """Decodes one tag's value out of a block of registers, already compiled for its type and order.

    Attributes:
        dtype: one of ``ALL_TYPES``.
        order: a resolved order of the type's width (see ``resolve_order``); "" for ``bool``.
        bit: bit number inside the register for ``bit`` (0 = least significant).
        length: characters of a ``string``.
        scale, offset: engineering conversion ``raw * scale + offset`` for numeric types.
        decode: ``decode(data, start)`` is the value whose first register is register ``start`` of
            ``data`` (the wire bytes of a block); a closure built once, so the poll loop does no dispatch.
        is_float: the value may be NaN or infinite and must be checked.
    """

    dtype: str
    order: str = ""
    bit: int = 0
    length: int = 0
    scale: float = 1.0
    offset: float = 0.0
    decode: Callable[[bytes, int], Value] = field(init=False, repr=False, compare=False)
    is_float: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "decode", self._compile())
        object.__setattr__(self, "is_float", self.dtype in FLOAT_TYPES)

    @property
    def count(self) -> int:
        return register_count(self.dtype, self.length)

    def _compile(self) -> Callable[[bytes, int], Value]:
        size, order = self.count * 2, self.order
        if self.dtype == "string":
            return lambda data, start: _decode_string(data[2 * start : 2 * start + size], order)
        if self.dtype == "bool":
            return lambda data, start: bool(data[2 * start + 1])
        fmt = _STRUCT[self.dtype]
        unpack_from = struct.Struct(("<" if order in _REVERSED else ">") + fmt).unpack_from
        # value byte j (A=0, big-endian) sits at wire position order.index(letter j)
        pick = operator.itemgetter(*(order.index(chr(65 + j)) for j in range(size)))
        unpack = struct.Struct(">" + fmt).unpack

        def direct(data: bytes, start: int) -> Any:
            return unpack_from(data, 2 * start)[0]

        def permuted(data: bytes, start: int) -> Any:
            return unpack(bytes(pick(data[2 * start : 2 * start + size])))[0]

        raw_value = direct if order in _IDENTITY or order in _REVERSED else permuted
        if self.dtype == "bit":
            mask = 1 << self.bit
            return lambda data, start: bool(raw_value(data, start) & mask)
        if self.scale != 1.0 or self.offset != 0.0:
            scale, offset = self.scale, self.offset
            return lambda data, start: raw_value(data, start) * scale + offset
        return raw_value

    def decode_registers(self, registers: Sequence[int]) -> Value:
        """Convenience for tests and ``read_once``: decode from a list of 16-bit register values."""
        return self.decode(registers_to_bytes(registers), 0)

    def encode(self, value: Value) -> list[int]:
        """The registers a device holding ``value`` returns; the inverse of ``decode`` (scale ignored)."""
        if self.dtype == "string":
            raw = str(value).encode("utf-8")[: self.length].ljust(self.count * 2, b"\0")
            return bytes_to_registers(_swap_pairs(raw) if self.order == "BA" else raw)
        if self.dtype == "bit":
            value = (1 << self.bit) if value else 0
        packed = struct.pack(">" + _STRUCT[self.dtype], value)
        return bytes_to_registers(_permute(packed, self.order))


def registers_to_bytes(registers: Sequence[int]) -> bytes:
    """The wire bytes of a register list (each register big-endian, as Modbus sends it)."""
    return struct.pack(f">{len(registers)}H", *registers)


def bytes_to_registers(data: bytes) -> list[int]:
    return list(struct.unpack(f">{len(data) // 2}H", data))


def _permute(data: bytes, order: str) -> bytes:
    """Wire position ``i`` gets value byte ``order[i]`` (A = index 0 of the big-endian bytes)."""
    return bytes(data[ord(ch) - 65] for ch in order)


def _swap_pairs(raw: bytes) -> bytes:
    """Swap the two bytes of every register."""
    out = bytearray(raw)
    out[0::2], out[1::2] = raw[1::2], raw[0::2]
    return bytes(out)


def _decode_string(raw: bytes, order: str) -> str:
    if order == "BA":
        raw = _swap_pairs(raw)
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace").rstrip()
