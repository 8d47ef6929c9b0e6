"""Event-loop lag while the durable outbox appends 2,000 messages/s on a slow disk (issue 11 item 5).

The disk is slowed in a test store: every commit (the fsync) sleeps ``--fsync-ms`` (default 50 ms, an SD
card) on the outbox's writer thread. A consumer takes and acks as a sink would. A probe task on the loop
asks to wake every 2 ms and records how late it woke: that lateness is the loop lag every source, sink
and pipeline would feel. Printed: p50 / p99 / max lag in ms, the append rate held and the commits (group
commit: many appends share one fsync), with the load average. Aim: p99 < 5 ms.

    python benchmarks/bench_loop_lag.py [--seconds 10] [--fsync-ms 50] [--rate 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from agent.delivery.sqlite_store import SqliteOutbox
from agent.records import Kind, Message


class SlowDisk(SqliteOutbox):
    """A store whose every commit takes ``delay`` seconds longer, as on an eMMC or SD card."""

    delay = 0.05
    commits = 0

    def _commit(self) -> None:
        time.sleep(self.delay)
        super()._commit()
        self.commits += 1


def message(n: int) -> Message:
    return Message(Kind.FEATURES, "line1", 1_700_000_000.0 + n, {"n": n, "features": {"a": 1.0, "b": 2.0}})


async def probe(lags: list[float], stop: asyncio.Event, every: float = 0.002) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + every
        await asyncio.sleep(every)
        lags.append(max(0.0, loop.time() - due))


async def produce(box: SqliteOutbox, rate: float, seconds: float) -> int:
    """Append ``rate`` messages a second in 10 ms steps, drift-free; return how many."""
    loop = asyncio.get_running_loop()
    step, n = 0.01, 0
    per_step = max(1, round(rate * step))
    start = next_at = loop.time()
    while loop.time() - start < seconds:
        box.append([message(n + i) for i in range(per_step)])
        n += per_step
        next_at += step
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    return n


async def consume(box: SqliteOutbox, stop: asyncio.Event) -> int:
    taken = 0
    while not stop.is_set():
        batch = await box.take(200, timeout=0.1)
        box.ack(batch)
        taken += len(batch)
    return taken


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def idle(seconds: float) -> list[float]:
    """The same probe on a loop with nothing else to do: what this machine's scheduler alone costs."""
    stop = asyncio.Event()
    lags: list[float] = []
    probing = asyncio.create_task(probe(lags, stop), name="probe")
    await asyncio.sleep(seconds)
    stop.set()
    await probing
    return lags


def summary(lags: list[float]) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"p50 {pct(lags, 0.5):.2f}  p99 {pct(lags, 0.99):.2f}  max {max(lags) * 1000:.2f}"
        f"  ({len(lags)} probes; load average {load})"
    )


async def run(seconds: float, fsync_ms: float, rate: float, folder: Path) -> None:
    print(f"idle loop, lag ms:        {summary(await idle(seconds))}")
    SlowDisk.delay = fsync_ms / 1000
    box = SlowDisk(folder / "outbox.sqlite", 2**30, fsync="append")
    stop = asyncio.Event()
    lags: list[float] = []
    probing = asyncio.create_task(probe(lags, stop), name="probe")
    consuming = asyncio.create_task(consume(box, stop), name="consume")
    started = time.monotonic()
    n = await produce(box, rate, seconds)
    elapsed = time.monotonic() - started
    await box.settled()
    stop.set()
    taken = await consuming
    await probing
    box.close()
    print(f"appending, lag ms:        {summary(lags)}")
    print(
        f"  fsync +{fsync_ms:.0f} ms: {n / elapsed:.0f} appends/s for {elapsed:.1f} s, {box.commits} commits, {taken} taken"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fsync-ms", type=float, default=50.0)
    parser.add_argument("--rate", type=float, default=2000.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(args.seconds, args.fsync_ms, args.rate, Path(folder)))


if __name__ == "__main__":
    main()
