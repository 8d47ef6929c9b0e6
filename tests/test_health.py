"""The health endpoint over a real loopback socket, scraped with http.client and parsed with the
Prometheus text parser."""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import socket
import threading
import time
from typing import TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.config.sections import HealthConfig
from agent.errors import FatalError
from agent.ops.health import HealthServer, readiness
from agent.ops.measure import LoopMonitor
from agent.ops.metrics import (
    CONTENT_TYPE,
    BusMetrics,
    Histogram,
    MetricsSnapshot,
    PipelineMetrics,
    SinkMetrics,
    SourceMetrics,
    TagMetrics,
)
from agent.plugin import ComponentStatus, State

T = TypeVar("T")


def fetch(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One blocking request; run it in a thread so the server's loop stays free."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


async def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(fetch, port, path, method)


def snapshot() -> MetricsSnapshot:
    latency = Histogram()
    for value in (0.0002, 0.0004, 0.003, 0.2, 7.0):
        latency.observe(value)
    return MetricsSnapshot(
        info={"agent": "gw-1", "version": "0.1.0"},
        start_time_s=1_700_000_000.0,
        sources=[SourceMetrics("plc1", "up", 1200, 40.0), SourceMetrics('odd"name\\x', "down", 7, 0.0)],
        tags=[TagMetrics("pump.temp", "plc1", 0.5), TagMetrics("pump.flow", "plc1")],
        bus=BusMetrics(depth=12, capacity=10_000, drops_total=3),
        sinks=[SinkMetrics("mqtt", "up", 40, 8_000, 2**20, {"readings": 5, "features": 1}, 26.5)],
        pipelines=[
            PipelineMetrics("pump", "sha256:ab12", latency, 100, 4, 2, 1),
            PipelineMetrics("press", None, Histogram(), 0, 9, 0, 0),
        ],
    )


def config(**overrides: object) -> HealthConfig:
    return HealthConfig.model_validate({"port": 0, **overrides})


async def test_metrics_parse_with_the_prometheus_parser() -> None:
    async with HealthServer(config(), snapshot, lambda: (True, "ok")) as server:
        status, headers, body = await get(server.port, "/metrics")
    assert status == 200
    assert headers["content-type"] == CONTENT_TYPE
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert all(name.startswith("edge_agent_") for name in families)

    def value(family: str, sample: str, **labels: str) -> float:
        found = [s.value for s in families[family].samples if s.name == sample and s.labels == labels]
        assert len(found) == 1, (family, sample, labels)
        return float(found[0])

    assert families["edge_agent_source_readings"].type == "counter"
    assert value("edge_agent_source_readings", "edge_agent_source_readings_total", source="plc1") == 1200
    assert value("edge_agent_source_state", "edge_agent_source_state", source="plc1", state="up") == 1
    assert value("edge_agent_source_state", "edge_agent_source_state", source="plc1", state="down") == 0
    # Label escaping survives the round trip.
    odd = 'odd"name\\x'
    assert value("edge_agent_source_state", "edge_agent_source_state", source=odd, state="down") == 1
    age = "edge_agent_tag_last_good_age_seconds"
    assert value(age, age, tag="pump.temp", source="plc1") == 0.5
    assert math.isinf(value(age, age, tag="pump.flow", source="plc1"))
    assert value("edge_agent_bus_dropped", "edge_agent_bus_dropped_total") == 3
    assert value("edge_agent_outbox_depth_bytes", "edge_agent_outbox_depth_bytes", sink="mqtt") == 8000
    dropped = "edge_agent_outbox_dropped"
    assert value(dropped, dropped + "_total", sink="mqtt", kind="readings") == 5
    hours = "edge_agent_outbox_outage_hours_left"
    assert value(hours, hours, sink="mqtt") == 26.5

    hist = families["edge_agent_inference_latency_seconds"]
    assert hist.type == "histogram"
    buckets = [
        (s.labels["le"], s.value)
        for s in hist.samples
        if s.name.endswith("_bucket") and s.labels["pipeline"] == "pump"
    ]
    assert buckets[0] == ("0.0005", 2)
    assert buckets[-1] == ("+Inf", 5)
    assert [n for _, n in buckets] == sorted(n for _, n in buckets)
    assert value(hist.name, hist.name + "_count", pipeline="pump") == 5
    assert value(hist.name, hist.name + "_sum", pipeline="pump") == pytest.approx(7.2036)

    assert value("edge_agent_windows_skipped", "edge_agent_windows_skipped_total", pipeline="press") == 9
    assert value("edge_agent_alerts_open", "edge_agent_alerts_open", pipeline="pump") == 1
    models = [s.labels for s in families["edge_agent_model_info"].samples]
    assert models == [{"pipeline": "pump", "model": "sha256:ab12"}]  # no model yet: no info line
    assert "edge_agent_event_loop_lag_seconds" in families


async def test_readyz_follows_the_ready_callable() -> None:
    state = {"ready": False, "reason": "sink mqtt connecting"}

    def ready() -> tuple[bool, str]:
        return bool(state["ready"]), str(state["reason"])

    async with HealthServer(config(), snapshot, ready) as server:
        status, headers, body = await get(server.port, "/readyz")
        assert (status, json.loads(body)) == (503, {"ready": False, "reason": "sink mqtt connecting"})
        assert headers["content-type"] == "application/json"
        state.update(ready=True, reason="2 sources up, 1 sink buffering")
        status, _, body = await get(server.port, "/readyz")
        assert (status, json.loads(body)["ready"]) == (200, True)


async def test_a_failing_callable_is_an_answer_not_a_crash() -> None:
    def broken_snapshot() -> MetricsSnapshot:
        raise RuntimeError("runner not started")

    def broken_ready() -> tuple[bool, str]:
        raise RuntimeError("no runner")

    async with HealthServer(config(), broken_snapshot, broken_ready) as server:
        assert (await get(server.port, "/metrics"))[0] == 500
        status, _, body = await get(server.port, "/readyz")
        assert status == 503 and "no runner" in json.loads(body)["reason"]
        assert (await get(server.port, "/healthz"))[0] == 200


async def test_http_edges() -> None:
    async with HealthServer(config(), snapshot, lambda: (True, "ok")) as server:
        assert (await get(server.port, "/nope"))[0] == 404
        status, headers, _ = await get(server.port, "/healthz", method="POST")
        assert status == 405 and headers["allow"] == "GET, HEAD"
        status, headers, body = await get(server.port, "/metrics?x=1", method="HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 100

        def garbage() -> bytes:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"hello\r\n\r\n")
                return sock.recv(100)

        assert (await asyncio.to_thread(garbage)).startswith(b"HTTP/1.1 400")

        # A client that connects and never sends anything must not outlive the server.
        idle = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", server.port), 10)
        await asyncio.sleep(0.05)
    idle.close()


async def test_healthz_turns_503_while_the_loop_is_blocked() -> None:
    cfg = config(max_loop_lag="1s")
    async with HealthServer(cfg, snapshot, lambda: (True, "ok")) as server:
        status, _, body = await get(server.port, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"

        # The request is sent from another thread while this loop is stuck in a blocking call (the
        # kernel accepts the connection meanwhile); the loop stays stuck until it is sent, and for
        # longer than max_loop_lag, then answers it.
        sent = threading.Event()

        def request() -> tuple[int, dict[str, str], bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                conn.request("GET", "/healthz")
                sent.set()
                resp = conn.getresponse()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
            finally:
                sent.set()
                conn.close()

        during = asyncio.get_running_loop().run_in_executor(None, request)
        blocked_at = time.monotonic()
        sent.wait(30)  # blocking the loop is what this test is about
        time.sleep(max(0.0, 1.5 - (time.monotonic() - blocked_at)))  # noqa: ASYNC251 - a stall > max_loop_lag
        status, _, body = await during
        assert status == 503
        assert "event loop lag" in json.loads(body)["reason"]

        # Once the loop ticks normally again, it is healthy again.
        for _ in range(100):
            if (await get(server.port, "/healthz"))[0] == 200:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("/healthz never recovered")


async def test_loop_monitor_reports_an_ongoing_stall_to_other_threads() -> None:
    monitor = LoopMonitor(max_lag=0.5, interval=0.05)
    async with asyncio.TaskGroup() as tg:
        ticker = tg.create_task(monitor.run(), name="test-monitor")
        await asyncio.sleep(0.2)
        assert monitor.responsive()
        seen = threading.Event()

        def until_lagging() -> float:
            deadline = time.monotonic() + 20
            while (lag := monitor.lag()) <= 0.5 and time.monotonic() < deadline:
                time.sleep(0.02)
            seen.set()
            return lag

        lag_seen = asyncio.get_running_loop().run_in_executor(None, until_lagging)
        seen.wait(30)  # the loop stays blocked until the other thread saw the stall
        loop_lag_from_thread = await lag_seen
        ticker.cancel()
    assert loop_lag_from_thread > 0.5


async def test_a_taken_port_is_a_clear_fatal_error(port: int) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(FatalError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with HealthServer(config(port=port), snapshot, lambda: (True, "ok")):
                pass


def test_health_config_defaults_and_durations() -> None:
    cfg = HealthConfig()
    assert (cfg.enabled, cfg.host, cfg.port, cfg.max_loop_lag) == (True, "127.0.0.1", 9108, 2.0)
    assert HealthConfig.model_validate({"max_loop_lag": "500ms"}).max_loop_lag == 0.5
    with pytest.raises(ValueError, match="extra"):
        HealthConfig.model_validate({"prot": 1})


def test_readiness_waits_for_sources_not_for_the_broker() -> None:
    plc = ComponentStatus("plc1", "source")
    broker = ComponentStatus("broker", "sink")
    assert readiness([plc], [broker]) == (False, "source plc1 is starting")
    plc.set(State.UP)
    broker.set(State.DOWN, "connection refused")
    assert readiness([plc], [broker]) == (True, "sources up, sinks connected or buffering")
    plc.set(State.DOWN, "timeout")
    broker.set(State.STOPPED)
    assert readiness([plc], [broker]) == (False, "source plc1 is down (timeout); sink broker is stopped")
