"""The bounded queue between sources and pipelines, with a named overflow policy.

Items are batches of readings from one source; the capacity counts readings, so its memory is bounded
whatever the batch sizes (about 100 bytes a reading). ``drop_oldest`` (the default) keeps the freshest data
when pipelines fall behind; ``drop_newest`` keeps the backlog; ``block`` makes sources wait (a replay
uses it to process a file completely). Drops are counted, never silent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from agent.records import Reading

Policy = Literal["drop_oldest", "drop_newest", "block"]
Item = tuple[str, Sequence[Reading]]


@dataclass
class BusStats:
    capacity: int  # readings
    depth: int = 0  # batches waiting
    batches: int = 0
    readings: int = 0
    dropped_batches: int = 0
    dropped_readings: int = 0


class Bus:
    """A FIFO of (source, readings) batches holding at most ``capacity`` readings.

    ``get`` returns None once closed and drained. A single batch larger than the capacity is still
    accepted when the bus is empty, so a source with a big poll is never starved.
    """

    def __init__(self, capacity: int, policy: Policy) -> None:
        self.policy = policy
        self._items: deque[Item] = deque()
        self._capacity = capacity
        self._held = 0
        self._changed = asyncio.Condition()
        self._closed = False
        self.stats = BusStats(capacity=capacity)

    async def put(self, source: str, readings: Sequence[Reading]) -> None:
        if not readings or self._closed:
            return
        n = len(readings)
        async with self._changed:
            if self._held + n > self._capacity and self._items:
                if self.policy == "block":
                    await self._changed.wait_for(
                        lambda: self._held + n <= self._capacity or not self._items or self._closed
                    )
                elif self.policy == "drop_newest":
                    self._drop(readings)
                    return
                else:
                    while self._items and self._held + n > self._capacity:
                        _, old = self._items.popleft()
                        self._held -= len(old)
                        self._drop(old)
            self._items.append((source, readings))
            self._held += n
            self.stats.batches += 1
            self.stats.readings += len(readings)
            self.stats.depth = len(self._items)
            self._changed.notify_all()

    def _drop(self, readings: Sequence[Reading]) -> None:
        self.stats.dropped_batches += 1
        self.stats.dropped_readings += len(readings)

    async def get(self, max_wait: float | None = None) -> Item | None:
        """The next batch; None when closed and empty, or when ``max_wait`` seconds pass with nothing."""
        async with self._changed:
            if not self._items and not self._closed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self._items) or self._closed), max_wait
                    )
                except TimeoutError:
                    return None
            if not self._items:
                return None
            item = self._items.popleft()
            self._held -= len(item[1])
            self.stats.depth = len(self._items)
            self._changed.notify_all()
            return item

    async def close(self) -> None:
        """No more puts; ``get`` drains what is left, then returns None."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
