"""The agent records itself: a bounded, rolling CSV of each pipeline's input in the state directory.

``[recording]`` (on by default): every batch of readings the pipelines see is handed to a writer thread
through a bounded queue (``add`` never blocks the event loop; a full queue drops the batch and counts
it). The thread turns readings into the rows ``edge-agent record`` writes (``agent.stream.rows``) and
appends them to segment files::

    <state_dir>/recording/<pipeline>/<first row, epoch ms>-<tags hash>.csv

A segment holds at most ``segment`` seconds of reading time and an equal share of 1/8 of ``max_bytes``;
each write is whole lines in one ``write`` call, so a reader sees complete rows (and drops a trailing
partial one). After each new segment the oldest are deleted, over all pipelines, until no segment is
wholly older than ``max_age`` (reading time) and the closed ones fit in 7/8 of ``max_bytes``: the
recording never holds more than ``max_bytes``. The tags hash is of the CSV header:
after a reload changes a pipeline's tags, the old segments are not mixed with the new ones.

``edge-agent train`` without ``--data`` reads the pipeline's segments (``assemble``), so
``train --last 6h`` re-baselines from what the running agent saw.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import statedir
from agent.config.recording import RecordingConfig
from agent.config.sections import PipelineConfig
from agent.ops import logs
from agent.records import Reading
from agent.stream.rows import RowBuilder, iso

FOLDER = "recording"
_STOP = object()


@dataclass(frozen=True)
class _Configure:
    pipelines: list[PipelineConfig]


def header(pipe: PipelineConfig) -> list[str]:
    return ["timestamp", *pipe.tags]


def tags_hash(pipe: PipelineConfig) -> str:
    return hashlib.sha256(",".join(header(pipe)).encode()).hexdigest()[:8]


@dataclass(frozen=True, order=True)
class Segment:
    """One segment file; ordered by its first row's time."""

    start_ms: int
    path: Path

    @property
    def pipeline(self) -> str:
        return self.path.parent.name


def segments(root: Path, pipeline: str | None = None, digest: str | None = None) -> list[Segment]:
    """The segment files under ``root`` (``<state_dir>/recording``), oldest first."""
    found = []
    for path in root.glob(f"{pipeline or '*'}/*.csv"):
        start, _, rest = path.stem.partition("-")
        if start.isdigit() and (digest is None or rest == digest):
            found.append(Segment(int(start), path))
    return sorted(found)


