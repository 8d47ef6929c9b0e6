"""Compact readings (issue 17): a batch of GOOD readings of one instant, and a chain of batches.

A source that reads many tags at one instant (one Modbus request's answer) hands over a
``ReadingBatch`` (its tags, one timestamp, the values) instead of one ``Reading`` per tag, and a poll
of several requests a ``ReadingChain`` of them and of plain ``Reading`` lists (BAD reads). Both are
``Sequence[Reading]``: a ``Reading`` is made only when one is looked at, so every generic consumer
works unchanged. The hot consumers (``agent.records.encode_body``, the router, the status feed, the
event-time guard) walk ``parts(readings)`` and take a batch whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, repeat
from typing import Any, overload

import orjson

from agent.records import Reading, json_rows


class BatchLayout:
    """The tags of a batch that recurs (one Modbus request, answered every poll), made once per request.

    Holds what is worth computing once for those tags: the JSON template of their rows, built the first
    time a batch of this layout is encoded (by whichever thread encodes; building it twice is harmless).
    """

    __slots__ = ("_template", "tags")

    def __init__(self, tags: Iterable[str]) -> None:
        self.tags: tuple[str, ...] = tuple(tags)
        self._template: bytes | None = None

    def template(self) -> bytes:
        """``{"tag":<tag>,"ts_ms":%d,"value":%b,"quality":"good"}`` per tag, comma-joined, for ``%``."""
        if self._template is None:
            rows = (
                b'{"tag":'
                + orjson.dumps(t).replace(b"%", b"%%")
                + b',"ts_ms":%d,"value":%b,"quality":"good"}'
                for t in self.tags
            )
            self._template = b",".join(rows)
        return self._template


class ReadingBatch(Sequence[Reading]):
    """GOOD readings of ``layout.tags`` taken at one instant ``ts``: ``values[i]`` is tag ``i``'s value.

    Contract (the maker checks, consumers rely on it): every value is a finite ``int``, ``float`` or
    ``bool``; a BAD or non-finite value is never in a batch but a plain ``Reading`` beside it. Equal to
    any sequence of the same ``Reading``s.
    """

    __slots__ = ("layout", "ts", "values")

    def __init__(self, layout: BatchLayout, ts: float, values: Sequence[int | float | bool]) -> None:
        self.layout, self.ts, self.values = layout, ts, values

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, i: int) -> Reading: ...
    @overload
    def __getitem__(self, i: slice) -> list[Reading]: ...
    def __getitem__(self, i: int | slice) -> Reading | list[Reading]:
        if isinstance(i, slice):
            return list(self)[i]
        return Reading(self.layout.tags[i], self.ts, self.values[i])

    def __iter__(self) -> Iterator[Reading]:
        return map(Reading, self.layout.tags, repeat(self.ts), self.values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable values, like a list

    def json_rows(self) -> bytes:
        """The rows as ``encode_body`` writes them, comma-joined, without building a ``Reading``."""
        if not self.values:
            return b""
        values = orjson.dumps(self.values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
        args: list[Any] = [round(self.ts * 1000)] * (2 * len(values))
        args[1::2] = values
        return self.layout.template() % tuple(args)


class ReadingChain(Sequence[Reading]):
    """Several batches or plain reading sequences as one ``Sequence[Reading]`` (one poll, one flush)."""

    __slots__ = ("_len", "parts")

    def __init__(self, parts: Iterable[Sequence[Reading]]) -> None:
        self.parts: list[Sequence[Reading]] = [p for p in parts if len(p)]
        self._len = sum(map(len, self.parts))

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> Reading: ...
    @overload
    def __getitem__(self, i: slice) -> list[Reading]: ...
    def __getitem__(self, i: int | slice) -> Reading | list[Reading]:
        if isinstance(i, slice):
            return list(self)[i]
        j = i + self._len if i < 0 else i
        if not 0 <= j < self._len:
            raise IndexError(i)
        for part in self.parts:
            if j < len(part):
                return part[j]
            j -= len(part)
        raise IndexError(i)  # pragma: no cover - the length check above already answered

    def __iter__(self) -> Iterator[Reading]:
        return chain.from_iterable(self.parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # unhashable, like a list

    def json_rows(self) -> bytes:
        """The rows of every part, comma-joined, as ``agent.records.encode_body`` writes them."""
        return b",".join(p.json_rows() if p.__class__ is ReadingBatch else json_rows(p) for p in self.parts)


def parts(readings: Sequence[Reading]) -> Sequence[Sequence[Reading]]:
    """The pieces of ``readings`` to walk: a chain's parts, else ``readings`` itself as the one piece."""
    return readings.parts if readings.__class__ is ReadingChain else (readings,)
