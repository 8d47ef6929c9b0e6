"""The health and metrics endpoint: ``/healthz``, ``/readyz`` and ``/metrics`` over plain HTTP.

A deliberately small HTTP/1.1 server on ``asyncio.start_server`` (GET and HEAD, one request per
connection, bounded request size, time and concurrency), so the agent needs no web framework.

- ``/healthz``: 200 while the event loop is responsive, 503 when its lag (measured by a ticker task,
  ``LoopMonitor``) is over ``max_loop_lag``. A loop blocked outright cannot answer at all, so the
  probe times out, which every orchestrator also counts as a failure.
- ``/readyz``: 200 when ``ready()`` says so (sinks connected or buffering, sources up), else 503; both
  with a JSON body ``{"ready": bool, "reason": str}``.
- ``/metrics``: Prometheus text exposition 0.0.4 of ``snapshot()`` (see ``agent.ops.metrics``).

It listens on loopback by default: expose it (``host = "0.0.0.0"``) only where the network is trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from agent.config.sections import HealthConfig
from agent.errors import FatalError
from agent.ops.metrics import CONTENT_TYPE, MetricsSnapshot, render
from agent.plugin import ComponentStatus, State

MAX_REQUEST_BYTES = 8192
MAX_HEADER_LINES = 64
READ_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 16
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def readiness(sources: Iterable[ComponentStatus], sinks: Iterable[ComponentStatus]) -> tuple[bool, str]:
    """The usual ``ready()``: every source up, every sink connected or buffering into its outbox.

    A sink that is down still counts: its outbox keeps what it cannot deliver yet. Only a stopped
    sink does not, nor one whose peer accepts the connection but acknowledges nothing (counter
    ``stalled``: a broker that never sends PUBACK, issue 11 item 9). The reason names what is being
    waited for, with its last error.
    """
    waiting = [s for s in sources if s.state is not State.UP]
    sinks = list(sinks)
    stopped = [s for s in sinks if s.state is State.STOPPED]
    stalled = [s for s in sinks if s.counters.get("stalled")]
    if not waiting and not stopped and not stalled:
        return True, "sources up, sinks connected or buffering"
    parts = [
        f"{s.kind} {s.name} is {s.state}" + (f" ({s.last_error})" if s.last_error else "") for s in waiting
    ]
    parts += [f"sink {s.name} is stopped" for s in stopped]
    parts += [f"sink {s.name} is connected but nothing is acknowledged" for s in stalled]
    return False, "; ".join(parts)


class LoopMonitor:
    """Measures event loop lag with a ticker task: how late each ``interval`` sleep wakes up.

    ``lag()`` is safe to call from any thread; while the loop is stuck, it grows with the time since
    the tick was due, so the stall shows even before the ticker runs again.
    """

    def __init__(self, max_lag: float, interval: float | None = None) -> None:
        self.max_lag = max_lag
        self.interval = interval if interval is not None else min(0.25, max_lag / 4)
        self._due: float | None = None
        self._last_lag = 0.0

    def lag(self) -> float:
        """Seconds the loop is (or last was) late; 0.0 before the ticker first ran."""
        if self._due is None:
            return 0.0
        return max(self._last_lag, time.monotonic() - self._due)

    def responsive(self) -> bool:
        return self.lag() <= self.max_lag

    async def run(self) -> None:
        """Tick until cancelled."""
        while True:
            self._due = time.monotonic() + self.interval
            await asyncio.sleep(self.interval)
            self._last_lag = max(0.0, time.monotonic() - self._due)


class HealthServer:
    """Serves the endpoint until cancelled: ``await server.run()`` in the runner's TaskGroup, or
    ``async with HealthServer(...) as server:`` which starts it and waits until it listens.

    Args:
        config: the ``[health]`` section.
        snapshot: builds the metrics snapshot; called on each scrape of ``/metrics``.
        ready: returns ``(ready, reason)``; called on each ``/readyz``.
        monitor: a loop monitor the caller already runs (shared with the systemd watchdog); when
            None, the server runs its own.
    """

    def __init__(
        self,
        config: HealthConfig,
        snapshot: Callable[[], MetricsSnapshot],
        ready: Callable[[], tuple[bool, str]],
        monitor: LoopMonitor | None = None,
    ) -> None:
        self.config = config
        self.snapshot = snapshot
        self.ready = ready
        self.monitor = monitor or LoopMonitor(config.max_loop_lag)
        self._own_monitor = monitor is None
        self._connections: set[asyncio.Task[Any]] = set()
        self._listening: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._metrics_failing = False
        self.port: int = config.port
        self.log = structlog.get_logger().bind(component="health")

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def run(self) -> None:
        """Listen and serve until cancelled; raises FatalError when the address cannot be bound."""
        host, port = self.config.host, self.config.port
        try:
            server = await asyncio.start_server(self._handle, host, port, limit=MAX_REQUEST_BYTES)
        except OSError as exc:
            raise FatalError(
                f"health endpoint cannot listen on {host}:{port}: {exc.strerror or exc}; "
                "set another [health] port or stop the program using it"
            ) from exc
        self.port = int(server.sockets[0].getsockname()[1])
        self.log.info("health endpoint listening", url=self.url)
        if self._listening is not None and not self._listening.done():
            self._listening.set_result(None)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(server.serve_forever(), name="health-serve")
                if self._own_monitor:
                    tg.create_task(self.monitor.run(), name="health-loop-monitor")
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def __aenter__(self) -> HealthServer:
        self._listening = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self.run(), name="health-server")
        await asyncio.wait({self._task, self._listening}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            self._listening.cancel()
            self._task.result()  # raises the bind error
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.set_name("health-connection")
        self._connections.add(task)
        try:
            if len(self._connections) > MAX_CONNECTIONS:
                status, ctype, body = 503, "text/plain", b"too many connections\n"
                method = "GET"
            else:
                try:
                    async with asyncio.timeout(READ_TIMEOUT_S):
                        method, path = await _read_request(reader)
                except (ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
                    method, path = "GET", ""
                status, ctype, body = self._route(method, path)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n"
                + ("Allow: GET, HEAD\r\n" if status == 405 else "")
                + "\r\n"
            )
            writer.write(head.encode("ascii") + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a client that went away or never sent a request: nothing to answer
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if not path:
            return 400, "text/plain", b"bad request\n"
        if path not in ("/healthz", "/readyz", "/metrics"):
            return 404, "text/plain", b"not found; try /healthz, /readyz or /metrics\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET and HEAD\n"
        if path == "/healthz":
            lag = self.monitor.lag()
            if lag > self.monitor.max_lag:
                reason = f"event loop lag {lag:.2f} s is over the {self.monitor.max_lag:g} s limit"
                return _json(503, {"status": "unhealthy", "reason": reason, "loop_lag_s": round(lag, 4)})
            return _json(200, {"status": "ok", "loop_lag_s": round(lag, 4)})
        if path == "/readyz":
            try:
                ok, reason = self.ready()
            except Exception as exc:
                ok, reason = False, f"readiness check failed: {exc}"
            return _json(200 if ok else 503, {"ready": bool(ok), "reason": reason})
        return self._metrics()

    def _metrics(self) -> tuple[int, str, bytes]:
        try:
            text = render(self.snapshot(), loop_lag_s=self.monitor.lag())
        except Exception as exc:
            if not self._metrics_failing:
                self.log.exception("metrics snapshot failed", error=str(exc))
            self._metrics_failing = True
            return 500, "text/plain", f"metrics snapshot failed: {exc}\n".encode()
        self._metrics_failing = False
        return 200, CONTENT_TYPE, text.encode("utf-8")


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """``(method, path)`` of one request; the headers are read and ignored. ValueError when malformed."""
    parts = (await reader.readuntil(b"\n")).decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError("not an HTTP request line")
    for _ in range(MAX_HEADER_LINES):
        if (await reader.readuntil(b"\n")).strip() == b"":
            return parts[0].upper(), parts[1].split("?", 1)[0]
    raise ValueError("too many header lines")


def _json(status: int, body: dict[str, Any]) -> tuple[int, str, bytes]:
    return status, "application/json", (json.dumps(body) + "\n").encode("utf-8")
