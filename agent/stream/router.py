"""Readings by tag into the windows of the pipelines that use the tag (``Router``).

Imports no numpy: an agent without pipelines routes only ``last_good`` and starts without loading
numpy (issue 17, start-up). A pipeline is anything with ``tags`` and a ``windower`` (``Routed``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Protocol

from agent.batch import ReadingBatch, ReadingChain, parts
from agent.records import Quality, Reading, numeric


class Windower(Protocol):
    def add(self, i: int, ts: float, value: float, now: float) -> None: ...


class Routed(Protocol):
    """What the router needs of a pipeline: its tags in column order, and where their values go."""

    @property
    def tags(self) -> list[str]: ...
    @property
    def windower(self) -> Windower: ...


class Router:
    """Routes readings by tag to the windows of every pipeline that uses the tag.

    The one path from readings into windows, shared by the runtime and the trainer, so the rows a model
    is trained on are the rows it scores. ``last_good`` maps each tag to when its last finite value
    arrived (wall time ``now``: a PLC clock may be off), across all tags, routed or not.
    """

    def __init__(self, pipelines: Sequence[Routed], last_good: dict[str, float] | None = None) -> None:
        self.routes: dict[str, list[tuple[Routed, int]]] = {}
        for pipe in pipelines:
            for i, tag in enumerate(pipe.tags):
                self.routes.setdefault(tag, []).append((pipe, i))
        self.last_good = last_good if last_good is not None else {}

    def ingest(self, readings: Iterable[Reading], now: float | None = None) -> None:
        """Add each reading to its pipelines' windows: a BAD or non-numeric one as NaN (a gap).

        Args:
            readings: any mix of tags; tags no pipeline uses only update ``last_good``. A
                ``ReadingBatch`` (or a chain of them) is taken whole: all its values are good and finite.
            now: wall time of arrival; None takes each reading's own timestamp (replaying a recording).
        """
        if readings.__class__ is ReadingBatch or readings.__class__ is ReadingChain:
            for part in parts(readings):
                if part.__class__ is ReadingBatch:
                    self._ingest_batch(part, now)
                else:
                    self._ingest(part, now)
            return
        self._ingest(readings, now)

    def _ingest_batch(self, batch: ReadingBatch, now: float | None) -> None:
        tags, ts = batch.layout.tags, batch.ts
        arrived = ts if now is None else now
        self.last_good.update(dict.fromkeys(tags, arrived))
        routes = self.routes
        if not routes:
            return
        values = batch.values
        for i, tag in enumerate(tags):
            targets = routes.get(tag)
            if targets:
                value = float(values[i])
                for pipe, j in targets:
                    pipe.windower.add(j, ts, value, arrived)

    def _ingest(self, readings: Iterable[Reading], now: float | None) -> None:
        routes, last_good = self.routes, self.last_good
        for r in readings:
            arrived = r.ts if now is None else now
            raw = r.value
            if (raw.__class__ is float or raw.__class__ is int) and r.quality is not Quality.BAD:
                value = float(raw)  # numeric()'s answer, inline: W2's 10,000 readings a second (issue 17)
                if value - value != 0.0:  # inf or nan
                    value = math.nan
            else:
                number = numeric(r)
                value = math.nan if number is None else number
            if value == value:
                last_good[r.tag] = arrived
            targets = routes.get(r.tag)
            if targets:
                for pipe, i in targets:
                    pipe.windower.add(i, r.ts, value, arrived)
