"""The agent records itself: a bounded, rolling CSV of each pipeline's input in the state directory.

``[recording]`` (on by default): every batch of readings the pipelines see is handed to a writer thread
through a bounded queue (``add`` never blocks the event loop; a full queue drops the batch and counts
it). The thread turns readings into the rows ``edge-agent record`` writes (``agent.stream.rows``) and
appends them to segment files::

    <state_dir>/recording/<pipeline>/<first row, epoch ms>-<tags hash>.csv   (agent.runtime.segments)

A new segment starts once ``segment`` seconds of reading time have passed (and at least ``MIN_OPEN`` of
wall time, so a fast replay of months is not a file per hour of its data), and before the open one
reaches an equal share of 1/8 of ``max_bytes``. The thread wakes once every ``COALESCE`` seconds and
writes what is queued, as whole lines in one ``write`` call, so a reader sees complete rows (and drops a
trailing partial one). After each new segment the oldest are deleted, over all pipelines, while one
ended more than ``max_age`` (reading time) before the newest row or the finished ones exceed 7/8 of
``max_bytes``: the recording never holds more than ``max_bytes``.

``edge-agent train`` without ``--data`` reads the pipeline's segments (``agent.learn.source``), so
``train --last 6h`` re-baselines from what the running agent saw.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.batch import ReadingChain, parts
from agent.config import statedir
from agent.config.recording import RecordingConfig
from agent.config.sections import PipelineConfig
from agent.ops import logs
from agent.records import Reading
from agent.runtime.segments import FOLDER, header, last_row_time, segments, size, tags_hash
from agent.stream.rows import RowBuilder, iso

# Seconds between the writer's wake-ups, the batches queued meanwhile written together: what a kill -9
# can lose beyond the queue. The thread keeps its own cadence instead of waking for each batch: a
# wake-up costs ~0.25 ms of CPU here, and W4 (ten batches a second) woke it seven times a second.
COALESCE = 1.0
# A segment stays open at least this long (wall time): a replay of months at full speed must not
# create a file per hour of its data (opening a file costs ~1 ms; 1,900 of them made a replay 70% slower).
MIN_OPEN = 10.0
_STOP = object()
Finished = tuple[int, float, str, int]  # a closed segment: (start ms, end s, path, bytes)


@dataclass(frozen=True)
class _Configure:
    pipelines: list[PipelineConfig]


class _Pipe:
    """One pipeline's rows and its open segment, in the writer thread."""

    def __init__(self, root: Path, pipe: PipelineConfig, cap: int, min_open: float) -> None:
        self.folder = root / pipe.name
        self.cap, self.min_open = cap, min_open
        self.header = header(pipe)
        self.digest = tags_hash(pipe)
        self.rows = RowBuilder(pipe.tags, pipe.window.max_age_s)
        self.fd: int | None = None
        self.path: Path | None = None
        self.start = self.end = self.opened = 0.0
        self.size = 0
        self.closed: list[Finished] = []  # segments it finished since the recorder last looked

    def write(self, readings: Sequence[Reading], cfg: RecordingConfig) -> bool:
        """Append the rows of ``readings``, opening new segments as they fill; True if one was opened."""
        rotated = False
        lines: list[str] = []
        pending = 0
        for ts, values in self.rows.add(readings):
            due = ts >= self.start + cfg.segment and time.monotonic() - self.opened >= self.min_open
            if self.fd is None or due or self.size + pending >= self.cap:
                self._append("".join(lines))
                lines, pending = [], 0
                self._open(ts)
                rotated = True
            # Floats' repr and an ISO time hold no comma or quote: the CSV needs no quoting.
            line = ",".join([iso(ts), *("" if v is None else repr(v) for v in values)]) + "\n"
            lines.append(line)
            pending += len(line)
            self.end = max(self.end, ts)
        self._append("".join(lines))
        return rotated

    def _open(self, ts: float) -> None:
        if self.fd is not None and self.path is not None:
            self.closed.append((round(self.start * 1000), self.end, str(self.path), self.size))
        self.close()
        statedir.private_dir(self.folder)
        self.path = path = self.folder / f"{round(ts * 1000)}-{self.digest}.csv"
        self.fd = statedir.open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.start, self.end, self.size, self.opened = ts, ts, 0, time.monotonic()
        if os.fstat(self.fd).st_size == 0:
            self._append(",".join(self.header) + "\n")

    def _append(self, text: str) -> None:
        if not text or self.fd is None:
            return
        data = text.encode("utf-8")
        os.write(self.fd, data)  # whole lines in one call: a reader never sees half a row
        self.size += len(data)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class SelfRecorder:
    """The rolling recording of a runtime. ``start``, then ``add`` from the loop, ``close`` at the end."""

    def __init__(
        self,
        cfg: RecordingConfig,
        state_dir: Path,
        pipelines: Sequence[PipelineConfig],
        min_open: float = MIN_OPEN,
    ) -> None:
        self.cfg, self.min_open = cfg, min_open
        self.root = state_dir / FOLDER
        self.log = logs.get("recording")
        self.dropped = 0  # readings the writer could not take in time
        self.failed = 0  # batches a write error lost
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=cfg.queue)
        self._pipes = list(pipelines)
        self._thread: threading.Thread | None = None
        self._reconfigure: list[PipelineConfig] | None = None  # set by the loop, taken by the thread
        self._closed: list[Finished] = []  # a heap, oldest start first
        self._closed_bytes = 0
        self._warned = 0.0
        self._wake = threading.Event()  # cuts the writer's wait short: closing, or the queue half full
        self._hurry_at = max(1, cfg.queue // 2)

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
            self._wake.set()
            self.dropped += len(readings)
            now = time.monotonic()
            if now - self._warned >= 60:
                self._warned = now
                self.log.warning("recording fell behind; readings not recorded", dropped=self.dropped)
            return
        if self._queue.qsize() >= self._hurry_at:  # a replay at full speed: write before it overflows
            self._wake.set()

    def configure(self, pipelines: Sequence[PipelineConfig]) -> None:
        """After a reload: record these pipelines from now on (changed tags start new segments)."""
        try:  # in the queue, so batches read before the reload are written with the old tags
            self._queue.put_nowait(_Configure(list(pipelines)))
        except queue.Full:  # never wait on the loop: the thread picks it up at its next wake-up instead
            self._reconfigure = list(pipelines)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the thread (blocking: call it from a thread)."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        pipes = self._writers(self._pipes)
        try:
            for seg in segments(self.root):  # earlier runs' segments are finished
                end = last_row_time(seg.path) or seg.start_ms / 1000
                self._finished([(seg.start_ms, end, str(seg.path), size(seg.path))])
            self.prune()
            while True:
                if (changed := self._reconfigure) is not None:
                    self._reconfigure = None
                    pipes = self._replace(pipes, changed)
                batch: list[Sequence[Reading]] = []  # the parts, batches kept whole
                for item in self._take():
                    if item is _STOP:
                        self._write(pipes, ReadingChain(batch))
                        return
                    if isinstance(item, _Configure):
                        self._write(pipes, ReadingChain(batch))
                        batch = []
                        pipes = self._replace(pipes, item.pipelines)
                    else:
                        batch.extend(parts(item))
                self._write(pipes, ReadingChain(batch))
        finally:
            for p in pipes:
                p.close()

    def _take(self) -> list[Any]:
        """What is queued after ``COALESCE`` s, or as soon as the queue is half full or the recorder
        closes: batches are written once a second, not once each (a replay at full speed ran 50% slower
        with a write per batch), and ``add`` wakes the thread only to keep the queue from overflowing."""
        self._wake.wait(COALESCE)
        self._wake.clear()
        items: list[Any] = []
        with contextlib.suppress(queue.Empty):
            while len(items) < self.cfg.queue:
                items.append(self._queue.get_nowait())
        return items

    def _replace(self, pipes: list[_Pipe], pipelines: Sequence[PipelineConfig]) -> list[_Pipe]:
        for p in pipes:
            p.close()
        return self._writers(pipelines)

    def _writers(self, pipelines: Sequence[PipelineConfig]) -> list[_Pipe]:
        # Each open segment stays under an equal share of 1/8 of max_bytes, and closed ones are pruned to
        # the other 7/8: the recording never holds more than max_bytes.
        cap = self.cfg.max_bytes // (8 * max(1, len(pipelines)))
        return [_Pipe(self.root, p, cap, self.min_open) for p in pipelines]

    def _write(self, pipes: list[_Pipe], readings: Sequence[Reading]) -> None:
        if not readings:
            return
        try:
            rotated = [p.write(readings, self.cfg) for p in pipes]
            for p in pipes:
                self._finished(p.closed)
                p.closed = []
            if any(rotated):
                self.prune(max(p.rows.last or 0.0 for p in pipes))
        except OSError as exc:  # a full or broken disk must not stop the agent; the next batch retries
            self.failed += 1
            now = time.monotonic()
            if now - self._warned >= 60:
                self._warned = now
                self.log.error("recording write failed", error=str(exc), failed_batches=self.failed)

    def _finished(self, segs: Sequence[Finished]) -> None:
        for seg in segs:
            heapq.heappush(self._closed, seg)
            self._closed_bytes += seg[3]

    def prune(self, newest: float | None = None) -> list[Path]:
        """Delete finished segments, oldest first, while the oldest ended more than ``max_age`` before
        ``newest`` or the finished ones exceed 7/8 of ``max_bytes``. Open segments are never touched:
        they are not in the heap."""
        cutoff = newest - self.cfg.max_age if newest is not None else None
        budget = self.cfg.max_bytes - self.cfg.max_bytes // 8  # the rest is for the open segments
        gone: list[Path] = []
        while self._closed and (
            self._closed_bytes > budget or (cutoff is not None and self._closed[0][1] <= cutoff)
        ):
            _, _, path, nbytes = heapq.heappop(self._closed)
            self._closed_bytes -= nbytes
            gone.append(Path(path))
            with contextlib.suppress(FileNotFoundError):
                Path(path).unlink()
        return gone
