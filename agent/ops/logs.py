"""structlog setup: JSON lines for journald and containers, readable console on a terminal.

Every line carries ``component=`` (bound by the runner for each source, sink and pipeline). Secrets never
reach a log line: config secrets are ``SecretStr`` and render as ``**********``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write, not at configure time.

    A stream captured at configure time can be closed under us (a test harness, a redirected stderr).
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog for the process; ``fmt`` is auto, json or console."""
    stream = stream or _CurrentStderr()
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks never carry frame locals: a crash inside a connect would print the password it held
    # (structlog's defaults show locals; issue 10).
    if console:
        plain = structlog.dev.plain_traceback
        processors.append(structlog.dev.ConsoleRenderer(colors=stream.isatty(), exception_formatter=plain))
    else:
        no_locals = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        processors += [structlog.processors.ExceptionRenderer(no_locals), structlog.processors.JSONRenderer()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries log through stdlib logging (its last-resort handler writes to the current stderr).
    # The plugins translate these libraries' errors and log each episode once; the libraries' own
    # lines (asyncua logs a traceback on every dropped publish loop) would repeat it noisily.
    for noisy in ("asyncua", "pymodbus", "paho"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL if level != "debug" else logging.INFO)


def get(component: str) -> Any:
    """A logger bound with ``component=``."""
    return structlog.get_logger().bind(component=component)
