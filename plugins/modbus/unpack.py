"""One request's answer decoded by one ``struct`` call into a ``ReadingBatch`` (issue 17). Pure.

``compile_request`` looks at a register request once, when the plan is made: if every tag is a plain
number (int16 .. uint64, float32, float64) in one byte order that ``struct`` expresses for the whole
block (all big-endian orders ``AB``/``ABCD``/``ABCDEFGH``, or all fully reversed ``BA``/``DCBA``/
``HGFEDCBA``) and no two tags overlap, the block's layout becomes one precompiled ``struct.Struct``
with pad bytes for the holes. Anything else (word swaps, byte swaps inside words, mixed orders, bit
fields, strings, overlapping tags) gets ``None`` and stays on the per-tag ``Codec`` path, which is the
reference: a batch holds exactly the values that path would give.

Bit requests (coils, discrete inputs) always compile: their values are the answer's bits.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.batch import BatchLayout, ReadingBatch
from plugins.modbus.decode import FLOAT_TYPES, INT_TYPES, Codec
from plugins.modbus.planner import Request

_CODE = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}
_CODE.update({"int64": "q", "uint64": "Q", "float64": "d"})
_BIG = frozenset({"AB", "ABCD", "ABCDEFGH"})
_LITTLE = frozenset({"BA", "DCBA", "HGFEDCBA"})


@dataclass(frozen=True, slots=True)
class RequestDecoder:
    """Decodes the answer of one request into a batch, or says it cannot (the caller goes per tag).

    Attributes:
        layout: the request's tags, in the request's slot order.
        unpack_from: the block's precompiled ``struct`` unpacker; None for a bit request.
        offsets: for a bit request, each tag's bit in the answer.
        checked: indices whose value must be finite (floats, and scaled values) for a batch.
        scaled: ``(index, scale, offset)`` of the tags with an engineering conversion.
    """

    layout: BatchLayout
    unpack_from: Callable[[bytes, int], tuple[int | float, ...]] | None
    offsets: tuple[int, ...] = ()
    checked: tuple[int, ...] = ()
    scaled: tuple[tuple[int, float, float], ...] = ()

    def __call__(self, data: bytes | Sequence[int] | Sequence[bool], ts: float) -> ReadingBatch | None:
        """The batch of the answer ``data`` (register wire bytes, or the bits) read at ``ts``; None
        when a value is not finite, so the per-tag path marks it BAD (``not_finite``)."""
        if self.unpack_from is None:
            return ReadingBatch(self.layout, ts, [bool(data[o]) for o in self.offsets])
        assert isinstance(data, bytes)
        values: Sequence[int | float] = self.unpack_from(data, 0)
        if self.scaled:
            values = list(values)
            for i, scale, offset in self.scaled:
                values[i] = values[i] * scale + offset
        checked = self.checked
        if checked:
            # One C-level sum finds a NaN or an infinity among them (a sum that merely overflows is
            # checked value by value, and passes).
            total = sum(values) if len(checked) == len(values) else sum([values[i] for i in checked])
            if total - total != 0.0 and any(values[i] - values[i] != 0.0 for i in checked):
                return None
        return ReadingBatch(self.layout, ts, values)


def compile_request(request: Request, codecs: dict[str, Codec]) -> RequestDecoder | None:
    """The one-call decoder of ``request``, or None when one ``struct`` format cannot express it."""
    layout = BatchLayout(s.name for s in request.slots)
    if request.is_bits:
        return RequestDecoder(layout, None, tuple(s.address - request.address for s in request.slots))
    used = [codecs[s.name] for s in request.slots]
    if any(c.dtype not in INT_TYPES and c.dtype not in FLOAT_TYPES for c in used):
        return None
    orders = {c.order for c in used}
    if orders <= _BIG:
        fmt = [">"]
    elif orders <= _LITTLE:
        fmt = ["<"]
    else:
        return None
    end = request.address
    for slot, codec in zip(request.slots, used, strict=True):
        if slot.address < end:
            return None  # overlapping tags: one format cannot read the same bytes twice
        if slot.address > end:
            fmt.append(f"{2 * (slot.address - end)}x")
        fmt.append(_CODE[codec.dtype])
        end = slot.address + slot.count
    scaled = tuple((i, c.scale, c.offset) for i, c in enumerate(used) if c.scale != 1.0 or c.offset != 0.0)
    checked = tuple(i for i, c in enumerate(used) if c.is_float or c.scale != 1.0 or c.offset != 0.0)
    unpack_from = struct.Struct("".join(fmt)).unpack_from
    return RequestDecoder(layout, unpack_from, (), checked, scaled)
