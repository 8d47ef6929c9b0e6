"""CPU per message of the outbox's append -> take -> ack cycle at a steady rate, durable and in memory.

    python benchmarks/bench_outbox_cycle.py                # 10 messages/s of 50 readings, 3 runs of 10 s
    python benchmarks/bench_outbox_cycle.py --rate 100 --runs 5

This is the part of the agent's cost that grows with messages rather than readings: with
``readings_interval`` at 100 ms each source appends ten messages a second, whatever its tag count. One
asyncio loop appends a readings message every ``1/rate`` s while a consumer takes and acks like the
delivery loop (no sink: no network). Printed per outbox: CPU of this process (all threads, getrusage) per
message and context switches per message, min / median / max of the runs, with the load average. An
idle loop waking at the same rate is printed too, for what a wake-up alone costs on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.delivery.memory_store import MemoryOutbox
from agent.delivery.outbox import OutboxBase
from agent.delivery.sqlite_store import SqliteOutbox
from agent.records import Kind, Message, Reading


def usage() -> tuple[float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_nvcsw + r.ru_nivcsw


async def cycle(kind: str, rate: float, seconds: float, folder: Path) -> tuple[float, float]:
    """(CPU ms per message, context switches per message) over ``seconds``."""
    box: OutboxBase | None = None
    if kind == "sqlite":
        box = SqliteOutbox(folder / "outbox.sqlite", 2**28)
    elif kind == "memory":
        box = MemoryOutbox(2**28, replay_rate=2000.0)
    readings = [Reading(f"d0.t{t}", time.time(), 1.5 * t) for t in range(50)]

    async def consume() -> None:
        assert box is not None
        while True:
            batch = await box.take(200, timeout=1.0)
            if batch:
                box.ack(batch)

    consumer = asyncio.create_task(consume(), name="consumer") if box is not None else None
    await asyncio.sleep(0.2)
    n = max(1, int(rate * seconds))
    (cpu0, switches0), next_at = usage(), time.monotonic()
    for _ in range(n):
        if box is not None:
            box.append([Message(Kind.READINGS, "plc", time.time(), {"source": "plc", "readings": readings})])
        next_at += 1.0 / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    cpu1, switches1 = usage()
    if consumer is not None:
        consumer.cancel()
    if box is not None:
        box.close()
    return 1000 * (cpu1 - cpu0) / n, (switches1 - switches0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("| outbox | CPU ms / message (min/med/max) | switches / message (median) | load (1 min) |")
    print("|---|---|---|---|")
    for kind in ("sqlite", "memory", "idle loop"):
        results = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as folder:
                results.append(asyncio.run(cycle(kind, args.rate, args.seconds, Path(folder))))
        cpu = [c for c, _ in results]
        spread = "/".join(f"{v:.3f}" for v in (min(cpu), statistics.median(cpu), max(cpu)))
        switches = statistics.median(s for _, s in results)
        print(f"| {kind} | {spread} | {switches:.1f} | {os.getloadavg()[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
