"""The byte-order assistant: which order makes a register pair look like a real measurement. Pure.

A wrong byte order decodes silently: a float32 of 41.5 sent ABCD (``0x4226 0x0000``) read as CDAB is
``0x00004226``, a subnormal near 2e-41; the same value read BADC is 6.7e-16. Real process values are
neither subnormal, nor NaN, nor beyond 1e9 in magnitude, so a value that is any of these was probably
decoded in the wrong order. ``judge`` decodes the raw registers in every order of the type's width and
says which orders give a plausible value and which one looks right; ``scan`` does the same over a whole
register block, for ``edge-agent modbus-scan``, when the type is not known either.

Integers have no impossible bit patterns, so for them "plausible" means small: a 32-bit value whose
other order is at least 2**16 times smaller (``0x04D2 0x0000`` is 80871424 as ABCD, 1234 as CDAB).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from plugins.modbus.decode import FLOAT_TYPES, ORDERS, WIDTH_BYTES, Codec

HUGE = 1e9
"""Floats beyond this magnitude are not process values (a wrong order spreads the exponent byte)."""
TINY = 1e-9
"""Non-zero floats below this magnitude are not process values either (subnormals are far below it)."""
INT_RATIO = 2**16
"""An integer is implausible when another order gives a value at least this many times smaller."""
_FLOAT32_MIN_NORMAL = 1.1754943508222875e-38
_FLOAT64_MIN_NORMAL = 2.2250738585072014e-308
# Between equally plausible orders, the more common layout wins: word swap (CDAB) is the usual
# misconfiguration in the field, a byte swap inside each register (BADC) the rarest.
_PRIOR = ("ABCD", "CDAB", "DCBA", "BADC")
_TO_32 = {"ABCDEFGH": "ABCD", "BADCFEHG": "BADC", "GHEFCDAB": "CDAB", "HGFEDCBA": "DCBA"}
CHECKED_TYPES = frozenset({"float32", "float64", "int32", "uint32", "int64", "uint64"})


def decode_as(dtype: str, order: str, registers: Sequence[int]) -> float | int:
    """The value of ``registers`` (16-bit words as they came off the wire) as ``dtype`` in ``order``."""
    value = Codec(dtype, order).decode_registers(registers)
    assert isinstance(value, int | float)
    return value


def float_problem(dtype: str, value: float) -> str | None:
    """Why a float is not a plausible measurement (NaN, infinite, subnormal, huge, tiny), or None."""
    if math.isnan(value):
        return "a NaN pattern"
    if math.isinf(value):
        return "infinite"
    size = abs(value)
    if size == 0.0:
        return None
    if size < (_FLOAT32_MIN_NORMAL if dtype == "float32" else _FLOAT64_MIN_NORMAL):
        return "subnormal"
    if size > HUGE:
        return f"huge magnitude ({value:.3g})"
    if size < TINY:
        return f"tiny magnitude ({value:.3g})"
    return None


@dataclass(frozen=True)
class Verdict:
    """What the registers of one tag decode to in every order, and which order looks right.

    Attributes:
        dtype: the tag's type.
        configured: the order the tag is read with.
        values: order -> decoded value, for every order of the type's width.
        problems: order -> why its value is implausible (orders with a plausible value are absent).
        best: the order that looks right, or None when no order gives a plausible value.
    """

    dtype: str
    configured: str
    values: dict[str, float | int]
    problems: dict[str, str]
    best: str | None

    @property
    def suspicious(self) -> bool:
        """The configured order gives an implausible value (and is then probably wrong)."""
        return self.configured in self.problems

    @property
    def plausible(self) -> list[str]:
        return [o for o in self.values if o not in self.problems]

    def describe(self) -> str:
        """One line per order, the configured and the suggested ones marked."""
        lines = []
        for order, value in self.values.items():
            marks = [
                m
                for m, on in (("configured", order == self.configured), ("looks right", order == self.best))
                if on
            ]
            why = self.problems.get(order)
            text = f"{value:.6g}" if isinstance(value, float) else str(value)
            lines.append(
                f"{order:<9} {text:>16}  {why or 'plausible'}" + (f"  <- {', '.join(marks)}" if marks else "")
            )
        return "\n".join(lines)


def _rank(dtype: str, value: float | int) -> float:
    """Smaller is more like a process value. Floats: how far the magnitude is outside 0.01 .. 10000;
    integers: the magnitude itself (a wrong order multiplies a small integer by 256 or 65536)."""
    size = abs(float(value))
    if dtype not in FLOAT_TYPES:
        return size
    if size == 0.0:
        return 0.5  # zero fits every order equally; prefer a value that says something
    return max(0.0, abs(math.log10(size) - 1.0) - 3.0)


def judge(dtype: str, configured: str, registers: Sequence[int]) -> Verdict:
    """Decode ``registers`` as ``dtype`` in every order of its width; say which orders are plausible.

    Raises:
        ValueError: ``dtype`` has no byte order to judge (see ``CHECKED_TYPES``), or the register count
            does not match the type.
    """
    if dtype not in CHECKED_TYPES:
        raise ValueError(f"type {dtype!r} has no byte order to judge; use one of {sorted(CHECKED_TYPES)}")
    width = WIDTH_BYTES[dtype]
    if len(registers) != width // 2:
        raise ValueError(f"{dtype} needs {width // 2} registers, got {len(registers)}")
    values = {order: decode_as(dtype, order, registers) for order in ORDERS[width]}
    problems: dict[str, str] = {}
    if dtype in FLOAT_TYPES:
        for order, value in values.items():
            why = float_problem(dtype, float(value))
            if why is not None:
                problems[order] = why
    else:
        smallest = min(abs(int(v)) for v in values.values())
        for order, value in values.items():
            if abs(int(value)) >= INT_RATIO * max(smallest, 1):
                problems[order] = f"{abs(int(value)) // max(smallest, 1):,}x another order's magnitude"
    plausible = [o for o in values if o not in problems]
    best = None
    if configured in plausible:
        best = configured  # only an implausible value calls the configured order into question
    elif plausible:
        best = min(plausible, key=lambda o: (_rank(dtype, values[o]), _PRIOR.index(_TO_32.get(o, o))))
    return Verdict(dtype, configured, values, problems, best)


@dataclass(frozen=True)
class Guess:
    """One stretch of a scanned block: the type and order that make it look like a value."""

    offset: int
    dtype: str
    order: str
    value: float | int
    note: str

    @property
    def count(self) -> int:
        return WIDTH_BYTES[self.dtype] // 2


def _float_guess(block: Sequence[int], offset: int) -> Guess | None:
    pair = block[offset : offset + 2]
    if len(pair) < 2 or not any(pair):
        return None
    verdict = judge("float32", "", pair)
    if verdict.best is None:
        return None
    others = [o for o in verdict.plausible if o != verdict.best]
    note = (
        f"a float; also plausible: {', '.join(others)}"
        if others
        else "the only order giving a plausible float"
    )
    return Guess(offset, "float32", verdict.best, verdict.values[verdict.best], note)


def scan(block: Sequence[int]) -> list[Guess]:
    """Walk a register block and guess, left to right, what each stretch holds.

    A pair whose float32 decoding is plausible in some order is a float32 in the best of them; a
    zero register next to a non-zero one is the high (or low) word of a 32-bit integer; anything else is
    a uint16 (an int16 when it reads as a small negative number).
    """
    out: list[Guess] = []
    offset = 0
    while offset < len(block):
        guess = _float_guess(block, offset)
        pair = block[offset : offset + 2]
        if guess is None and len(pair) == 2 and (pair[0] == 0) != (pair[1] == 0) and max(pair) > 0:
            order = "ABCD" if pair[0] == 0 else "CDAB"
            guess = Guess(
                offset, "uint32", order, decode_as("uint32", order, pair), "a 32-bit integer, one word zero"
            )
        if guess is None:
            word = block[offset]
            signed = struct.unpack(">h", struct.pack(">H", word))[0]
            dtype = "int16" if -1000 <= signed < 0 else "uint16"
            guess = Guess(offset, dtype, "AB", signed if dtype == "int16" else word, "a 16-bit word")
        out.append(guess)
        offset += guess.count
    return out


def common_order(verdicts: Sequence[Verdict]) -> str | None:
    """The order every suspicious 32/64-bit tag's best guess agrees on (in the 32-bit vocabulary), if any."""
    bests = {_TO_32.get(v.best, v.best) for v in verdicts if v.suspicious and v.best is not None}
    return bests.pop() if len(bests) == 1 else None
