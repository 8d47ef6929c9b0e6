"""Config of the stdout and jsonl sinks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from agent.config.base import OutboxConfig, SinkConfig


def _memory_outbox() -> OutboxConfig:
    return OutboxConfig(durable=False)


class StdoutConfig(SinkConfig):
    """``type = "stdout"``: JSON lines on standard output. Its outbox is in memory by default."""

    type: Literal["stdout"] = "stdout"
    pretty: bool | None = Field(
        default=None, description="One readable line per message; default: on a terminal only."
    )
    outbox: OutboxConfig = Field(
        default_factory=_memory_outbox, description="Delivery buffer (memory by default)."
    )


class JsonlConfig(SinkConfig):
    """``type = "jsonl"``: JSON lines appended to a file."""

    type: Literal["jsonl"] = "jsonl"
    path: Path = Field(description="File to append to (relative to the config file's folder).")
    fsync: bool = Field(default=True, description="fsync after each batch before acknowledging it.")
