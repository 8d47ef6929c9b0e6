"""Readings as wide rows: one row per reading timestamp, one cell per tag, as a windower holds them.

``RowBuilder`` is what ``edge-agent record`` and the agent's own rolling recording
(``agent.runtime.recording``) write: a tag not read at a row's instant repeats its last good value while
that value is younger than ``max_age``; a BAD reading or an older value is an empty cell, which the
replay source and ``edge-agent train`` read as BAD. Pure and synchronous.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from agent.batch import ReadingBatch, parts
from agent.records import Reading, numeric


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


class RowBuilder:
    """Turns batches of readings into wide rows ``(ts, [value or None per tag])``; see the module doc."""

    def __init__(self, tags: Sequence[str], max_age: float) -> None:
        self.index = {tag: i for i, tag in enumerate(tags)}
        self.max_age = max_age
        self.value: list[float | None] = [None] * len(tags)
        self.ts = [-math.inf] * len(tags)
        self.first: float | None = None
        self.last: float | None = None
        self.good = [0] * len(tags)  # good readings per tag, and the last reason one was not (issue 12)
        self.why: list[str | None] = [None] * len(tags)

    def never_good(self) -> list[str]:
        """``tag (why)`` for each tag that had no good reading: a recording of it would teach nothing."""
        return [f"{tag} ({self.why[i] or 'never read'})" for tag, i in self.index.items() if not self.good[i]]

    def add(self, readings: Sequence[Reading]) -> list[tuple[float, list[float | None]]]:
        """The rows ``readings`` complete, oldest first; a ``ReadingBatch`` (or a chain of them) is
        taken whole, without a ``Reading`` per value (its values are good and finite)."""
        groups: dict[float, dict[int, float | None]] = {}
        index, good = self.index, self.good
        for part in parts(readings):
            if isinstance(part, ReadingBatch):
                group = groups.setdefault(part.ts, {})
                for tag, raw in zip(part.layout.tags, part.values, strict=True):
                    i = index.get(tag)
                    if i is not None:
                        group[i] = float(raw)
                        good[i] += 1
                continue
            for r in part:
                i = index.get(r.tag)
                if i is not None:
                    value = groups.setdefault(r.ts, {})[i] = numeric(r)
                    if value is None:
                        self.why[i] = r.reason or str(r.quality)
                    else:
                        good[i] += 1
        rows = []
        for ts in sorted(groups):
            for i, value in groups[ts].items():
                self.value[i], self.ts[i] = value, ts
            row = [
                v if v is not None and ts - held <= self.max_age else None
                for v, held in zip(self.value, self.ts, strict=True)
            ]
            rows.append((ts, row))
            self.first = ts if self.first is None else min(self.first, ts)
            self.last = ts if self.last is None else max(self.last, ts)
        return rows

    @property
    def span(self) -> float:
        return 0.0 if self.first is None or self.last is None else self.last - self.first
