"""The schedule of one device: drift-free polls, overruns skipped and counted, its own backoff when down.

Polls sit on a grid, ``next = previous + interval``; a cycle that runs past one or more slots skips
them (counted as overruns) instead of firing late polls back to back. A failed poll emits a BAD reading
for every tag of the device with the reason, then waits for a capped full-jitter backoff and resumes on
the first grid slot after it. BAD readings therefore come at most once per interval while the device is
down, so windows downstream see "bad, still bad" at the device's own cadence instead of a silent gap.
Only this device waits: the other devices of the source keep their schedules.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from agent.errors import PluginError
from agent.plugin import ComponentStatus, Emit
from agent.supervise import Backoff, describe
from plugins.modbus.poller import DevicePoller

StateHook = Callable[[str, bool, str | None], None]


class DeviceLoop:
    """Runs one ``DevicePoller`` on its grid until cancelled.

    Args:
        poller: the device's poll cycle.
        status: the source's status; counters go in as ``<device>.polls`` etc.
        log: structlog logger of the source.
        backoff_max: cap of the backoff while the device is down.
        on_state: called with (device, up, error) on every state change.
    """

    def __init__(
        self,
        poller: DevicePoller,
        status: ComponentStatus,
        log: Any,
        backoff_max: float,
        on_state: StateHook,
    ) -> None:
        self.poller = poller
        self.name = poller.device.name
        self.interval = poller.device.interval
        self.status = status
        self.log = log
        self.on_state = on_state
        self.backoff = Backoff(base=min(self.interval, backoff_max), cap=backoff_max)
        self.up: bool | None = None  # None until the first poll
        self.polls = 0
        self.failures = 0
        self.overruns = 0

    def _count(self, key: str, n: int = 1) -> None:
        self.status.count(f"{self.name}.{key}", n)

    async def run(self, emit: Emit, first_delay: float = 0.0) -> None:
        """Poll until cancelled; never raises for device or connection failures."""
        loop = asyncio.get_running_loop()
        due = loop.time() + first_delay
        overrunning = False
        task = asyncio.current_task()
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                readings = await self.poller.poll()
            except PluginError as exc:
                if task is not None and task.cancelling():
                    # a cancellation that raced with a timeout came back as one (cpython #86296): a
                    # busy CI machine hung here for good, polling a dead device after the test ended
                    raise asyncio.CancelledError from exc
                delay = self.backoff.next_delay()
                self._failed(exc, delay)
                await emit(self.poller.all_bad(describe(exc)))
                due = self._slot_after(due, loop.time() + delay)
                continue
            if task is not None and task.cancelling():
                # pymodbus awaits its answer with 3.11's wait_for, which can swallow a cancellation that
                # races with the answer (cpython #86296); honour it here instead of polling on forever
                raise asyncio.CancelledError
            self.polls += 1
            self._count("polls")
            self.status.counters[f"{self.name}.requests_per_poll"] = len(self.poller.plan)
            if self.up is not True:
                self._recovered()
            await emit(readings)
            due += self.interval
            now = loop.time()
            if due < now:
                skipped = math.ceil((now - due) / self.interval)
                self.overruns += skipped
                self._count("overruns", skipped)
                if not overrunning:
                    self.log.warning(
                        "poll overran its interval, skipping slots",
                        device=self.name,
                        interval_s=self.interval,
                        skipped=skipped,
                        requests=len(self.poller.plan),
                    )
                overrunning = True
                due += skipped * self.interval
            else:
                overrunning = False

    def _slot_after(self, due: float, not_before: float) -> float:
        """The first grid slot at or after ``not_before`` (the grid keeps its phase through an outage)."""
        if due >= not_before:
            return due
        return due + math.ceil((not_before - due) / self.interval) * self.interval

    def _failed(self, exc: BaseException, delay: float) -> None:
        self.failures += 1
        self._count("failures")
        if self.up is not False:
            self.up = False
            self.log.warning(
                "device down",
                device=self.name,
                endpoint=self.poller.connection.endpoint,
                unit=self.poller.device.unit,
                error=describe(exc),
                retry_in_s=round(max(delay, self.interval), 2),
            )
            self.on_state(self.name, False, describe(exc))

    def _recovered(self) -> None:
        if self.up is False:
            self.log.info("device recovered", device=self.name, after_failures=self.backoff.attempt)
        self.up = True
        self.backoff.reset()
        self.on_state(self.name, True, None)
