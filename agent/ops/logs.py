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


class _StdlibBridge(logging.Handler):
    """Sends stdlib ``logging`` records (asyncio, libraries) through structlog: one line each, same format.

    asyncio's last resort for an exception in a protocol callback (pymodbus fed a garbage frame) wrote a
    raw multi-line traceback into the JSON log (issue 11 item 9). Here the exception becomes one field
    (``error="ModbusIOException: ..."``), and a line repeating within ``quiet_s`` is counted, not written:
    the next one after the quiet period says how many were held back.
    """

    def __init__(self, quiet_s: float = 60.0) -> None:
        super().__init__()
        self.quiet_s = quiet_s
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage().splitlines()[0] if record.getMessage() else record.name
            key = (record.name, message)
            seen, held = self._last.get(key, (-self.quiet_s, 0))
            if record.created - seen < self.quiet_s:
                self._last[key] = (seen, held + 1)
                return
            self._last[key] = (record.created, 0)
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                fields["error"] = f"{type(exc).__name__}: {str(exc).strip()}"[:300]
            if held:
                fields["repeated"] = held
            log = structlog.get_logger().bind(component="library")
            log.log(record.levelno, message, **fields)
        except Exception:  # a log line must never break the caller
            self.handleError(record)


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
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StdlibBridge)]:
        root.removeHandler(handler)
    root.addHandler(_StdlibBridge())
    root.setLevel(logging.WARNING if level != "debug" else logging.DEBUG)


def get(component: str) -> Any:
    """A logger bound with ``component=``."""
    return structlog.get_logger().bind(component=component)
