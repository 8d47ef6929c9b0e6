"""Tell systemd how the agent is doing: the ``sd_notify`` protocol without a dependency.

Under a ``Type=notify`` unit systemd sets ``NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for an
abstract socket) and, with ``WatchdogSec=``, ``WATCHDOG_USEC``. The agent sends ``READY=1`` once sinks
are connected or buffering and sources have started, ``STATUS=...`` lines shown by
``systemctl status``, ``RELOADING=1`` around a SIGHUP reload, ``STOPPING=1`` at shutdown, and ``WATCHDOG=1`` from ``watchdog()``.

``watchdog()`` is a coroutine on the event loop, so a blocked loop stops the pings and systemd
restarts the service: that is the point. Outside systemd every call is a cheap no-op.

Nothing blocks the loop (issue 11 item 5): a line is sent without waiting; only when systemd's queue is
full does it go to a sender thread that waits up to ``SEND_TIMEOUT_S`` for room, in order, and every
later line follows it there until that queue is empty again.

Typical use by the runner::

    notifier = Notifier.from_env()
    async with asyncio.TaskGroup() as tg:
        ...start sinks and sources...
        notifier.ready("3 sources, 1 sink")
        if (interval := watchdog_interval()) is not None:
            tg.create_task(watchdog(notifier, interval, healthy=monitor.responsive), name="sd-watchdog")
"""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger().bind(component="sdnotify")
SEND_TIMEOUT_S = 1.0


def socket_address(value: str | None) -> str | None:
    """The ``AF_UNIX`` address named by ``NOTIFY_SOCKET``, or None when it is unset or unusable.

    ``@name`` is an abstract socket (a leading NUL byte on the wire); anything else must be an
    absolute path. Other forms (``vsock:`` on newer systemd) are not supported and disable notifying.
    """
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    log.warning("NOTIFY_SOCKET not supported, not notifying systemd", notify_socket=value)
    return None


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None when no watchdog is asked.

    ``WATCHDOG_PID``, when set, must be this process: a child that inherited the environment must not
    ping on its parent's behalf.
    """
    env = os.environ if env is None else env
    pid = os.getpid() if pid is None else pid
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        owner = int(env.get("WATCHDOG_PID", str(pid)))
    except ValueError:
        return None
    if usec <= 0 or owner != pid:
        return None
    return usec / 2_000_000


class Notifier:
    """Sends state lines to systemd's notification socket; a no-op when ``address`` is None.

    A failed send is logged once and never raised: not being able to tell systemd must not stop the
    agent (systemd will then time the start out or fire the watchdog, which says enough).
    """

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._failing = False
        self._backlog: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        return cls(socket_address(env.get("NOTIFY_SOCKET")))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True when systemd got it (or nothing to do)."""
        if self.address is None:
            return True
        data = "\n".join(lines).encode("utf-8")
        if self._sender is not None and self._sender.is_alive():
            self._backlog.put(data)  # keep the order behind what already waits for room
            return True
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(data, self.address)
        except BlockingIOError:
            # systemd's queue is short (net.unix.max_dgram_qlen, often 10): wait a little for room
            # rather than lose READY=1 (libsystemd waits without a limit), but on a thread.
            self._backlog.put(data)
            self._sender = threading.Thread(target=self._send_waiting, name="sd-notify", daemon=True)
            self._sender.start()
            return True
        except OSError as exc:
            if not self._failing:
                log.warning(
                    "cannot notify systemd", error=str(exc), notify_socket=self.address.replace("\0", "@")
                )
            self._failing = True
            return False
        if self._failing:
            log.info("notifying systemd again")
            self._failing = False
        return True

    def _send_waiting(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT_S)
            while True:
                try:
                    data = self._backlog.get_nowait()
                except queue.Empty:
                    return
                try:
                    sock.sendto(data, self.address or "")
                except OSError as exc:
                    log.warning("cannot notify systemd", error=str(exc))

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def reloading(self) -> bool:
        """Start of a SIGHUP reload; send ``ready()`` again when it is done (or refused)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more start or stop time (slow model load, a long drain), from now on."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


async def watchdog(notifier: Notifier, interval: float, healthy: Callable[[], bool] | None = None) -> None:
    """Ping systemd's watchdog every ``interval`` seconds, from the event loop, until cancelled.

    Args:
        notifier: where to send ``WATCHDOG=1``.
        interval: seconds between pings, usually ``watchdog_interval()``.
        healthy: checked before each ping; a False answer (the loop lags too much, say) skips the
            ping, so systemd's watchdog fires if the agent stays unhealthy.
    """
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    withholding = False
    while True:
        ok = healthy is None or healthy()
        if ok:
            notifier.watchdog()
        if withholding and ok:
            log.info("agent healthy again, watchdog pings resumed")
        elif not withholding and not ok:
            log.warning("agent unhealthy, withholding watchdog pings")
        withholding = not ok
        # Drift-free: the next ping is due one interval after the last due time, not after the send.
        next_at = max(next_at + interval, loop.time())
        await asyncio.sleep(next_at - loop.time())
