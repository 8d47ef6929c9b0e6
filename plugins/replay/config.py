"""Config of the replay source."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from agent.config.base import SourceConfig, TagConfig


class ReplayTag(TagConfig):
    """A tag read from one column (CSV) or key (JSONL) of the file."""

    column: str | None = Field(
        default=None, description="Column or key holding the value. Default: the tag name."
    )


class ReplayConfig(SourceConfig):
    """``type = "replay"``: readings from a recorded file.

    CSV: a header row, one timestamp column and one column per tag (wide). JSONL: either wide objects
    (``{"timestamp": ..., "temp": 21.5}``) or long ones (``{"ts": ..., "tag": "temp", "value": 21.5}``).
    Timestamps are epoch seconds, epoch milliseconds (values above 1e11) or ISO-8601 (UTC when no zone).
    An empty cell is a BAD reading ("missing value"), never a zero; a cell that is not a number is a
    BAD reading with the reason.
    """

    type: Literal["replay"] = "replay"
    tags: list[ReplayTag] = Field(default_factory=list, description="Tags and the columns they come from.")
    path: Path = Field(description="The file to replay (relative to the config file's folder).")
    format: Literal["auto", "csv", "jsonl"] = Field(default="auto", description="auto: by file extension.")
    timestamp_column: str = Field(default="timestamp", description="Column or key with the timestamp.")
    delimiter: str = Field(
        default=",",
        min_length=1,
        max_length=1,
        description='CSV field separator: "," by default; ";" for files from locales with a decimal comma.',
    )
    speed: float = Field(
        default=0.0, ge=0, description="0 = as fast as possible; 1 = real time; N = N times real time."
    )
    batch: int = Field(
        default=256, ge=1, description="Rows per emitted batch when replaying as fast as possible."
    )
    at_end: Literal["stop", "idle", "loop"] = Field(
        default="stop",
        description="At the end of the file: stop the agent (drain and flush, exit 0), stay idle, or start over.",
    )
