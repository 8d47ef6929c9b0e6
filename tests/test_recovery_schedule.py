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


def test_the_retry_ceiling_is_a_quarter_of_the_time_down_between_half_a_second_and_30_s() -> None:
    now = 0.0
    b = Backoff(rng=random.Random(1), clock=lambda: now)
    ceilings = {}
    for down_for in (0, 1, 2, 8, 20, 60, 119, 120, 3600):
        now = down_for
        b.rng = random.Random(0)  # the same draw each time: the delays are proportional to the ceiling
        ceilings[down_for] = b.next_delay()
    unit = ceilings[0] / 0.5
    assert {k: round(v / unit, 3) for k, v in ceilings.items()} == {
        0: 0.5,
        1: 0.5,
        2: 0.5,
        8: 2.0,
        20: 5.0,
        60: 15.0,
        119: 29.75,
        120: 30.0,
        3600: 30.0,
    }
    b.reset()
    now = 4000.0
    assert b.next_delay() <= 0.5  # a new episode starts gently


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
