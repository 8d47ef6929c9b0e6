"""Replay source: reads a CSV or JSONL file and emits its rows as readings."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from agent.errors import FatalError, InputUnavailable
from agent.plugin import Emit, PluginContext, Source
from agent.records import Quality, Reading, bad
from plugins.replay.config import ReplayConfig


def parse_timestamp(raw: Any) -> float:
    """Epoch seconds from epoch seconds, epoch milliseconds (> 1e11) or ISO-8601 (UTC if no zone)."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    else:
        text = str(raw).strip()
        try:
            value = float(text)
        except ValueError:
            stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            return stamp.timestamp()
    return value / 1000.0 if value > 1e11 else value


class ReplaySource(Source):
    """Emits the rows of a recorded file; see ``ReplayConfig`` for formats and pacing."""

    config: ReplayConfig

    def __init__(self, config: ReplayConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self._columns = {(tag.column or tag.name): tag.name for tag in config.tags}
        self._fmt = config.format
        if self._fmt == "auto":
            self._fmt = "jsonl" if config.path.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"

    def _rows(self) -> Iterator[list[Reading]]:
        """Readings of each row (one timestamp) in file order."""
        # at_end = "stop" plays the file once: when it cannot be read there is nothing to wait for.
        error = InputUnavailable if self.config.at_end == "stop" else FatalError
        try:
            handle = open(self.config.path, encoding="utf-8", newline="")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise error(f"cannot open replay file {str(self.config.path)!r}: {exc.strerror}") from None
        with handle:
            if self._fmt == "csv":
                reader = csv.DictReader(handle, delimiter=self.config.delimiter)
                if reader.fieldnames is None or self.config.timestamp_column not in reader.fieldnames:
                    raise error(
                        f"{self.config.path}: no column {self.config.timestamp_column!r} "
                        f"(columns: {', '.join(reader.fieldnames or [])}); set timestamp_column"
                    )
                for lineno, row in enumerate(reader, start=2):
                    yield self._readings(row, lineno)
            else:
                for lineno, line in enumerate(handle, start=1):
                    if line.strip():
                        yield self._readings(json.loads(line), lineno)

    def _readings(self, row: dict[str, Any], lineno: int) -> list[Reading]:
        ts_key = self.config.timestamp_column if self.config.timestamp_column in row else "ts"
        try:
            ts = parse_timestamp(row[ts_key])
        except (KeyError, ValueError):
            self.ctx.status.count("bad_rows")
            return []
        if "tag" in row and "value" in row:  # long JSONL form
            name = self._columns.get(str(row["tag"]))
            return [self._reading(name, ts, row["value"])] if name else []
        return [self._reading(tag, ts, row[col]) for col, tag in self._columns.items() if col in row]

    def _reading(self, tag: str, ts: float, raw: Any) -> Reading:
        if raw is None or raw == "":
            return bad(tag, ts, "missing value")
        if isinstance(raw, bool):
            return Reading(tag, ts, raw, Quality.GOOD)
        try:
            return Reading(tag, ts, float(raw), Quality.GOOD)
        except (TypeError, ValueError):
            return bad(tag, ts, f"not a number: {str(raw)[:40]!r}")

    async def run(self, emit: Emit) -> None:
        while True:
            await self._play(emit)
            if self.config.at_end == "stop":
                self.ctx.log.info("replay finished", path=str(self.config.path))
                return
            if self.config.at_end == "idle":
                await asyncio.Event().wait()

    async def _play(self, emit: Emit) -> None:
        speed = self.config.speed
        batch: list[Reading] = []
        rows = 0
        start_wall = start_ts = None
        for readings in self._rows():
            if not readings:
                continue
            if rows == 0:
                self.ctx.mark_up()
            rows += 1
            if speed > 0:
                ts = readings[0].ts
                if start_wall is None or start_ts is None:
                    start_wall, start_ts = time.monotonic(), ts
                delay = start_wall + (ts - start_ts) / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await emit(readings)
            else:
                batch.extend(readings)
                if rows % self.config.batch == 0:
                    await emit(batch)
                    batch = []
        if batch:
            await emit(batch)
        self.ctx.status.count("rows", rows)

    async def read_once(self) -> list[Reading]:
        for readings in self._rows():
            if readings:
                return readings
        return []
