"""Small measurements the observer keeps: event loop lag, a latency histogram and counter rates."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Inference latency buckets in seconds: a small model runs in well under a millisecond."""


class Histogram:
    """A histogram with fixed upper bounds, observed from the event loop (not thread-safe).

    Args:
        buckets: increasing upper bounds in seconds; ``+Inf`` is implied.
    """

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or any(b >= c for b, c in itertools.pairwise(bounds)) or bounds[0] <= 0:
            raise ValueError(f"histogram buckets must be positive and increasing, got {buckets!r}")
        self.buckets = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` pairs, ending with ``(inf, count)``."""
        out, running = [], 0
        for bound, n in zip((*self.buckets, math.inf), self._counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass(frozen=True)
class Sample:
    """A cumulative counter read at a monotonic time, e.g. bytes appended to an outbox so far."""

    t: float
    value: float


def rate_per_second(earlier: Sample, later: Sample) -> float:
    """The counter's rate between two samples; 0 when no time passed or the counter was reset."""
    dt = later.t - earlier.t
    dv = later.value - earlier.value
    return dv / dt if dt > 0 and dv >= 0 else 0.0


def outage_hours(free_bytes: float, earlier: Sample, later: Sample) -> float:
    """Hours of outage the outbox can still absorb: free bytes over the append rate in bytes per hour.

    Args:
        free_bytes: the outbox cap minus its current depth in bytes.
        earlier: appended bytes (cumulative) at an earlier time.
        later: appended bytes (cumulative) now.

    Returns:
        ``inf`` when nothing is being appended (the outbox never fills), else ``>= 0``.
    """
    per_hour = rate_per_second(earlier, later) * 3600.0
    return math.inf if per_hour <= 0 else max(0.0, free_bytes) / per_hour


class LoopMonitor:
    """Measures event loop lag with a ticker task: how late each ``interval`` sleep wakes up.

    ``lag()`` is safe to call from any thread; while the loop is stuck, it grows with the time since
    the tick was due, so the stall shows even before the ticker runs again.
    """

    def __init__(self, max_lag: float, interval: float | None = None) -> None:
        self.max_lag = max_lag
        # At most one tick a second: lag() already grows while the loop is stuck, so a slower ticker
        # only delays the first report of a stall, and every wake-up costs ~0.25 ms here (issue 17).
        self.interval = interval if interval is not None else min(1.0, max_lag / 2)
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
