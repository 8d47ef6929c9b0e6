"""When batched readings leave for the outbox: at once when due, never later than ``readings_interval``."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from agent.records import Reading
from agent.runtime.streaming import Streaming


def streaming(interval: float, flushed_at: float, pending: bool) -> Streaming:
    s = Streaming()
    s.cfg = SimpleNamespace(agent=SimpleNamespace(readings_interval=interval))  # type: ignore[assignment]
    s._readings_flushed_at = flushed_at
    s._pending_readings = {"plc": [[Reading("t", 0.0, 1.0)]]} if pending else {}
    return s


def test_nothing_pending_waits_the_idle_period() -> None:
    assert streaming(0.1, 5.0, pending=False)._readings_wait(5.01) == 0.5


def test_the_first_readings_go_out_at_once() -> None:
    assert streaming(0.1, -math.inf, pending=True)._readings_wait(0.0) == 0.0


@pytest.mark.parametrize("since", [0.091, 0.0999, 0.1, 0.35])
def test_a_poll_at_the_interval_is_flushed_as_it_arrives(since: float) -> None:
    # a source polling every readings_interval, a little early or late: no wake-up of its own (issue 17)
    assert streaming(0.1, 10.0, pending=True)._readings_wait(10.0 + since) == 0.0


@pytest.mark.parametrize("since", [0.0, 0.01, 0.05, 0.089])
def test_early_readings_wait_until_one_interval_after_the_last_flush(since: float) -> None:
    wait = streaming(0.1, 10.0, pending=True)._readings_wait(10.0 + since)
    assert wait == pytest.approx(0.1 - since)
    assert since + wait <= 0.1 + 1e-9  # none waits longer than the interval


def test_a_late_flush_does_not_delay_the_next_polls() -> None:
    # polls arrive every 100 ms; one was flushed 15 ms late (a busy loop). The next poll is 100 ms after
    # that one's arrival, so it goes out as it arrives, instead of 15 ms late again and for good.
    s = streaming(0.1, 10.0, pending=True)
    s._readings_first_at = 10.1
    assert s._readings_wait(10.115) == 0.0
    s._emit = lambda messages: None  # type: ignore[method-assign]
    s.clock = lambda: 0.0
    s._flush_readings()
    s._pending_readings = {"plc": [[Reading("t", 0.0, 1.0)]]}
    assert s._readings_wait(10.2) == 0.0
