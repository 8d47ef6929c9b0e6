"""What a restart missed: the first features message of each pipeline after a start names the gap.

A SIGKILL, a crash or a power loss stops the windows; the agent that starts again begins a new window
grid, and consumers used to see the jump in window times with nothing saying it was an outage (issue 11
item 7). ``WindowMarks`` keeps the end of the last window of each pipeline in
``<state_dir>/windows.json`` (written from a thread, at most every housekeeping tick, atomically by
rename), and after a start adds ``"missed": {"from_ms": <last end before>, "to_ms": <this window's start>}`` to
the first features message of each pipeline whose new window starts after that end. A replay that
starts over (event time going back) has no gap and gets no marker.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from agent.config import statedir
from agent.records import Kind, Message


class WindowMarks:
    """Last window end per pipeline, loaded at start and kept up to date; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.before = self._load(path)
        self.last = dict(self.before)
        self.pending = set(self.before)  # pipelines whose first window after the start is still to come
        self.dirty = False

    @staticmethod
    def _load(path: Path) -> dict[str, float]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}  # first start, or a damaged file: no gap can be named, nothing else changes
        if not isinstance(data, dict):
            return {}
        return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}

    def stamp(self, messages: list[Message]) -> None:
        """Note the windows of ``messages``; mark the first one of a pipeline after a start."""
        for m in messages:
            if m.kind is not Kind.FEATURES:
                continue
            if m.key in self.pending:
                self.pending.discard(m.key)
                start_ms = int(m.payload["window"]["start_ms"])  # payload times are epoch ms (issue 14)
                before_ms = round(self.before[m.key] * 1000)
                if start_ms > before_ms:
                    m.payload["missed"] = {"from_ms": before_ms, "to_ms": start_ms}
            self.last[m.key] = m.ts
            self.dirty = True

    def save(self) -> bool:
        """Write the marks (call from a thread: it touches the disk); False if the disk refused.

        Best effort: a full or read-only disk must not stop the agent for this (the next save retries).
        """
        self.dirty = False
        tmp = self.path.with_suffix(".tmp")
        try:
            statedir.write_private(tmp, json.dumps(self.last).encode())  # 0600, no symlink (issue 10)
            os.replace(tmp, self.path)
        except OSError:
            self.dirty = True
            return False
        return True
