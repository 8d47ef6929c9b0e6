"""Windows with time given by hand: alignment, hold, gaps, idle advance, count windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.stream.windows import CountWindower, TimeWindower


def feed(w: TimeWindower, rows: list[tuple[float, list[float]]], now: float = 0.0) -> None:
    for ts, values in rows:
        for i, v in enumerate(values):
            w.add(i, ts, v, now)


def test_tumbling_windows_are_aligned_to_the_hop_and_close_on_the_next_reading() -> None:
    w = TimeWindower(n_tags=1, length=5, hop=5, period=1, max_age=3)
    feed(w, [(t, [float(t)]) for t in range(3, 16)])
    windows = w.take()
    assert [(x.start, x.end) for x in windows] == [(5.0, 10.0)]  # ends on multiples of 5; 15 not yet final
    assert windows[0].values[:, 0].tolist() == [6, 7, 8, 9, 10]
    feed(w, [(16.0, [16.0])])
    assert [(x.start, x.end) for x in w.take()] == [(10.0, 15.0)]


def test_hopping_windows_overlap() -> None:
    w = TimeWindower(n_tags=1, length=4, hop=2, period=1, max_age=3)
    feed(w, [(t, [float(t)]) for t in range(0, 11)])
    assert [x.end for x in w.take()] == [4.0, 6.0, 8.0]  # the tick at 10 closes with the next reading


def test_tags_are_aligned_and_a_value_is_held_at_most_max_age() -> None:
    w = TimeWindower(n_tags=2, length=6, hop=6, period=1, max_age=2)
    for t in range(0, 14):
        w.add(0, float(t), float(t), 0)
        if t == 1:
            w.add(1, float(t), 100.0, 0)  # tag 1 reports once, then goes quiet
    window = w.take()[-1]
    assert window.end == 12.0
    assert np.isnan(window.values[:, 1]).all()  # 100 held until t=3 only, before this window
    assert window.coverage().tolist() == [1.0, 0.0]


def test_bad_reading_is_a_gap_not_a_zero() -> None:
    w = TimeWindower(n_tags=1, length=4, hop=4, period=1, max_age=10)
    for t in range(0, 10):
        w.add(0, float(t), math.nan if t in (5, 6) else 1.0, 0)
    window = w.take()[-1]
    assert window.end == 8.0
    assert np.isnan(window.values[:, 0]).sum() == 2
    assert 0.0 not in window.values[:, 0].tolist()


def test_idle_advances_event_time_so_a_dead_source_gives_empty_windows() -> None:
    w = TimeWindower(n_tags=1, length=2, hop=2, period=1, max_age=1)
    for t in range(0, 5):
        w.add(0, float(t), 1.0, now=1000.0 + t)
    w.take()
    w.idle(now=1004.5)  # within max_age of the last arrival: nothing moves
    assert w.take() == []
    w.idle(now=1010.0)  # six wall seconds of silence
    coverage = [float(x.coverage()[0]) for x in w.take()]
    assert coverage[-1] == 0.0  # windows keep coming, reported empty
    assert coverage == sorted(coverage, reverse=True)


def test_a_long_gap_does_not_emit_every_empty_window() -> None:
    w = TimeWindower(n_tags=1, length=10, hop=1, period=1, max_age=1)
    w.add(0, 0.0, 1.0, 0)
    w.add(0, 1_000_000.0, 1.0, 0)
    assert 0 < len(w.take()) < 20


def test_count_windows_sample_other_tags_at_clock_tag_readings() -> None:
    w = CountWindower(n_tags=2, size=3, step=2, max_age=5)
    for t in range(0, 8):
        w.add(1, float(t), 10.0 + t, 0)
        w.add(0, float(t), float(t), 0)
    windows = w.take()
    assert [x.values[:, 0].tolist() for x in windows] == [[0, 1, 2], [2, 3, 4], [4, 5, 6]]
    assert windows[0].values[:, 1].tolist() == [10, 11, 12]


def test_hop_longer_than_length_is_refused() -> None:
    with pytest.raises(ValueError):
        TimeWindower(1, length=1, hop=2, period=1, max_age=1)
