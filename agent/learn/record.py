"""``edge-agent record``: run a config's sources and write one pipeline's input as a wide CSV.

The CSV has a ``timestamp`` column (ISO-8601, UTC, milliseconds) and one column per pipeline tag, in the
pipeline's order. Readings sharing a timestamp share a row. A cell holds the tag's raw reading at that
instant; a tag not read at that instant repeats its last good value while that value is younger than the
window's ``max_age`` (exactly what the windower holds at that instant). A BAD reading, or a value older
than ``max_age``, is an empty cell, which the replay source and ``edge-agent train`` read as BAD.

``--duration`` is a span of *reading timestamps*: recording stops once the rows cover it. On a live PLC
that is wall time; on a fast-forwarded simulator or a replay it is the data's own time.

Interrupts: rows go to a hidden temp file beside ``--out`` as they arrive. At the end (duration reached,
every source finished, Ctrl-C or SIGTERM) the file is fsynced and renamed onto ``--out`` in one step, so an
interrupted recording keeps what was recorded, complete, and ``--out`` never holds half a file. A crash
deletes the temp file; only ``kill -9`` can leave a ``.<out>.*.tmp`` behind.

The module also holds what the ``record``, ``train`` and ``demo`` commands share: the progress bar (a bar
on a terminal, a log line every 30 s otherwise) and the SIGINT/SIGTERM-to-event bridge.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import statedir
from agent.config.load import AgentConfig
from agent.config.sections import PipelineConfig
from agent.delivery.bus import Bus
from agent.errors import ConfigError, ConfigIssue
from agent.learn.progress import ProgressBar, human, stop_on_signals
from agent.ops import logs
from agent.plugin import PluginContext, Source
from agent.registry import build
from agent.stream.rows import RowBuilder, iso
from agent.supervise import supervise

Progress = Callable[[float, int], None]
"""Called with (recorded span in seconds, rows written) after each batch."""


def find_pipeline(cfg: AgentConfig, name: str | None, file: str) -> PipelineConfig:
    """The pipeline called ``name``, or the only one when ``name`` is None; ConfigError otherwise."""
    names = [p.name for p in cfg.pipelines]
    if name is None and len(cfg.pipelines) == 1:
        return cfg.pipelines[0]
    for pipe in cfg.pipelines:
        if pipe.name == name:
            return pipe
    what = f"no pipeline {name!r}" if name else "several pipelines: say which with --pipeline"
    hint = f"; pipelines: {', '.join(names)}" if names else "; the config defines no pipeline"
    raise ConfigError(file, [ConfigIssue("pipelines", what + hint)])


class AtomicCsv:
    """A CSV written to a temp file beside ``out``; ``commit`` renames it onto ``out`` in one step."""

    def __init__(self, out: Path, header: Sequence[str]) -> None:
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        statedir.share_with_folder_group(fd, out.parent)  # readable by the service (issue 10)
        self.tmp = Path(tmp)
        self._file = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(header)
        self.rows = 0

    def write(self, ts: float, values: Sequence[float | None]) -> None:
        self._writer.writerow([iso(ts), *("" if v is None else repr(v) for v in values)])
        self.rows += 1

    def commit(self) -> Path:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.out)
        return self.out

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.tmp.unlink(missing_ok=True)


@dataclass
class RecordResult:
    path: Path | None  # None when nothing was recorded (no file written)
    rows: int
    span: float
    first: float | None
    last: float | None
    reason: str  # "duration", "sources finished", "interrupted" or "refused: no good value for TAG (why)"


def build_sources(cfg: AgentConfig, tags: Sequence[str]) -> list[tuple[Source, PluginContext]]:
    """Instances of the enabled sources that read at least one of ``tags``."""
    cfg.agent.state_dir.mkdir(parents=True, exist_ok=True)
    wanted = set(tags)
    return [
        build("source", src, cfg.agent.id, cfg.agent.state_dir)
        for src in cfg.sources
        if src.enabled and wanted & {t.name for t in src.tags}
    ]


async def record(
    cfg: AgentConfig,
    pipe: PipelineConfig,
    out: Path,
    duration: float,
    stop: asyncio.Event,
    progress: Progress | None = None,
) -> RecordResult:
    """Record ``pipe``'s input to ``out`` until ``duration`` is covered, the sources end or ``stop`` is set.

    Sources run under ``supervise`` exactly as in the runtime (one reconnect owner, logged once); the bus
    blocks instead of dropping, because a recording must not lose rows.

    Args:
        cfg: the loaded config; its enabled sources reading any of the pipeline's tags are run.
        pipe: the pipeline whose tags become the CSV columns.
        out: the CSV to write; it appears only when recording ends, complete.
        duration: seconds of reading timestamps to cover (``inf``: until ``stop`` or the sources end).
        stop: set it to end the recording early, keeping what was recorded.
        progress: called with (span covered, rows written) after each batch.

    Returns:
        What was recorded; ``path`` is None (and no file exists) when no row was.
    """
    builder = RowBuilder(pipe.tags, pipe.window.max_age_s)
    writer = AtomicCsv(out, ["timestamp", *pipe.tags])
    bus = Bus(cfg.bus.capacity, "block")
    sources = build_sources(cfg, pipe.tags)
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = []
            for source, ctx in sources:
                tasks.append(tg.create_task(_supervised(source, ctx, bus), name=f"record-source:{ctx.name}"))
            reason = await _rows(bus, builder, writer, tasks, duration, stop, progress)
            for task in tasks:
                task.cancel()
    except BaseException:
        writer.discard()
        raise
    if writer.rows == 0:
        writer.discard()
        return RecordResult(None, 0, 0.0, None, None, reason)
    if missing := builder.never_good():
        writer.discard()
        return RecordResult(
            None, writer.rows, builder.span, None, None, f"refused: no good value for {', '.join(missing)}"
        )
    path = writer.commit()
    return RecordResult(path, writer.rows, builder.span, builder.first, builder.last, reason)


async def _rows(
    bus: Bus,
    builder: RowBuilder,
    writer: AtomicCsv,
    tasks: list[asyncio.Task[None]],
    duration: float,
    stop: asyncio.Event,
    progress: Progress | None,
) -> str:
    """Write rows from the bus until the duration is covered, every source ended, or ``stop``; say which."""
    while not stop.is_set():
        item = await bus.get(max_wait=0.5)
        if item is None:
            if all(t.done() for t in tasks):
                return "sources finished"
            continue
        for ts, row in builder.add(item[1]):
            writer.write(ts, row)
        if progress is not None:
            progress(builder.span, writer.rows)
        if builder.span >= duration:
            return "duration"
    return "interrupted"


async def _supervised(source: Source, ctx: PluginContext, bus: Bus) -> None:
    async def emit(readings: Any) -> None:
        await bus.put(ctx.name, readings)

    await supervise(lambda: source.run(emit), ctx.status, ctx.log)


def cmd_record(args: argparse.Namespace) -> int:
    from agent.config.load import load_config

    cfg = load_config(args.config)
    logs.configure(cfg.agent.log_level, cfg.agent.log_format)
    pipe = find_pipeline(cfg, args.pipeline, args.config)
    result = asyncio.run(_record(cfg, pipe, Path(args.out), args.duration))
    if result.reason.startswith("refused"):
        print(f"record: {result.reason}; no file written", file=sys.stderr)
        return 1
    if result.path is None:
        print(f"record: nothing recorded for pipeline {pipe.name!r} ({result.reason}); no file written")
        return 1
    state = "interrupted, kept" if result.reason == "interrupted" else "recorded"
    print(
        f"{state} {result.rows} rows spanning {human(result.span)} of pipeline {pipe.name!r} -> {result.path}"
    )
    return 0


async def _record(cfg: AgentConfig, pipe: PipelineConfig, out: Path, duration: float) -> RecordResult:
    stop = asyncio.Event()
    bar = ProgressBar("recording", duration)
    with stop_on_signals(stop):
        try:
            return await record(
                cfg,
                pipe,
                out,
                duration,
                stop,
                lambda span, rows: bar.update(span, f"{human(span)}/{human(duration)} {rows} rows"),
            )
        finally:
            bar.close()