class _Pipe:
    """One pipeline's rows and its open segment, in the writer thread."""

    def __init__(self, root: Path, pipe: PipelineConfig, cap: int) -> None:
        self.folder = root / pipe.name
        self.cap = cap
        self.header = header(pipe)
        self.digest = tags_hash(pipe)
        self.rows = RowBuilder(pipe.tags, pipe.window.max_age_s)
        self.fd: int | None = None
        self.path: Path | None = None
        self.start = 0.0
        self.size = 0

    def write(self, readings: Sequence[Reading], cfg: RecordingConfig) -> bool:
        """Append the rows of ``readings``; True when a new segment was opened."""
        rows = self.rows.add(readings)
        if not rows:
            return False
        rotated = False
        if self.fd is None or rows[0][0] >= self.start + cfg.segment or self.size >= self.cap:
            self._open(rows[0][0])
            rotated = True
        text = io.StringIO()
        out = csv.writer(text, lineterminator="\n")
        for ts, values in rows:
            out.writerow([iso(ts), *("" if v is None else repr(v) for v in values)])
        self._append(text.getvalue())
        return rotated

    def _open(self, ts: float) -> None:
        self.close()
        statedir.private_dir(self.folder)
        self.path = path = self.folder / f"{round(ts * 1000)}-{self.digest}.csv"
        self.fd = statedir.open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.start, self.size = ts, 0
        if os.fstat(self.fd).st_size == 0:
            self._append(",".join(self.header) + "\n")

    def _append(self, text: str) -> None:
        assert self.fd is not None
        data = text.encode("utf-8")
        os.write(self.fd, data)  # whole lines in one call: a reader never sees half a row
        self.size += len(data)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class SelfRecorder:
    """The rolling recording of a runtime. ``start``, then ``add`` from the loop, ``close`` at the end."""

    def __init__(self, cfg: RecordingConfig, state_dir: Path, pipelines: Sequence[PipelineConfig]) -> None:
        self.cfg = cfg
        self.root = state_dir / FOLDER
        self.log = logs.get("recording")
        self.dropped = 0  # readings the writer could not take in time
        self.failed = 0  # batches a write error lost
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=cfg.queue)
        self._pipes = list(pipelines)
        self._thread: threading.Thread | None = None
        self._reconfigure: list[PipelineConfig] | None = None  # set by the loop, taken by the thread
        self._warned = 0.0

    @property
    def enabled(self) -> bool:
        return self.cfg.enabled and bool(self._pipes)

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recording", daemon=True)
            self._thread.start()

    def add(self, readings: Sequence[Reading]) -> None:
        """Hand a batch to the writer; never blocks (a full queue drops it, counted)."""
        if self._thread is None or not readings:
            return
        try:
            self._queue.put_nowait(readings)
        except queue.Full:
            self.dropped += len(readings)
            now = time.monotonic()
            if now - self._warned >= 60:
                self._warned = now
                self.log.warning("recording fell behind; readings not recorded", dropped=self.dropped)

    def configure(self, pipelines: Sequence[PipelineConfig]) -> None:
        """After a reload: record these pipelines from now on (changed tags start new segments)."""
        try:  # in the queue, so batches read before the reload are written with the old tags
            self._queue.put_nowait(_Configure(list(pipelines)))
        except queue.Full:  # never wait on the loop: the thread picks it up within 0.5 s instead
            self._reconfigure = list(pipelines)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the thread (blocking: call it from a thread)."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        pipes = self._writers(self._pipes)
        try:
            self.prune()
            while True:
                if (changed := self._reconfigure) is not None:
                    self._reconfigure = None
                    for p in pipes:
                        p.close()
                    pipes = self._writers(changed)
                try:
                    item = self._queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                if item is _STOP:
                    break
                if isinstance(item, _Configure):
                    for p in pipes:
                        p.close()
                    pipes = self._writers(item.pipelines)
                    continue
                self._write(pipes, item)
        finally:
            for p in pipes:
                p.close()

    def _writers(self, pipelines: Sequence[PipelineConfig]) -> list[_Pipe]:
        # Each open segment stays under an equal share of 1/8 of max_bytes, and closed ones are pruned to
        # the other 7/8: the recording never holds more than max_bytes.
        cap = self.cfg.max_bytes // (8 * max(1, len(pipelines)))
        return [_Pipe(self.root, p, cap) for p in pipelines]

    def _write(self, pipes: list[_Pipe], readings: Sequence[Reading]) -> None:
        try:
            rotated = [p.write(readings, self.cfg) for p in pipes]
            if any(rotated):
                self.prune(max(p.rows.last or 0.0 for p in pipes), {p.path for p in pipes})
        except OSError as exc:  # a full or broken disk must not stop the agent; the next batch retries
            self.failed += 1
            now = time.monotonic()
            if now - self._warned >= 60:
                self._warned = now
                self.log.error("recording write failed", error=str(exc), failed_batches=self.failed)

    def prune(self, newest: float | None = None, open_paths: set[Path | None] | None = None) -> list[Path]:
        """Delete the oldest segments beyond ``max_age`` (before ``newest``) and ``max_bytes``; never one
        in ``open_paths`` (being written)."""
        found = segments(self.root)
        gone: list[Path] = []
        if newest is not None:
            cutoff_ms = (newest - self.cfg.max_age) * 1000
            by_pipe: dict[str, list[Segment]] = {}
            for seg in found:
                by_pipe.setdefault(seg.pipeline, []).append(seg)
            for segs in by_pipe.values():
                # A segment is wholly older than the cutoff when the next one starts before it.
                gone += [a.path for a, b in itertools.pairwise(segs) if b.start_ms <= cutoff_ms]
        kept = [s for s in found if s.path not in gone]
        sizes = {s.path: _size(s.path) for s in kept}
        total = sum(sizes.values())
        budget = self.cfg.max_bytes - self.cfg.max_bytes // 8  # the rest is for the open segments
        for seg in kept:
            if total <= budget:
                break
            if seg.path not in (open_paths or set()):
                gone.append(seg.path)
                total -= sizes[seg.path]
        for path in gone:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return gone


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
