"""The streaming half of the runtime: bus -> pipelines -> outboxes, and the periodic housekeeping.

A mixin of ``agent.runtime.core.Runtime``: the pipeline loop takes batches off the bus, routes them into
the pipelines' windows (``agent.stream.router.Router``, the path the trainer uses too), scores closed
windows in an executor, and appends the resulting messages to every sink's outbox that wants them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from agent.batch import ReadingBatch, ReadingChain, parts
from agent.config.load import AgentConfig
from agent.delivery.bus import Bus
from agent.ops.observe import Observer
from agent.records import Kind, Message, Reading
from agent.runtime.parts import SinkRun
from agent.runtime.recording import SelfRecorder
from agent.runtime.resume import WindowMarks
from agent.stream.router import Router

if TYPE_CHECKING:  # the stream modules load numpy; they are imported when a pipeline is built
    from agent.stream.pipeline import Batch, Pipeline


class Streaming:
    """Pipeline loop, scoring, readings batching and housekeeping of one runtime."""

    cfg: AgentConfig
    clock: Callable[[], float]
    log: Any
    bus: Bus
    observer: Observer
    pipelines: list[Pipeline]
    router: Router
    sinks: dict[str, SinkRun]
    _pool: ThreadPoolExecutor
    _pending_readings: dict[str, list[Sequence[Reading]]]
    _readings_flushed_at: float  # the loop's time the oldest readings of the last flush arrived
    _readings_first_at: float  # the loop's time the oldest pending readings arrived
    marks: WindowMarks
    recorder: SelfRecorder

    @property
    def wants_readings(self) -> bool:
        return any("readings" in s.kinds for s in self.sinks.values())

    def _emit(self, messages: list[Message]) -> None:
        if not messages:
            return
        self.observer.status.messages(messages)
        for sink in self.sinks.values():
            wanted = [m for m in messages if m.kind.value in sink.kinds]
            if wanted:
                sink.outbox.append(wanted)

    async def _pipeline_loop(self) -> None:
        last_idle = 0.0
        loop = asyncio.get_running_loop()
        while True:
            item = await self.bus.get(max_wait=self._readings_wait(loop.time()))
            now = self.clock()
            if item is not None:
                source, readings = item
                self.router.ingest(readings, now)  # re-read per batch: a reload may have replaced it
                self.recorder.add(readings)  # to the writer thread; never waits
                if self.wants_readings:
                    # batches are kept whole, encoded without a Reading made per tag (issue 17); a
                    # plain sequence is copied, as the source may reuse it
                    if not self._pending_readings:
                        self._readings_first_at = loop.time()
                    pending = self._pending_readings.setdefault(source, [])
                    for part in parts(readings):
                        pending.append(part if part.__class__ is ReadingBatch else list(part))
            elif self.bus.closed:
                break
            if self._pending_readings and self._readings_wait(loop.time()) == 0.0:
                self._flush_readings()
            if now - last_idle >= 0.5:
                last_idle = now
                for pipe in self.pipelines:
                    pipe.windower.idle(now)
            for pipe in self.pipelines:
                windows = pipe.windower.take()
                if windows:
                    messages = await self._score(pipe, pipe.featurize(windows))
                    self.marks.stamp(messages)
                    self._emit(messages)
        self._flush_readings()

    async def _score(self, pipe: Pipeline, batch: Batch) -> list[Message]:
        model = pipe.model
        mask = batch.scorable
        if model is None or not mask.any():
            return pipe.conclude(batch, None, None)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            scores, contrib = await loop.run_in_executor(self._pool, model.score, batch.x[mask])
            self.observer.latency[pipe.name].observe(time.perf_counter() - started)
        except Exception as exc:  # a model that fails at run time must not stop the pipeline
            pipe.stats.skipped += int(mask.sum())
            self.log.error("inference failed", pipeline=pipe.name, error=str(exc)[:200])
            return pipe.conclude(batch, None, None)
        return pipe.conclude(batch, scores, contrib)

    def _readings_wait(self, now: float) -> float:
        """Seconds the pending readings may still wait (0: flush now); 0.5 when none are pending.

        A flush is anchored at the arrival of the oldest readings it carried. Readings are flushed when
        they arrive if the last anchor is at least 90 % of ``readings_interval`` old, else at ``last
        anchor + readings_interval``: no reading waits longer than the interval, anchors are at least
        90 % of it apart, and a source polling at the interval has each poll appended as it arrives,
        with no wake-up of its own (issue 17: a wake-up costs ~0.25 ms of CPU here). Anchoring at the
        arrival, not at the flush, keeps one late flush (a busy loop) from delaying every later poll by
        the same lag. The first readings go out at once.
        """
        if not self._pending_readings:
            return 0.5
        interval = self.cfg.agent.readings_interval
        since = now - self._readings_flushed_at
        return 0.0 if since >= 0.9 * interval else interval - since

    def _flush_readings(self) -> None:
        pending, self._pending_readings = self._pending_readings, {}
        if pending:
            self._readings_flushed_at = self._readings_first_at
        now = self.clock()
        self._emit(
            [
                # The batch itself: encoded once, at append, by the sink that publishes it (issue 17).
                Message(Kind.READINGS, source, now, {"source": source, "readings": ReadingChain(rs)})
                for source, rs in pending.items()
                if rs
            ]
        )

    async def _housekeeping(self) -> None:
        """Look for new model files and publish status, each on its interval (readings: the pipeline loop)."""
        agent = self.cfg.agent
        tick = min(agent.status_interval, agent.model_check_interval, 1.0)
        loop = asyncio.get_running_loop()
        next_status = loop.time() + agent.status_interval
        next_models = loop.time() + agent.model_check_interval
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            if self.marks.dirty:
                await asyncio.to_thread(self.marks.save)
            if now >= next_models:
                next_models = now + agent.model_check_interval
                await self.refresh_models()
            if now >= next_status:
                next_status = now + agent.status_interval
                self._emit([self.observer.status_message()])

    async def refresh_models(self) -> None:
        """Swap in model files that changed and validate; keep the last good one otherwise.

        Loading and test-running a model happen in a thread: a large or hostile file never stalls the loop.
        """
        for pipe in self.pipelines:
            if pipe.slot is None:
                continue
            change = await asyncio.to_thread(pipe.slot.refresh)
            if change is None:
                continue
            what, detail = change
            if what == "swapped":
                pipe.model_swapped()
                self.log.info("model swapped", pipeline=pipe.name, model=detail)
            else:
                self.log.error(
                    "new model refused, keeping the last good one",
                    pipeline=pipe.name,
                    model=pipe.slot.model.id,
                    error=detail,
                )
