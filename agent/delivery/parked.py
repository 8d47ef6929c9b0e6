"""Takes that wait on the durable outbox's writer thread for the next commit (issue 17).

A ``take`` that finds nothing committed is not answered "empty" for the event loop to wait and ask again:
the writer keeps it (``Desk.park``) and answers it from the commit that brings something to take, or
with nothing at its deadline. One thread hop per message instead of three (the writer waking the loop,
the loop asking, the writer answering); on this 2-core machine each hop costs about 0.1-0.2 ms of CPU.

``Desk`` runs on the writer thread. A take the loop gave up on (its delivery task was cancelled) is a
cancelled ``Future``: dropped, never answered, so nothing is marked in flight for it.

``Lobby`` is the loop's side: when the writer's last answer took everything committed, the next take
(the delivery loop takes again as soon as it has a batch) waits in the lobby instead of waking the
writer, and the writer's next commit of new rows (or a release) brings it to the desk (issue 17: a
wake-up costs about 0.25 ms of CPU on this VM, and this was one per message).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

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

    def retry(self, joining: list[Take] | None = None, final: bool = False) -> None:
        """Try the parked takes again, oldest first, then ``joining`` (after a commit, a release, a
        deadline, the stop)."""
        if joining:
            self._parked.extend(joining)
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


class Lobby:
    """Takes that wait at the loop while the writer has nothing to give; shared by the two threads.

    Args:
        lock: the outbox's lock, held for every change of the state here.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._drained = False  # the writer's last answer took every takeable row; nothing came since
        self._waiting: list[Take] = []

    # --- the loop's side ---

    async def ask(self, take: Take, ops: queue.SimpleQueue[Any], carry: Callable[[], list[int]]) -> Taken:
        """The answer to ``take``: queued to the writer, or kept here while the writer has nothing.

        ``carry()`` gives the acked ids that travel with a take queued to the writer (committed
        before it is answered); a take kept here leaves them for the next call that reaches it."""
        with self._lock:
            early = self._drained
            if early:
                self._waiting.append(take)
        if early:
            return await self._wait(take)
        ops.put(("take", take, carry()))
        return await asyncio.wrap_future(take.answer)

    async def _wait(self, take: Take) -> Taken:
        """The answer to a take kept here: the writer's, or nothing at its deadline if the writer never
        picked it up (then it never saw it, and nothing is in flight for it)."""
        waiting = asyncio.wrap_future(take.answer)
        try:
            await asyncio.wait({waiting}, timeout=max(0.0, take.deadline - time.monotonic()))
        except BaseException:  # our task was cancelled: the writer drops a cancelled take
            self._forget(take)
            waiting.cancel()
            raise
        if not waiting.done() and self._forget(take):
            waiting.cancel()
            return [], 0, False
        return await waiting  # the writer has it: it answers by the deadline

    def _forget(self, take: Take) -> bool:
        with self._lock:
            unseen = take in self._waiting
            if unseen:
                self._waiting.remove(take)
        return unseen

    def refill(self) -> None:
        """What was in flight is takeable again (a release)."""
        with self._lock:
            self._drained = False

    # --- the writer's side ---

    def drained(self) -> None:
        """The answer being given took every committed row there was to take."""
        with self._lock:
            self._drained = True

    def fresh_rows(self) -> list[Take]:
        """Rows became takeable (a commit, a release): the takes waiting here, now the writer's."""
        with self._lock:
            self._drained = False
            takes, self._waiting = self._waiting, []
        return takes
