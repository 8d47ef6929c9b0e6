"""How training reads its file: the replay settings of a config's source, the columns, the last timestamp.

``train`` reads the CSV with the replay source, as ``run`` would; when ``--data`` is the file of a replay
source in the config, that source's ``timestamp_column``, per-tag ``column`` and ``delimiter`` apply
(issue 18: a ``;`` file whose columns have spaces maps to clean tag names).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from agent.config.sections import PipelineConfig
from agent.errors import ModelError


@dataclass(frozen=True)
class ReplaySettings:
    """How to read the training file: the config's replay source of that file, when there is one.

    Attributes:
        timestamp_column: column of the timestamp.
        columns: tag -> column holding it (a column with spaces maps to a clean tag name).
        delimiter: CSV field separator.
    """

    timestamp_column: str = "timestamp"
    columns: Mapping[str, str] = field(default_factory=dict)
    delimiter: str = ","

    def column(self, tag: str) -> str:
        return self.columns.get(tag, tag)


def count_rows(path: Path) -> int:
    with open(path, "rb") as handle:
        return max(0, sum(1 for _ in handle) - 1)


def check_columns(pipe: PipelineConfig, data: Path, settings: ReplaySettings | None = None) -> None:
    """Raise ModelError unless ``data`` is a readable CSV with the timestamp and a column per pipeline tag."""
    opts = settings or ReplaySettings()
    try:
        with open(data, encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle, delimiter=opts.delimiter), [])
    except OSError as exc:
        raise ModelError(f"cannot read training data {str(data)!r}: {exc.strerror}") from exc
    wanted = {opts.timestamp_column: "timestamp", **{opts.column(t): t for t in pipe.tags}}
    missing = [
        col if col == tag else f"{tag} (column {col!r})" for col, tag in wanted.items() if col not in header
    ]
    if missing:
        raise ModelError(
            f"{data}: no column for {', '.join(missing)} (columns: {', '.join(header)}); "
            f"record it with `edge-agent record --pipeline {pipe.name}`"
        )


def last_timestamp(data: Path, settings: ReplaySettings | None = None) -> float | None:
    """The latest timestamp in a CSV (for ``train --last``), None when it has no readable one."""
    opts = settings or ReplaySettings()
    latest: float | None = None
    with open(data, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter=opts.delimiter):
            try:
                ts = _parse_ts(row.get(opts.timestamp_column))
            except ValueError:
                continue
            latest = ts if latest is None else max(latest, ts)
    return latest


def _parse_ts(raw: str | None) -> float:
    """Epoch seconds, epoch milliseconds or ISO-8601 (UTC when no zone), as the replay source reads them."""
    text = (raw or "").strip()
    try:
        value = float(text)
    except ValueError:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    return value / 1000.0 if value > 1e11 else value


def assemble_recording(state_dir: Path, pipe: PipelineConfig, out: Path, last: float | None) -> Path | None:
    """The running agent's own recording of ``pipe`` (``agent.runtime.recording``) as one CSV at ``out``.

    Only segments with the pipeline's current tags are read, and with ``last`` only those reaching into
    the last ``last`` seconds; a trailing half-written row is left out. None when there is no segment.
    """
    from agent.runtime.segments import FOLDER, segments, tags_hash

    found = segments(state_dir / FOLDER, pipe.name, tags_hash(pipe))
    if not found:
        return None
    if last is not None:
        newest = last_timestamp(found[-1].path)
        if newest is not None:
            cutoff_ms = (newest - last) * 1000
            before = [i for i, seg in enumerate(found) if seg.start_ms <= cutoff_ms]
            found = found[before[-1] :] if before else found
    with open(out, "w", encoding="utf-8", newline="") as dest:
        dest.write(",".join(["timestamp", *pipe.tags]) + "\n")
        for seg in found:
            with open(seg.path, encoding="utf-8", newline="") as src:
                lines = src.read().split("\n")
            dest.writelines(line + "\n" for line in lines[1:-1] if line)  # [-1]: "" or a partial row
    return out


def file_hash(path: Path) -> str:
    """sha256 (hex) of a training file, recorded in the model's metadata."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_training_data(x: NDArray[np.floating]) -> str:
    """sha256 (hex) of a training matrix: its shape and float64 bytes."""
    arr = np.ascontiguousarray(x, dtype=np.float64)
    digest = hashlib.sha256(repr(arr.shape).encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()
