"""What long offline commands show while they work, and how they stop: a progress bar, durations, signals.

Progress goes to standard error: a bar redrawn in place on a terminal, a log line every 30 seconds
otherwise. ``stop_on_signals`` turns Ctrl-C and SIGTERM into an event, so an interrupted ``record`` or
``train`` keeps what it has and never leaves a half-written file.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from typing import IO

from agent.ops import logs


class ProgressBar:
    """Shows how far a long command is: a bar on a terminal, periodic log lines otherwise.

    Args:
        what: what is being done ("recording", "replaying").
        total: the amount that means done (seconds of data, rows); 0 or less when unknown.
        stream: where the bar goes (standard error by default).
        every: seconds between log lines when ``stream`` is not a terminal.
    """

    def __init__(self, what: str, total: float, stream: IO[str] | None = None, every: float = 30.0) -> None:
        self.what, self.total = what, total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.log = logs.get(what)
        self._last = 0.0
        self._drawn = False

    def update(self, done: float, detail: str = "") -> None:
        now = time.monotonic()
        if now - self._last < (0.1 if self.tty else self.every):
            return
        self._last = now
        share = min(1.0, done / self.total) if self.total > 0 else 0.0
        if self.tty:
            bar = "#" * int(30 * share)
            self.stream.write(f"\r{self.what} [{bar:<30}] {share:4.0%} {detail}\x1b[K")
            self.stream.flush()
            self._drawn = True
        else:
            self.log.info("progress", percent=round(100 * share, 1), detail=detail)

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def human(seconds: float) -> str:
    """``5400`` -> ``1h30m``; ``42.5`` -> ``42s``."""
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s" if s or not (h or m) else ""]
    return "".join(parts)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Inside a running loop: SIGINT and SIGTERM set ``stop`` instead of raising."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
