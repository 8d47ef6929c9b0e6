"""Recovery is quick and honest (issue 11 item 9): fast first retries, one line for a flapping peer,
and not ready while a broker acknowledges nothing."""

from __future__ import annotations

import asyncio
import random

import pytest
import structlog
from structlog.testing import capture_logs

from agent.errors import TransientError
from agent.ops.health import readiness
from agent.plugin import ComponentStatus, PluginContext, State
from agent.supervise import Backoff, supervise
from tests.mosquitto import eventually


def test_the_first_attempts_after_a_loss_are_fast_then_it_doubles_to_the_cap() -> None:
    b = Backoff(rng=random.Random(1))
    ceilings = []
    for _ in range(12):
        b.rng = random.Random(0)  # uniform(0, c) with the same draw: ratios show the ceilings
        ceilings.append(b.next_delay())
    ratio = [round(c / ceilings[0], 3) for c in ceilings]
    assert ratio == [1, 1, 1, 1, 2, 4, 8, 16, 32, 60, 60, 60]  # 0.5 s x4, then 1, 2, 4, 8, 16, 30 s


async def test_a_peer_that_drops_every_connection_soon_is_logged_once() -> None:
    status = ComponentStatus("broker", "sink")
    ctx = PluginContext("broker", "a1", __import__("pathlib").Path("."), status)
    runs = 0

    async def run() -> None:
        nonlocal runs
        runs += 1
        ctx.mark_up()  # connected...
        await asyncio.sleep(0.01)
        raise TransientError("connection lost: closed by the broker")  # ...and dropped a moment later

    with capture_logs() as logs:
        task = asyncio.create_task(
            supervise(run, status, structlog.get_logger(), Backoff(base=0.001, cap=0.004)), name="flappy"
        )
        await eventually(lambda: runs >= 30, what="30 short connections")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    events = [e["event"] for e in logs]
    assert events.count("connection lost") == 1 and events.count("recovered") == 1, events[:6]
    assert events.count("connection unstable: it fails again soon after each connect, backing off") == 1
    assert len(events) == 3 and status.flapping


def test_a_connected_sink_that_acknowledges_nothing_is_not_ready() -> None:
    plc, broker = ComponentStatus("plc1", "source"), ComponentStatus("broker", "sink")
    plc.set(State.UP)
    broker.set(State.DOWN, "broker 127.0.0.1:1883 acknowledged nothing within ack_timeout")
    broker.counters["stalled"] = 1
    assert readiness([plc], [broker]) == (False, "sink broker is connected but nothing is acknowledged")
    broker.counters["stalled"] = 0
    assert readiness([plc], [broker])[0]
