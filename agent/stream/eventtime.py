"""Bounded event time: a reading stamped far from the agent's clock does not move the window grid.

Windows run on event time (the PLC's timestamps). One tag stamped an hour ahead for a few seconds used to
move the grid an hour ahead: no windows for the rest of the run, nothing logged (issue 11 item 3). A
source's ``max_clock_skew`` bounds that: a reading whose timestamp is further than the skew from the wall
clock at arrival is either re-stamped with the arrival time and marked ``uncertain`` (its value is kept,
the reason says by how much the clock was off) or dropped, as ``clock_skew_policy`` says. Each episode
(the first reading off, until a reading of that source is within bounds again) is logged once when it
starts and once when it ends, with the count of readings it touched.

Pure and synchronous: the wall clock comes in as ``now``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from agent.batch import ReadingBatch, ReadingChain, parts
from agent.records import Quality, Reading

Policy = Literal["restamp", "drop"]


class EventTimeGuard:
    """Re-stamps (or drops) readings of one source whose timestamp is off the wall clock by > ``skew``.

    An episode starts with the first reading off and ends when every tag that was off has sent a reading
    within bounds again; it is logged once at each end.

    Args:
        skew: tolerance in seconds, either way.
        policy: ``restamp`` (arrival time, quality ``uncertain``) or ``drop``.
        log: a structlog logger of the source; one line per episode start and end.
    """

    def __init__(self, skew: float, policy: Policy = "restamp", log: Any = None) -> None:
        if skew <= 0:
            raise ValueError("skew must be > 0")
        self.skew = skew
        self.policy = policy
        self.log = log
        self.off: set[str] = set()  # tags whose last reading was off
        self.episode = 0  # readings touched in the current episode
        self.total = 0  # readings touched since start

    def __call__(self, readings: Sequence[Reading], now: float) -> Sequence[Reading]:
        """``readings`` with those off the clock re-stamped or left out: a list, or for a
        ``ReadingChain`` / ``ReadingBatch`` a ``ReadingChain`` in which a batch within bounds is kept whole."""
        was_off = bool(self.off)
        if readings.__class__ is ReadingBatch or readings.__class__ is ReadingChain:
            kept: list[Sequence[Reading]] = []
            worst: Reading | None = None
            for part in parts(readings):
                if part.__class__ is ReadingBatch and abs(part.ts - now) <= self.skew:
                    if self.off:  # the usual case is no tag off the clock: nothing to walk
                        self.off.difference_update(part.layout.tags)
                    kept.append(part)
                else:
                    checked, first = self._check(part, now, was_off)
                    kept.append(checked)
                    worst = worst or first
            out: Sequence[Reading] = ReadingChain(kept)
        else:
            out, worst = self._check(readings, now, was_off)
        if worst is not None and self.log is not None:
            verb = "re-stamped" if self.policy == "restamp" else "dropped"
            self.log.warning(
                f"source clock off, readings {verb}",
                tag=worst.tag,
                offset_s=round(worst.ts - now, 1),
                max_clock_skew_s=self.skew,
            )
        if was_off and not self.off:
            if self.log is not None:
                self.log.info("source clock back within bounds", readings_affected=self.episode)
            self.episode = 0
        return out

    def _check(
        self, readings: Sequence[Reading], now: float, was_off: bool
    ) -> tuple[list[Reading], Reading | None]:
        """The readings kept, and the first one off the clock when an episode starts with it."""
        out: list[Reading] = []
        worst: Reading | None = None
        for r in readings:
            offset = r.ts - now
            if abs(offset) <= self.skew:
                self.off.discard(r.tag)
                out.append(r)
                continue
            if worst is None and not was_off:
                worst = r
            self.off.add(r.tag)
            self.episode += 1
            self.total += 1
            if self.policy == "restamp":
                out.append(self._restamp(r, now, offset))
        return out, worst

    @staticmethod
    def _restamp(r: Reading, now: float, offset: float) -> Reading:
        reason = f"source clock off by {offset:+.0f} s; re-stamped with the arrival time"
        quality = Quality.UNCERTAIN if r.quality is Quality.GOOD else r.quality
        return dataclasses.replace(r, ts=now, quality=quality, reason=r.reason or reason)
