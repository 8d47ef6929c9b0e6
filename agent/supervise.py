"""Capped full-jitter backoff and the supervisor that owns every reconnect.

Each source and sink runs inside ``supervise``: when its coroutine raises, the supervisor logs once
(at the first failure of an episode), sleeps ``uniform(0, min(cap, base * 2**attempt))`` and runs it
again; when the component calls ``ctx.mark_up()`` the episode ends with one "recovered" line and the
backoff resets. ``FatalError`` is retried too, at the cap, because the fix (a password, a trusted
certificate) usually happens on the other side while the agent keeps running. ``InputUnavailable`` (a
finite input that cannot be read) is not retried: the component ends, DOWN, with the error.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import FatalError, InputUnavailable, PluginError
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

    def next_delay(self) -> float:
        """The delay before the next try; each call raises the ceiling until it reaches the cap."""
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 30)))
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
            if status.state is State.UP:
                backoff.reset()  # it worked for a while: start the next episode gently
            status.failures += 1
            status.episode_failures += 1
            status.set(State.DOWN, describe(exc))
            fatal = isinstance(exc, FatalError)
            delay = backoff.cap if fatal else backoff.next_delay()
            if status.episode_failures == 1:
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
