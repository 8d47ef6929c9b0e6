"""Notifications/s and client CPU: the OPC UA source against a bare asyncua client, same server, same run.

The server runs in its own process (``tests/opcua_server.py``) and changes every variable ``rate``
times a second. For each size, the bare client and our source take turns subscribing to the same
server for ``window`` seconds each (after a warm-up), so they see the same load; the bench process
holds only the client, so its CPU time is the client's. Both use the same publishing interval,
sampling interval, queue size 1 and a 100,000-entry client queue.

    python benchmarks/bench_opcua.py            # 1,000 and 10,000 items, 3 turns of 15 s each
    python benchmarks/bench_opcua.py --quick    # 1 turn of 5 s each, under two minutes
    python benchmarks/bench_opcua.py --items 10000  # one size only

Each turn's window starts after its client's first notification and a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402
from asyncua import Client, ua  # noqa: E402

from agent.plugin import ComponentStatus, PluginContext  # noqa: E402
from agent.records import Reading  # noqa: E402
from benchmarks.spread import load, spread  # noqa: E402
from plugins.opcua.config import OpcUaSourceConfig  # noqa: E402
from plugins.opcua.source import OpcUaSource  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.opcua_server import NS_URI, ServerProcess  # noqa: E402

PUBLISH_S = 0.1


class Meter:
    """Counts notifications; the measured window starts after the warm-up."""

    def __init__(self) -> None:
        self.count = 0
        self.first = asyncio.Event()

    def add(self, n: int) -> None:
        self.count += n
        self.first.set()


async def bare(url: str, n: int, meter: Meter, ready: asyncio.Event) -> None:
    """The baseline: asyncua's own iterator API, counting every data change."""
    # 10,000 items: the Python test server answers slowly when busy; asyncua probes the server state
    # every watchdog_intervall (default 1 s, and as its timeout): the source uses request_timeout for both
    client = Client(url, timeout=60, watchdog_intervall=60)
    await client.connect()
    try:
        ns = await client.get_namespace_index(NS_URI)
        sub = await client.create_subscription(PUBLISH_S * 1000, None, queue_maxsize=100_000)
        nodes = [client.get_node(ua.NodeId(f"Line1.V{i}", ns)) for i in range(n)]
        for start in range(0, n, 1000):
            await sub.subscribe_data_change(
                nodes[start : start + 1000], queuesize=1, sampling_interval=PUBLISH_S * 1000
            )
        ready.set()
        async for _ in sub:
            meter.add(1)
    finally:
        await client.disconnect()


async def ours(url: str, n: int, meter: Meter, ready: asyncio.Event) -> None:
    tags = [{"name": f"v{i}", "node": f"nsu={NS_URI};s=Line1.V{i}"} for i in range(n)]
    cfg = OpcUaSourceConfig.model_validate(
        {"type": "opcua", "name": "bench", "endpoint": url, "tags": tags, "publishing_interval": PUBLISH_S,
         "sampling_interval": PUBLISH_S, "queue_size": 1, "batch_size": 1000, "request_timeout": 60}
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as state:
        ctx = PluginContext("bench", "bench", Path(state), ComponentStatus("bench", "source"))

        async def emit(batch: Sequence[Reading]) -> None:
            if not ready.is_set() and ctx.status.counters.get("monitored_items") == n:
                ready.set()
            meter.add(len(batch))

        await OpcUaSource(cfg, ctx).run(emit)


async def measure(
    client: Callable[[str, int, Meter, asyncio.Event], Awaitable[None]], url: str, n: int, window: float
) -> tuple[float, float]:
    """(notifications per second, client CPU seconds per 10,000 notifications) over one window."""
    meter, ready = Meter(), asyncio.Event()
    task = asyncio.create_task(client(url, n, meter, ready), name=f"bench-{client.__name__}")
    try:
        async with asyncio.timeout(600):
            await ready.wait()
            await meter.first.wait()  # 10,000 items: the first publish may come long after the subscribe
        await asyncio.sleep(max(2.0, 3 * PUBLISH_S))  # warm-up: initial values and the first publishes
        count0, cpu0, t0 = meter.count, time.process_time(), time.perf_counter()
        await asyncio.sleep(window)
        count, cpu, elapsed = meter.count - count0, time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    print(f"  {client.__name__} n={n}: {count / elapsed:,.0f}/s cpu={cpu:.2f}s", file=sys.stderr, flush=True)
    return count / elapsed, (cpu / count * 10_000) if count else float("nan")


async def main(quick: bool, items: Sequence[int]) -> None:
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sizes = [s for s in [(1_000, 10.0), (10_000, 1.0)] if s[0] in items]  # (items, changes/s per item)
    turns, window = (1, 5.0) if quick else (3, 15.0)
    rows = []
    for n, rate in sizes:
        port = free_port()
        # issue 17: the 10,000-item server took 79 s to start here and the old 60 s wait crashed the run
        async with ServerProcess(port, n_vars=n, rate=rate, start_timeout=600):
            url = f"opc.tcp://127.0.0.1:{port}/"
            results: dict[str, list[tuple[float, float]]] = {"bare": [], "ours": []}
            for _ in range(turns):
                results["bare"].append(await measure(bare, url, n, window))
                results["ours"].append(await measure(ours, url, n, window))
        rows.append((n, n * rate, results["bare"], results["ours"]))
    print(
        f"\nOPC UA subscription, publishing {PUBLISH_S * 1000:.0f} ms, {turns} turn(s) of {window:.0f} s each, "
        f"{load()}; per-turn figures as min / median / max\n"
    )
    print("| items | offered/s | bare notif/s | ours notif/s | ours/bare CPU per notification, per turn |")
    print("|---:|---:|---:|---:|---:|")
    for n, offered, bare_turns, our_turns in rows:
        ratios = [o[1] / b[1] for b, o in zip(bare_turns, our_turns, strict=True) if b[0] and o[0]]
        ratio = spread(ratios) if ratios else "n/a (a client got no notification)"
        rates = [spread([r for r, _ in turns_], "{:,.0f}") for turns_ in (bare_turns, our_turns)]
        print(f"| {n:,} | {offered:,.0f} | {rates[0]} | {rates[1]} | {ratio} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one short turn per size")
    parser.add_argument("--items", type=int, nargs="*", default=[1_000, 10_000], help="sizes to run")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.items))
