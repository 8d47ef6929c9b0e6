"""The health and metrics endpoint: ``/healthz``, ``/readyz``, ``/metrics`` and the status page, over HTTP.

A deliberately small HTTP/1.1 server on ``asyncio.start_server`` (GET and HEAD, one request per
connection, bounded request size, time and concurrency), so the agent needs no web framework. It holds
up against slow clients (slowloris, issue 10 item 8): each connection has ``HEADER_DEADLINE_S`` to
send its whole request and ``WRITE_DEADLINE_S`` to read the answer; beyond ``MAX_WAITING``
connections still sending their request, a new one pushes out the oldest of them that has had
``MIN_WAIT_S``, so a probe that sends its request at once is read however many slow sockets are held
open or reopened.

- ``/healthz``: 200 while the event loop is responsive, 503 when its lag (measured by a ticker task,
  ``LoopMonitor``) is over ``max_loop_lag``. A loop blocked outright cannot answer at all, so the
  probe times out, which every orchestrator also counts as a failure.
- ``/readyz``: 200 when ``ready()`` says so (sinks connected or buffering, sources up), else 503; both
  with a JSON body ``{"ready": bool, "reason": str}``.
- ``/metrics``: Prometheus text exposition 0.0.4 of ``snapshot()`` (see ``agent.ops.metrics``).
- everything else (the status page, see ``agent.ops.status_api``) comes from the ``app`` handler.

With a token set (required beyond loopback unless ``allow_unauthenticated``), ``/readyz``, ``/metrics``
and ``/api/...`` need ``Authorization: Bearer <token>``; ``/healthz`` and the page's files never do.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from agent.config.sections import HealthConfig
from agent.errors import FatalError
from agent.ops.http import WRITE_DEADLINE_S, App, Request, Response, answer, json_answer, read_request
from agent.ops.measure import LoopMonitor
from agent.ops.metrics import CONTENT_TYPE, MetricsSnapshot, render
from agent.plugin import ComponentStatus, State

MAX_REQUEST_BYTES = 8192
HEADER_DEADLINE_S = 2.0  # to send the request line and every header: a probe needs milliseconds
MAX_WAITING = 64  # connections still sending their request; beyond, a new one pushes the oldest out
MIN_WAIT_S = 1.0  # ...if that one has had this long: a prompt client is never pushed out by a flood
MAX_CONNECTIONS = 256  # in all; beyond it, with nobody to push out, a newcomer is on probation:
PROBATION_S = 0.5  # it has this long to send its request, and holds no waiting place
PROTECTED = ("/readyz", "/metrics", "/api/")  # need the bearer token when one is set


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


class HealthServer:
    """Serves the endpoint until cancelled: ``await server.run()`` in the runner's TaskGroup, or
    ``async with HealthServer(...) as server:`` which starts it and waits until it listens.

    Args:
        config: the ``[health]`` section.
        snapshot: builds the metrics snapshot; called on each scrape of ``/metrics``.
        ready: returns ``(ready, reason)``; called on each ``/readyz``.
        monitor: a loop monitor the caller already runs (shared with the systemd watchdog); when
            None, the server runs its own.
        app: answers every other path (the status page and its API); None for 404 everywhere else.
    """

    def __init__(
        self,
        config: HealthConfig,
        snapshot: Callable[[], MetricsSnapshot],
        ready: Callable[[], tuple[bool, str]],
        monitor: LoopMonitor | None = None,
        app: App | None = None,
    ) -> None:
        self.config, self.snapshot, self.ready, self.app = config, snapshot, ready, app
        self.monitor = monitor or LoopMonitor(config.max_loop_lag)
        self._own_monitor = monitor is None
        self._connections: set[asyncio.Task[Any]] = set()
        self._waiting: dict[asyncio.Task[Any], tuple[asyncio.StreamWriter, float]] = {}  # oldest first
        self._listening: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._metrics_failing = False
        self._token = config.token.get_secret_value().encode() if config.token else None
        self.port: int = config.port
        self.log = structlog.get_logger().bind(component="health")

    @property
    def open_connections(self) -> int:  # being read, answered or closed right now
        return len(self._connections)

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def run(self) -> None:
        """Listen and serve until cancelled; raises FatalError when the address cannot be bound."""
        host, port = self.config.host, self.config.port
        try:
            server = await asyncio.start_server(
                self._handle, host, port, limit=MAX_REQUEST_BYTES, backlog=512
            )
        except OSError as exc:
            raise FatalError(
                f"health endpoint cannot listen on {host}:{port}: {exc.strerror or exc}; "
                "set another [health] port or stop the program using it"
            ) from exc
        self.port = int(server.sockets[0].getsockname()[1])
        self.log.info("health endpoint listening", url=self.url, token=self._token is not None)
        if self._token is None and not HealthConfig.loopback(host):
            self.log.warning("status page and metrics open to the network: allow_unauthenticated = true")
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
        crowded = len(self._connections) > MAX_CONNECTIONS or len(self._waiting) >= MAX_WAITING
        pushed = crowded and self._push_out_oldest()
        # Full of young connections (a flood): not a refusal, that would turn the probe away with the
        # flood, but a short deadline that only a prompt client meets.
        probation = len(self._connections) > MAX_CONNECTIONS and not pushed
        try:
            request = await self._read(task, reader, writer, probation)
            if writer.transport.is_closing():
                return  # pushed out by a newer connection
            status, ctype, body = self._route(request)
            await answer(writer, status, ctype, body, head_only=bool(request and request.method == "HEAD"))
        except (TimeoutError, ConnectionError):
            pass  # a client that went away, never sent a request, or does not read: nothing to answer
        finally:
            self._waiting.pop(task, None)
            try:
                await _close(writer)
            finally:
                self._connections.discard(task)

    async def _read(
        self,
        task: asyncio.Task[Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        probation: bool,
    ) -> Request | None:
        """The request, or None when malformed; holds a waiting place while it arrives (unless on probation)."""
        if not probation:
            self._waiting[task] = (writer, time.monotonic())
        try:
            async with asyncio.timeout(PROBATION_S if probation else HEADER_DEADLINE_S):
                return await read_request(reader)
        except (ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            return None
        finally:
            self._waiting.pop(task, None)

    def _push_out_oldest(self) -> bool:
        """Drop the connection that has waited longest for its request, if it has had ``MIN_WAIT_S``;
        a reconnecting flood then only replaces its own old sockets, and a prompt probe is read."""
        if not self._waiting:
            return False
        oldest = next(iter(self._waiting))
        writer, since = self._waiting[oldest]
        if time.monotonic() - since < MIN_WAIT_S:
            return False
        del self._waiting[oldest]
        writer.transport.abort()
        return True

    def _authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)

    def _route(self, request: Request | None) -> Response:
        if request is None or not request.path:
            return 400, "text/plain", b"bad request\n"
        if request.method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET and HEAD\n"
        path = request.path
        if path.startswith(PROTECTED) and not self._authorized(request):
            return 401, "application/json", b'{"error": "send Authorization: Bearer <health token>"}\n'
        if path == "/healthz":
            lag = self.monitor.lag()
            if lag > self.monitor.max_lag:
                reason = f"event loop lag {lag:.2f} s is over the {self.monitor.max_lag:g} s limit"
                return json_answer(
                    503, {"status": "unhealthy", "reason": reason, "loop_lag_s": round(lag, 4)}
                )
            return json_answer(200, {"status": "ok", "loop_lag_s": round(lag, 4)})
        if path == "/readyz":
            try:
                ok, reason = self.ready()
            except Exception as exc:
                ok, reason = False, f"readiness check failed: {exc}"
            return json_answer(200 if ok else 503, {"ready": bool(ok), "reason": reason})
        if path == "/metrics":
            return self._metrics()
        answer = self._app(request)
        return answer or (404, "text/plain", b"not found; try /, /healthz, /readyz or /metrics\n")

    def _app(self, request: Request) -> Response | None:
        if self.app is None:
            return None
        try:
            return self.app(request)
        except Exception as exc:
            self.log.exception("status page request failed", path=request.path, error=str(exc))
            return 500, "text/plain", f"failed: {exc}\n".encode()

    def _metrics(self) -> Response:
        try:
            text = render(self.snapshot(), loop_lag_s=self.monitor.lag())
        except Exception as exc:
            if not self._metrics_failing:
                self.log.exception("metrics snapshot failed", error=str(exc))
            self._metrics_failing = True
            return 500, "text/plain", f"metrics snapshot failed: {exc}\n".encode()
        self._metrics_failing = False
        return 200, CONTENT_TYPE, text.encode("utf-8")


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close after the answer is sent, or drop the connection when the client does not take it in time."""
    try:
        if not writer.transport.is_closing():
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(WRITE_DEADLINE_S):
                    await writer.wait_closed()
    finally:
        writer.transport.abort()  # a no-op once closed
