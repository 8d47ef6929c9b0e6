"""One request's answer decoded by one ``struct`` call into a ``ReadingBatch`` (issue 17). Pure.

``compile_request`` looks at a register request once, when the plan is made: if every tag is a plain
number (int16 .. uint64, float32, float64) and no two tags overlap, the block's layout becomes one
precompiled big-endian ``struct.Struct`` with pad bytes for the holes. Tags in other byte orders (word
swap ``CDAB``, byte swap ``BADC``, little-endian ``DCBA``..., mixed freely) are first put in big-endian
order by one permutation of the whole block's bytes, also precompiled. Anything else (bit fields,
strings, overlapping tags) gets ``None`` and stays on the per-tag ``Codec`` path, which is the
reference: a batch holds exactly the values that path would give.

Bit requests (coils, discrete inputs) always compile: their values are the answer's bits.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.batch import BatchLayout, ReadingBatch
from plugins.modbus.decode import FLOAT_TYPES, INT_TYPES, Codec
from plugins.modbus.planner import Request

_CODE = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}
_CODE.update({"int64": "q", "uint64": "Q", "float64": "d"})


@dataclass(frozen=True, slots=True)
class RequestDecoder:
    """Decodes the answer of one request into a batch, or says it cannot (the caller goes per tag).

    Attributes:
        layout: the request's tags, in the request's slot order.
        unpack_from: the block's precompiled ``struct`` unpacker; None for a bit request.
        permute: puts the answer's bytes in big-endian order per tag; None when they already are.
        offsets: for a bit request, each tag's bit in the answer.
        checked: indices whose value must be finite (floats, and scaled values) for a batch.
        scaled: ``(index, scale, offset)`` of the tags with an engineering conversion.
    """

    layout: BatchLayout
    unpack_from: Callable[[bytes, int], tuple[int | float, ...]] | None
    permute: Callable[[bytes], tuple[int, ...]] | None = None
    offsets: tuple[int, ...] = ()
    checked: tuple[int, ...] = ()
    scaled: tuple[tuple[int, float, float], ...] = ()

    def __call__(self, data: bytes | Sequence[int] | Sequence[bool], ts: float) -> ReadingBatch | None:
        """The batch of the answer ``data`` (register wire bytes, or the bits) read at ``ts``; None
        when a value is not finite, so the per-tag path marks it BAD (``not_finite``)."""
        if self.unpack_from is None:
            return ReadingBatch(self.layout, ts, [bool(data[o]) for o in self.offsets])
        assert isinstance(data, bytes)
        if self.permute is not None:
            data = bytes(self.permute(data))
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
        return RequestDecoder(layout, None, None, tuple(s.address - request.address for s in request.slots))
    used = [codecs[s.name] for s in request.slots]
    if any(c.dtype not in INT_TYPES and c.dtype not in FLOAT_TYPES for c in used):
        return None
    fmt = [">"]
    perm = list(range(2 * request.count))  # big-endian byte k of the block is wire byte perm[k]
    end = request.address
    for slot, codec in zip(request.slots, used, strict=True):
        if slot.address < end:
            return None  # overlapping tags: one format cannot read the same bytes twice
        if slot.address > end:
            fmt.append(f"{2 * (slot.address - end)}x")
        fmt.append(_CODE[codec.dtype])
        start = 2 * (slot.address - request.address)
        for j in range(len(codec.order)):  # value byte j (A = most significant) is at order.index(A + j)
            perm[start + j] = start + codec.order.index(chr(65 + j))
        end = slot.address + slot.count
    scaled = tuple((i, c.scale, c.offset) for i, c in enumerate(used) if c.scale != 1.0 or c.offset != 0.0)
    checked = tuple(i for i, c in enumerate(used) if c.is_float or c.scale != 1.0 or c.offset != 0.0)
    unpack_from = struct.Struct("".join(fmt)).unpack_from
    permute = None if perm == list(range(len(perm))) else operator.itemgetter(*perm)
    return RequestDecoder(layout, unpack_from, permute, (), checked, scaled)
