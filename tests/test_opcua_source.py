"""The OPC UA source against real asyncua servers: in-process, and in a subprocess killed and restarted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.errors import TransientError
from agent.plugin import ComponentStatus, PluginContext, State
from agent.records import Quality, Reading
from agent.supervise import Backoff, supervise
from plugins.opcua.config import OpcUaSourceConfig
from plugins.opcua.source import OpcUaSource
from tests.conftest import free_port
from tests.opcua_server import NS_URI, BlackHoleProxy, Plant, ServerProcess, plant_server

FAST = {
    "publishing_interval": 0.05,
    "keepalive_interval": 0.25,
    "poll_interval": 0.05,
    "request_timeout": 1.0,
}


def make_source(port: int, tmp_path: Path, tags: list[dict[str, str]], **kw: object) -> OpcUaSource:
    data = (
        {"type": "opcua", "name": "plc", "endpoint": f"opc.tcp://127.0.0.1:{port}/", "tags": tags} | FAST | kw
    )
    cfg = OpcUaSourceConfig.model_validate(data)
    return OpcUaSource(cfg, PluginContext("plc", "agent", tmp_path, ComponentStatus("plc", "source")))


class Collector:
    """The ``emit`` callback: keeps readings and lets a test wait for a condition on them."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self._changed = asyncio.Event()

    async def __call__(self, batch: Sequence[Reading]) -> None:
        self.readings.extend(batch)
        self._changed.set()

    def latest(self, tag: str) -> Reading | None:
        return next((r for r in reversed(self.readings) if r.tag == tag), None)

    async def wait_for(self, cond: Callable[[], bool], within_s: float = 20.0) -> None:
        async with asyncio.timeout(within_s):
            while not cond():
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def running(coro: Awaitable[None]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.ensure_future(coro)
    task.set_name("opcua-source")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def plant_tags(*names: str) -> list[dict[str, str]]:
    return [{"name": n.replace("Line1.", "").lower(), "node": f"nsu={NS_URI};s={n}"} for n in names]


@pytest.fixture
async def plant(port: int) -> AsyncIterator[Plant]:
    async with plant_server(port) as p:
        yield p


@pytest.mark.parametrize("mode", ["subscription", "poll"])
async def test_values_flow_and_one_bad_node_does_not_stop_the_others(
    plant: Plant, port: int, tmp_path: Path, mode: str
) -> None:
    tags = plant_tags("Line1.V0", "Line1.V1", "Line1.Running", "Line1.Mode", "Line1.Array")
    tags.insert(1, {"name": "ghost", "node": f"nsu={NS_URI};s=Line1.DoesNotExist"})
    tags.append({"name": "elsewhere", "node": "nsu=urn:not-on-this-server;i=1"})
    source, got = make_source(port, tmp_path, tags, mode=mode), Collector()
    async with running(source.run(got)):
        await got.wait_for(lambda: got.latest("v0") is not None)
        await plant.set_all(42.5)
        await got.wait_for(lambda: (r := got.latest("v1")) is not None and r.value == 42.5)
    assert source.ctx.status.state is State.UP
    by_tag = {r.tag: r for r in got.readings}
    assert (by_tag["ghost"].quality, by_tag["ghost"].reason) == (Quality.BAD, "BadNodeIdUnknown")
    assert by_tag["elsewhere"].quality is Quality.BAD and "urn:not-on-this-server" in str(
        by_tag["elsewhere"].reason
    )
    assert (by_tag["array"].quality, by_tag["array"].reason) == (Quality.BAD, "unsupported type array")
    assert by_tag["running"].value is True and by_tag["mode"].value == "auto"
    assert got.latest("v0") == Reading("v0", got.latest("v0").ts, 42.5)  # type: ignore[union-attr]


async def test_bad_status_from_the_server_is_a_bad_reading_with_its_name(
    plant: Plant, port: int, tmp_path: Path
) -> None:
    from asyncua import ua

    source, got = make_source(port, tmp_path, plant_tags("Line1.V0", "Line1.V1")), Collector()
    async with running(source.run(got)):
        await got.wait_for(lambda: got.latest("v1") is not None)
        await plant.set_status(1, ua.StatusCodes.BadSensorFailure)
        await got.wait_for(lambda: (r := got.latest("v1")) is not None and r.quality is Quality.BAD)
    assert got.latest("v1") == Reading("v1", got.latest("v1").ts, None, Quality.BAD, "BadSensorFailure")  # type: ignore[union-attr]


async def test_read_once(plant: Plant, port: int, tmp_path: Path) -> None:
    await plant.set_all(7.0)
    readings = await make_source(port, tmp_path, plant_tags("Line1.V0", "Line1.V2")).read_once()
    assert [(r.tag, r.value) for r in readings] == [("v0", 7.0), ("v2", 7.0)]


async def test_unreachable_server_is_a_transient_error_naming_the_endpoint(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(TransientError, match=f"127.0.0.1:{port}"):
        await make_source(port, tmp_path, plant_tags("Line1.V0")).run(Collector())


@pytest.mark.parametrize("mode", ["subscription", "poll"])
async def test_recovers_after_server_restart_with_renumbered_namespace(tmp_path: Path, mode: str) -> None:
    """Kill the server process, start it again with an extra namespace first: nsu= still finds the tags."""
    port = free_port()
    source, got = make_source(port, tmp_path, plant_tags("Line1.V0"), mode=mode), Collector()
    ctx = source.ctx
    async with ServerProcess(port, rate=20) as server:
        first_ns = server.ns
        with capture_logs() as logs:
            run = supervise(lambda: source.run(got), ctx.status, ctx.log, Backoff(base=0.1, cap=0.5))
            async with running(run):
                await got.wait_for(lambda: len(got.readings) >= 3)
                await server.kill()
                async with asyncio.timeout(15):
                    while ctx.status.state is not State.DOWN:  # noqa: ASYNC110 - status has no change event
                        await asyncio.sleep(0.05)
                await server.start(extra_namespace=True)
                assert server.ns == first_ns + 1
                seen = len(got.readings)
                await got.wait_for(lambda: len(got.readings) >= seen + 3 and ctx.status.state is State.UP)
    events = [e["event"] for e in logs]
    assert events.count("connection lost") == 1 and events.count("recovered") == 1
    after = got.readings[seen:]
    assert all(r.quality is Quality.GOOD for r in after), after[:3]


async def test_black_hole_is_caught_by_the_watchdog_and_the_client_recreated(
    plant: Plant, port: int, tmp_path: Path
) -> None:
    proxy_port = free_port()
    # A short session timeout, so the session orphaned by the black hole expires on the server before the end.
    source, got = make_source(proxy_port, tmp_path, plant_tags("Line1.V0"), session_timeout=1.0), Collector()
    ctx = source.ctx
    async with BlackHoleProxy(proxy_port, port) as proxy:
        run = supervise(lambda: source.run(got), ctx.status, ctx.log, Backoff(base=0.1, cap=0.5))
        with capture_logs() as logs:
            async with running(run):
                await got.wait_for(lambda: ctx.status.state is State.UP)
                proxy.freeze()
                # Wait on the failure counter, not the DOWN state: recovery can be quicker than any poll
                # (and clears last_error), so the reason is checked in the log line the operator sees.
                async with asyncio.timeout(20):
                    while ctx.status.failures < 1:  # noqa: ASYNC110 - status has no change event
                        await asyncio.sleep(0.05)
                await plant.set_all(99.0)
                await got.wait_for(lambda: (r := got.latest("v0")) is not None and r.value == 99.0)
                assert ctx.status.state is State.UP
            await asyncio.sleep(1.5)  # let the orphaned server-side session time out
    lost = [e for e in logs if e["event"] == "connection lost"]
    assert len(lost) == 1 and "connected but silent" in lost[0]["error"]


async def test_absolute_deadband_and_trigger_reach_the_server(
    plant: Plant, port: int, tmp_path: Path
) -> None:
    tags = plant_tags("Line1.V0", "Line1.V1")
    tags[0] |= {"deadband": "absolute", "deadband_value": "10"}
    source, got = make_source(port, tmp_path, tags, trigger="status_value"), Collector()
    async with running(source.run(got)):
        await got.wait_for(lambda: got.latest("v0") is not None and got.latest("v1") is not None)
        await plant.set_all(5.0)  # within the deadband of v0, a change for v1
        await got.wait_for(lambda: (r := got.latest("v1")) is not None and r.value == 5.0)
        await plant.set_all(50.0)
        await got.wait_for(lambda: (r := got.latest("v0")) is not None and r.value == 50.0)
    assert [r.value for r in got.readings if r.tag == "v0"] == [0.0, 50.0]
