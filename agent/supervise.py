"""Capped full-jitter backoff and the supervisor that owns every reconnect.

Each source and sink runs inside ``supervise``: when its coroutine raises, the supervisor logs once
(at the first failure of an episode), sleeps and runs it again; when the component calls
``ctx.mark_up()`` the episode ends with one "recovered" line and the backoff resets.

The schedule after a loss (issue 11 item 9): the first ``fast`` attempts wait ``uniform(0, base)``
(0-0.5 s by default), so a short outage is over within a second or two of the peer answering again;
then ``uniform(0, min(cap, base * 2**(attempt - fast)))``: 1, 2, 4, 8, 16, then 30 s ceilings.
A component that fails again less than ``stable_s`` after coming up, twice in a row, is flapping (a broker that drops
every connection after a second): the backoff is not reset, so it grows to the cap, and one
"connection unstable" line replaces the lost/recovered pair of each cycle until it stays up. ``FatalError`` is retried too, at the cap, because the fix (a password, a trusted
certificate) usually happens on the other side while the agent keeps running.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import FatalError, PluginError
from agent.plugin import ComponentStatus, State


@dataclass
class Backoff:
    """Full-jitter exponential backoff (AWS architecture blog, "Exponential Backoff And Jitter").

    Attributes:
        base: the first ceiling in seconds.
        cap: the largest ceiling in seconds.
    """

    base: float = 0.5
    cap: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)
    fast: int = 4
    stable_s: float = 10.0

    def next_delay(self) -> float:
        """The delay before the next try; after ``fast`` tries each call raises the ceiling to the cap."""
        ceiling = min(self.cap, self.base * (2 ** min(max(0, self.attempt - self.fast + 1), 30)))
        if self.attempt < self.fast:
            ceiling = min(self.cap, self.base)
        self.attempt += 1
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def describe(exc: BaseException) -> str:
    """A one-line reason for logs and status: the message, or the type name when there is none."""
    text = str(exc).strip()
    return text if text else type(exc).__name__


async def supervise(
    run: Callable[[], Awaitable[None]],
    status: ComponentStatus,
    log: Any,
    backoff: Backoff | None = None,
) -> None:
    """Run ``run()`` until it returns or is cancelled, restarting it after failures.

    Args:
        run: the component's main coroutine factory (a fresh coroutine per attempt).
        status: the component's status; set DOWN here on failure, UP by the component via ``mark_up``.
        log: a structlog logger bound with the component name.
        backoff: the policy; defaults to 0.5 s doubling up to 30 s.
    """
    backoff = backoff or Backoff()
    short_ups = 0  # failures in a row that came soon after coming up
    while True:
        try:
            await run()
            status.set(State.STOPPED)
            return
        except asyncio.CancelledError:
            status.set(State.STOPPED)
            raise
        except Exception as exc:
            was_up = status.state is State.UP
            flapped = was_up and time.time() - status.since < backoff.stable_s
            if was_up and not flapped:
                backoff.reset()  # it worked for a while: start the next episode gently
                short_ups, status.flapping = 0, False
            short_ups += flapped
            status.failures += 1
            status.episode_failures += 1
            status.set(State.DOWN, describe(exc))
            fatal = isinstance(exc, FatalError)
            delay = backoff.cap if fatal else backoff.next_delay()
            if flapped and short_ups >= 2 and not status.flapping:
                status.flapping = True
                log.warning(
                    "connection unstable: it fails again soon after each connect, backing off",
                    error=describe(exc),
                    up_s=backoff.stable_s,
                    retry_in_s=round(delay, 2),
                )
            elif flapped and status.flapping:
                pass  # counted in status.failures; logged once when the flapping began
            elif status.episode_failures == 1:
                fields = {"error": describe(exc), "retry_in_s": round(delay, 2)}
                if isinstance(exc, PluginError):
                    log.error("failed, needs attention" if fatal else "connection lost", **fields)
                else:
                    log.exception("crashed", **fields)
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            status.set(State.STOPPED)
            raise
