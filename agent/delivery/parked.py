"""Takes that wait on the durable outbox's writer thread for the next commit (issue 17).

A ``take`` that finds nothing committed is not answered "empty" for the event loop to wait and ask again:
the writer keeps it (``Desk.park``) and answers it from the commit that brings something to take, or
with nothing at its deadline. One thread hop per message instead of three (the writer waking the loop,
the loop asking, the writer answering); on this 2-core machine each hop costs about 0.1-0.2 ms of CPU.

Everything here runs on the writer thread. A take the loop gave up on (its delivery task was cancelled)
is a cancelled ``Future``: dropped, never answered, so nothing is marked in flight for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from agent.records import Envelope

Taken = tuple[list[Envelope], int, bool]  # envelopes, how many of them replayed, stopped by the pacer


@dataclass
class Take:
    """One ``take`` of the loop: up to ``n`` envelopes, at most ``budget`` replayed, by ``deadline``."""

    n: int
    budget: int
    deadline: float  # time.monotonic()
    answer: Future[Taken]


class Desk:
    """The parked takes of one writer.

    Args:
        attempt: ``attempt(take, final)`` answers ``take`` and returns True when there is something for
            it or ``final`` is set, else returns False having marked nothing in flight.
    """

    def __init__(self, attempt: Callable[[Take, bool], bool]) -> None:
        self._attempt = attempt
        self._parked: list[Take] = []

    def offer(self, take: Take) -> None:
        """Answer ``take`` now if it can be, else keep it until ``retry`` or its deadline."""
        if not take.answer.cancelled() and not self._attempt(take, time.monotonic() >= take.deadline):
            self._parked.append(take)

    def retry(self, final: bool = False) -> None:
        """Try the parked takes again, oldest first (after a commit, a release, a deadline, the stop)."""
        if not self._parked:
            return
        parked, self._parked = self._parked, []
        now = time.monotonic()
        for take in parked:
            if take.answer.cancelled():
                continue
            if not self._attempt(take, final or now >= take.deadline):
                self._parked.append(take)

    def timeout(self) -> float | None:
        """Seconds until the next deadline; ``None`` when nothing is parked."""
        if not self._parked:
            return None
        return max(0.0, min(take.deadline for take in self._parked) - time.monotonic())
