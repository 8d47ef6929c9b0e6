"""Windows: align several tags on a common grid and cut the grid into rolling windows.

Pure and synchronous; time is whatever the readings say (event time) plus an injected wall clock for
idle advance. Two kinds:

* ``TimeWindower``: every ``period`` seconds of event time a grid row samples each tag's last value, held
  for at most ``max_age`` (older, missing or BAD -> NaN). A window of ``length`` seconds is emitted every
  ``hop`` seconds, its end aligned to a multiple of ``hop`` so windows are the same whenever the agent
  started. ``hop == length`` gives tumbling windows.
* ``CountWindower``: a row per reading of the first tag (the clock tag), other tags sampled as above; a
  window of ``size`` rows every ``step`` rows.

A row is emitted only when a later reading proves the tick is in the past, so readings of one poll that
share a timestamp land in the same row. When a source goes silent, ``idle(now)`` moves event time on by
the wall-clock time elapsed since the last reading once ``max_age`` has passed, so a dead PLC yields
windows reported as low coverage instead of no windows at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# A gap longer than this many windows is skipped in one step instead of emitting every empty window.
_MAX_WINDOWS_PER_ADVANCE = 4


@dataclass(frozen=True, slots=True)
class Window:
    """A closed window: ``values[i, j]`` is tag j at row i, NaN where there was no good value.

    Attributes:
        start: epoch seconds, exclusive lower bound (``end - length`` for time windows).
        end: epoch seconds of the last row.
        values: float64 array of shape (rows, tags).
        times: epoch seconds of each row.
    """

    start: float
    end: float
    values: np.ndarray
    times: np.ndarray

    def coverage(self) -> np.ndarray:
        """Fraction of rows with a good value, per tag."""
        return np.asarray(1.0 - np.isnan(self.values).mean(axis=0))


class _Holder:
    """Last value of each tag and when it was read; BAD readings hold NaN."""

    def __init__(self, n_tags: int, max_age: float) -> None:
        self.value = np.full(n_tags, np.nan)
        self.ts = np.full(n_tags, -np.inf)
        self.max_age = max_age

    def set(self, i: int, ts: float, value: float) -> None:
        # +-inf is no more a measurement than NaN: it must not count as coverage (issue 11 item 8).
        self.value[i] = value if -math.inf < value < math.inf else math.nan
        self.ts[i] = ts

    def sample(self, t: float) -> np.ndarray:
        fresh = (t - self.ts) <= self.max_age
        return np.where(fresh, self.value, np.nan)


class _Ring:
    """Fixed number of rows, oldest overwritten; ``window()`` returns them oldest first."""

    def __init__(self, rows: int, n_tags: int) -> None:
        self.values = np.full((rows, n_tags), np.nan)
        self.times = np.zeros(rows)
        self.pos = 0
        self.filled = 0

    def push(self, t: float, row: np.ndarray) -> None:
        self.values[self.pos] = row
        self.times[self.pos] = t
        self.pos = (self.pos + 1) % len(self.times)
        self.filled = min(self.filled + 1, len(self.times))

    def window(self, start: float, end: float) -> Window:
        order = np.r_[self.pos : len(self.times), 0 : self.pos]
        return Window(start, end, self.values[order], self.times[order])

    def clear(self) -> None:
        self.values.fill(np.nan)
        self.filled = 0


class TimeWindower:
    """Grid-aligned time windows over ``n_tags`` tags. See the module docstring."""

    def __init__(self, n_tags: int, length: float, hop: float, period: float, max_age: float) -> None:
        if not 0 < hop <= length:
            raise ValueError("hop must be > 0 and <= length")
        self.period = period
        self.length = length
        self.rows = max(1, round(length / period))
        self.hop_rows = max(1, round(hop / period))
        self.max_age = max_age
        self._held = _Holder(n_tags, max_age)
        self._ring = _Ring(self.rows, n_tags)
        self._tick: int | None = None  # index of the next grid tick to emit (tick time = index * period)
        self._ready: list[Window] = []
        self.last_event = -math.inf
        self.last_arrival = -math.inf

    def add(self, i: int, ts: float, value: float, now: float) -> None:
        """Record tag ``i``'s reading (NaN for BAD) at event time ``ts``, received at wall time ``now``."""
        if self._tick is None:
            self._tick = math.ceil(ts / self.period)
        elif ts > self._tick * self.period:
            self._advance_to(ts)
        self._held.set(i, ts, value)
        if ts > self.last_event:
            self.last_event = ts
        self.last_arrival = now

    def idle(self, now: float) -> None:
        """Move event time on while no reading arrives (wall clock ``now``), once ``max_age`` has passed."""
        if self._tick is None or now - self.last_arrival <= self.max_age:
            return
        self._advance_to(self.last_event + (now - self.last_arrival))

    def _advance_to(self, ts: float) -> None:
        assert self._tick is not None
        last = math.ceil(ts / self.period) - 1  # every tick strictly before ts is now final
        budget = self.rows + _MAX_WINDOWS_PER_ADVANCE * self.hop_rows
        if last - self._tick > budget:
            self._ring.clear()
            self._tick = last - budget
        for tick in range(self._tick, last + 1):
            t = tick * self.period
            self._ring.push(t, self._held.sample(t))
            if self._ring.filled == self.rows and tick % self.hop_rows == 0:
                self._ready.append(self._ring.window(t - self.length, t))
        self._tick = max(self._tick, last + 1)

    def take(self) -> list[Window]:
        """The windows closed since the last call, oldest first."""
        ready, self._ready = self._ready, []
        return ready


class CountWindower:
    """Windows of ``size`` rows every ``step`` rows, a row per reading of tag 0. See the module docstring."""

    def __init__(self, n_tags: int, size: int, step: int, max_age: float) -> None:
        if not 0 < step <= size:
            raise ValueError("step must be > 0 and <= size")
        self.size, self.step = size, step
        self._held = _Holder(n_tags, max_age)
        self._ring = _Ring(size, n_tags)
        self._since = 0
        self._ready: list[Window] = []
        self.max_age = max_age

    def add(self, i: int, ts: float, value: float, now: float) -> None:
        self._held.set(i, ts, value)
        if i != 0:
            return
        self._ring.push(ts, self._held.sample(ts))
        self._since += 1
        if self._ring.filled == self.size and self._since >= self.step:
            self._since = 0
            window = self._ring.window(0.0, ts)
            self._ready.append(Window(float(window.times[0]), ts, window.values, window.times))

    def idle(self, now: float) -> None:
        """Count windows do not move without readings of their clock tag."""

    def take(self) -> list[Window]:
        ready, self._ready = self._ready, []
        return ready
