"""The bus's overflow policies and the supervisor's restart, logging and backoff."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from structlog.testing import capture_logs

from agent.delivery.bus import Bus
from agent.errors import FatalError, TransientError
from agent.plugin import ComponentStatus, PluginContext, State
from agent.records import Reading
from agent.supervise import Backoff, supervise
from tests.mosquitto import eventually


def batch(n: int) -> list[Reading]:
    return [Reading(f"t{i}", 0.0, 1.0) for i in range(n)]


async def test_drop_oldest_keeps_the_freshest_and_counts_drops() -> None:
    bus = Bus(capacity=6, policy="drop_oldest")
    for i in range(4):
        await bus.put(f"s{i}", batch(3))
    assert bus.stats.dropped_batches == 2 and bus.stats.dropped_readings == 6
    got = [await bus.get(), await bus.get()]
    assert [g[0] for g in got if g] == ["s2", "s3"]


async def test_drop_newest_keeps_the_backlog() -> None:
    bus = Bus(capacity=1, policy="drop_newest")  # readings
    await bus.put("a", batch(1))
    await bus.put("b", batch(1))
    item = await bus.get()
    assert item is not None and item[0] == "a" and bus.stats.dropped_batches == 1


async def test_block_makes_the_producer_wait_and_close_drains() -> None:
    bus = Bus(capacity=1, policy="block")
    await bus.put("a", batch(1))
    producer = asyncio.create_task(bus.put("b", batch(1)), name="producer")
    await asyncio.sleep(0.05)
    assert not producer.done()
    assert (await bus.get()) is not None
    await producer
    await bus.close()
    assert (await bus.get()) is not None and (await bus.get()) is None
    assert bus.stats.dropped_batches == 0


def test_backoff_is_full_jitter_and_capped() -> None:
    b = Backoff(base=1, cap=8, rng=random.Random(3))
    delays = [b.next_delay() for _ in range(20)]
    assert all(0 <= d <= 8 for d in delays)
    assert max(delays[:3]) <= 4
    b.reset()
    assert b.next_delay() <= 1


async def test_supervisor_restarts_logs_once_on_failure_and_once_on_recovery() -> None:
    status = ComponentStatus("plc", "source")
    ctx = PluginContext("plc", "gw", __import__("pathlib").Path("."), status)
    attempts = 0
    done = asyncio.Event()

    async def run() -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 4:
            raise TransientError("connection refused")
        ctx.mark_up()
        done.set()
        await asyncio.Event().wait()

    with capture_logs() as logs:
        ctx.log = __import__("structlog").get_logger().bind(component="plc")
        task = asyncio.create_task(supervise(run, status, ctx.log, Backoff(base=0.001, cap=0.01)), name="sup")
        await asyncio.wait_for(done.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    events = [e["event"] for e in logs]
    assert events == ["connection lost", "recovered"]
    assert logs[1]["after_failures"] == 4
    assert status.failures == 4 and status.state is State.STOPPED


async def test_fatal_errors_are_retried_at_the_cap() -> None:
    status = ComponentStatus("broker", "sink")
    calls: list[float] = []

    async def run() -> None:
        calls.append(asyncio.get_running_loop().time())
        raise FatalError("not authorised: check username and password")

    with capture_logs() as logs:
        task = asyncio.create_task(
            supervise(run, status, __import__("structlog").get_logger(), Backoff(base=0.001, cap=0.05)),
            name="sup",
        )
        await eventually(lambda: len(calls) >= 3, what="three attempts")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert min(gaps) >= 0.04, gaps  # at the cap (0.05 s), not the 1 ms base: no jitter for fatal errors
    assert [e["event"] for e in logs] == ["failed, needs attention"]
    assert status.last_error == "not authorised: check username and password"
