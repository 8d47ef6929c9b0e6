"""Decoded data changes (``fastpublish.Changes``) as readings (issue 17). Pure.

A notification whose items all share one good status, one numeric or boolean type, finite values,
known client handles and one timestamp (a server publishing one scan: the usual case) becomes one
``ReadingBatch``; its layout (the tags of those handles) is kept for the next notification of the
same items. Anything else becomes one ``Reading`` per item through ``status.reading_of``, the rule
asyncua-decoded values follow, so both paths give equal readings for equal notifications.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from itertools import repeat

from asyncua.ua.uatypes import MAX_FILETIME_EPOCH_AS_UTC_DATETIME, MAX_OPC_FILETIME

from agent.batch import BatchLayout, ReadingBatch
from agent.records import Reading
from plugins.opcua.fastpublish import Changes
from plugins.opcua.status import reading_of

_UNIX_TICKS = 116_444_736_000_000_000  # 1970-01-01 in DateTime ticks (100 ns since 1601)
_TICKS_1700 = (dt.datetime(1700, 1, 1) - dt.datetime(1601, 1, 1)) // dt.timedelta(microseconds=1) * 10
_MAX_EPOCH = (MAX_FILETIME_EPOCH_AS_UTC_DATETIME - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds()
_FLOATS = frozenset({10, 11})  # Variant Float, Double
_LAYOUTS = 256  # distinct item sets remembered per subscription; more and the memory starts over


def stamp(ticks: int) -> float | None:
    """Seconds since 1970 for DateTime ``ticks``, exactly as asyncua's datetime and
    ``status._epoch`` give them (microseconds, truncated); ``None`` for "no timestamp" (before 1700)."""
    if ticks < _TICKS_1700:
        return None
    if ticks >= MAX_OPC_FILETIME:
        return _MAX_EPOCH
    return ((ticks - _UNIX_TICKS) // 10) / 1e6


class ChangeReader:
    """Readings from the ``Changes`` of one subscription whose client handles name tags in ``tags``.

    ``tags`` is the subscription's live map; a handle, once given a tag, keeps it (new items get new
    handles), which is what makes a remembered layout safe. An unknown handle's item is skipped, as
    asyncua's own subscription skips it.
    """

    def __init__(self, tags: dict[int, str]) -> None:
        self.tags = tags
        self._layouts: dict[tuple[int, ...], BatchLayout] = {}

    def __call__(self, changes: Changes, now: float) -> Sequence[Reading]:
        """The readings of ``changes``; ``now`` stands in for an item with neither timestamp."""
        batch = self._batch(changes, now)
        return batch if batch is not None else self._each(changes, now)

    def _batch(self, changes: Changes, now: float) -> ReadingBatch | None:
        n = len(changes.handles)
        if not n or not changes.vtype or (changes.codes is not None and changes.codes.count(0) != n):
            return None
        ts = _one_stamp(changes, n, now)
        if ts is None:
            return None
        values: Sequence[int | float | bool] = changes.values
        if changes.vtype in _FLOATS:
            if not all(map(math.isfinite, values)):
                return None
        elif changes.vtype != 1:  # integers are carried as float, as status.convert does
            values = list(map(float, values))
        layout = self._layout(changes.handles)
        return None if layout is None else ReadingBatch(layout, ts, values)

    def _layout(self, handles: tuple[int, ...]) -> BatchLayout | None:
        layout = self._layouts.get(handles)
        if layout is None:
            tags = [self.tags.get(h) for h in handles]
            if None in tags:
                return None
            if len(self._layouts) >= _LAYOUTS:
                self._layouts.clear()
            layout = self._layouts[handles] = BatchLayout(tags)  # type: ignore[arg-type]  # no None left
        return layout

    def _each(self, changes: Changes, now: float) -> list[Reading]:
        out: list[Reading] = []
        tags = self.tags
        codes = changes.codes or repeat(0)
        source = changes.source or repeat(0)
        server = changes.server or repeat(0)
        for handle, raw, code, src, srv in zip(
            changes.handles, changes.values, codes, source, server, strict=False
        ):
            tag = tags.get(handle)
            if tag is not None:
                out.append(reading_of(tag, stamp(src) or stamp(srv) or now, code, raw))
        return out


def _one_stamp(changes: Changes, n: int, now: float) -> float | None:
    """The timestamp every item has (source, else server, else ``now``), or ``None`` when they differ."""
    for column in (changes.source, changes.server):
        if column is None:
            continue
        first = column[0]
        if column.count(first) != n:
            return None
        ts = stamp(first)
        if ts:
            return ts
    return now
