"""What a recording allows: windows with gaps left out, and a hop short enough for a short recording.

* **Gaps.** A training window in which some tag was not read for longer than the window's
  ``max_age`` (the source went silent, a cable was pulled) is not normal operation of the machine, and
  one such window could set a limit; ``has_gap`` finds them, and ``train`` leaves those
  windows out of fitting and limit setting and counts them on the model card.
* **Hop.** ``train`` needs ``MIN_ROWS`` windows. When the configured hop gives fewer (a 400 s recording
  at 1 Hz cut into 60 s tumbling windows gives 6), ``pick_hop`` finds the longest hop, a whole number of
  periods, that gives ``WANTED`` windows, and ``train`` says which it used; when even a hop of one
  period is not enough, it refuses with the exact config change (a shorter ``length``) or the recording
  length that would do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from agent.config.sections import PipelineConfig
from agent.errors import ModelError
from agent.learn.fit import MIN_ROWS
from agent.stream.windows import Window

WANTED = 2 * MIN_ROWS  # windows a picked hop aims for, so a few left out still leave enough


def _dur(seconds: float) -> str:
    return f"{seconds:g}s"


def has_gap(window: Window, gaps: Sequence[tuple[float, float]]) -> bool:
    """Whether a gap ``(from, to)`` (a tag unread for longer than ``max_age``) overlaps ``window``."""
    return any(lo < window.end and hi > window.start for lo, hi in gaps)


def windows_for(span: float, length: float, hop: float) -> int:
    """How many windows of ``length`` every ``hop`` fit in ``span`` seconds of data."""
    return 0 if span < length else int((span - length) // hop) + 1


def pick_hop(pipe: PipelineConfig, span: float) -> float | None:
    """A hop giving enough windows over ``span`` seconds, or None when the configured one already does.

    Raises:
        ModelError: no hop can: the message names the ``length`` (or the recording span) that would.
    """
    w = pipe.window
    if w.kind != "time" or windows_for(span, w.length, w.hop_s) >= MIN_ROWS:
        return None
    steps = (span - w.length) / (WANTED - 1) if span >= w.length else 0.0
    hop = max(math.floor(steps / w.period), 0) * w.period
    if hop < w.period:
        hop = w.period
    if windows_for(span, w.length, hop) >= MIN_ROWS:
        return hop
    # Even one window per period is not enough: say exactly what would be.
    longest = span - (MIN_ROWS - 1) * w.period
    need = w.length + (MIN_ROWS - 1) * w.period
    fix = (
        f'set length = "{_dur(math.floor(longest / w.period) * w.period)}" in '
        f"[pipelines.window] of pipeline {pipe.name!r}, or "
        if longest >= 2 * w.period
        else ""
    )
    raise ModelError(
        f"the recording spans {_dur(span)}, too short for {MIN_ROWS} windows of "
        f"{_dur(w.length)} even at a hop of one period ({_dur(w.period)}): "
        f"{fix}record at least {_dur(need)}"
    )
