"""Capped full-jitter backoff and the supervisor that owns every reconnect.

Each source and sink runs inside ``supervise``: when its coroutine raises, the supervisor logs once
(at the first failure of an episode), sleeps and runs it again; when the component calls
``ctx.mark_up()`` the episode ends with one "recovered" line and the backoff resets.

The schedule after a loss (issue 11 item 9) grows with the outage, not with the number of attempts:
the delay is ``uniform(0, ceiling)`` with ``ceiling = min(cap, max(base, down_for / 4))``, where
``down_for`` is the time since the first failure of the episode. So the agent is back at most a quarter
of the outage after the peer answers again (0.5 s for outages up to 2 s, 5 s for 20 s, 30 s from two
minutes on), and a peer refusing connections at once is not hammered: a dozen attempts in the first
minute. (It was 0.5 s doubling per attempt to 30 s: instant refusals burned the short delays in a
second, and a 10 s outage could take 16-30 s to recover from.)

A component that fails again less than ``stable_s`` after coming up, twice in a row, is flapping (a
broker that drops every connection after a second): the backoff is not reset, so it grows to the cap,
and one "connection unstable" line replaces the lost/recovered pair of each cycle until it stays up.
``FatalError`` is retried too, at the cap, because the fix (a password, a trusted certificate) usually
happens on the other side while the agent keeps running.
``InputUnavailable`` (a finite input that cannot be read) is not retried: the component ends, DOWN,
with the error.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import FatalError, InputUnavailable, PluginError
from agent.plugin import ComponentStatus, State


@dataclass
class Backoff:
    """Full-jitter backoff whose ceiling grows with the outage (see the module docstring).

    Attributes:
        base: the smallest ceiling in seconds.
        cap: the largest ceiling in seconds.
        fraction: the ceiling as a share of the time down so far.
        stable_s: up for less than this and failing again counts as flapping.
        clock: monotonic seconds; tests pass a fake one.
    """

    base: float = 0.5
    cap: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)
    fraction: float = 0.25
    stable_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    since: float | None = None

    def next_delay(self) -> float:
        """The delay before the next try: ``uniform(0, min(cap, max(base, down_for * fraction)))``."""
        now = self.clock()
        if self.since is None:
            self.since = now
        ceiling = min(self.cap, max(self.base, (now - self.since) * self.fraction))
        self.attempt += 1
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0
        self.since = None


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
        except InputUnavailable as exc:  # a finite input that cannot be read: retrying cannot help
            status.failures += 1
            status.set(State.DOWN, describe(exc))
            log.error("failed, input unavailable", error=describe(exc))
            return
        except Exception as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # 3.11's wait_for can turn a cancellation that races with a timeout into the timeout
                # (cpython #86296); a library using it must not make us retry after a stop
                status.set(State.STOPPED)
                raise asyncio.CancelledError from exc
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
            _report(log, status, exc, flapped and short_ups >= 2, delay, backoff.stable_s)
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            status.set(State.STOPPED)
            raise


def _report(
    log: Any, status: ComponentStatus, exc: Exception, flapping: bool, delay: float, stable_s: float
) -> None:
    """Log a failure once per episode; a flapping component once when it starts to flap, then not at all."""
    fatal = isinstance(exc, FatalError)
    if flapping and not status.flapping:
        status.flapping = True
        log.warning(
            "connection unstable: it fails again soon after each connect, backing off",
            error=describe(exc),
            up_s=stable_s,
            retry_in_s=round(delay, 2),
        )
    elif status.flapping:
        pass  # counted in status.failures; logged once when the flapping began
    elif status.episode_failures == 1:
        fields = {"error": describe(exc), "retry_in_s": round(delay, 2)}
        if isinstance(exc, PluginError):
            log.error("failed, needs attention" if fatal else "connection lost", **fields)
        else:
            log.exception("crashed", **fields)
