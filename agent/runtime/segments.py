"""Where and how the agent's own recording is stored: one folder per pipeline, one CSV per segment.

``<state_dir>/recording/<pipeline>/<first row, epoch ms>-<tags hash>.csv``: the tags hash is of the CSV
header, so segments written before a reload changed a pipeline's tags are never read as its current
ones. Written by ``agent.runtime.recording``; read by ``edge-agent train`` (``agent.learn.source``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agent.config.sections import PipelineConfig

FOLDER = "recording"


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


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def last_row_time(path: Path) -> float | None:
    """Reading time of the last complete row of a segment (its end), None when it has no row."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 65536))
            lines = handle.read().split(b"\n")[:-1]  # the last piece is "" or a partial row
    except OSError:
        return None
    for line in reversed(lines):
        stamp = line.split(b",", 1)[0].decode("ascii", "replace")
        try:
            return datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            continue
    return None
