"""Compressed chaos run: broker outages, agent SIGKILLs and PLC restarts against one real agent (issue 11).

Usage: ``python benchmarks/bench_chaos.py [--quick] [--seed N]``   (loopback only; ~3 min, --quick ~1 min)

Everything is real and local: a mosquitto on free ports (``tests.mosquitto``), a Modbus TCP PLC whose
holding registers 0-1 hold a uint32 counter that goes up by one at every read (so every value it served
is one expected reading), an OPC UA server process (``tests/opcua_server.py``, values at 20 Hz), and
``edge-agent run`` as a subprocess with a durable outbox and QoS 1 for readings and features. A persistent
QoS 1 subscriber records what the broker delivers. The schedule interleaves broker outages of 3-10 s,
agent SIGKILLs (restarted after 1 s) and restarts of both PLCs.

Printed at the end, per topic: expected / received / lost (by reason) / duplicated, and recovery times
(fault cleared -> first fresh message at the subscriber). Counter values are "expected" when the PLC
served them; a value lost is explained when it was served within 150 ms before an agent SIGKILL (the
readings batch is flushed to the outbox every 100 ms) or within 1 s before a PLC stop (the answer was in
flight). Anything else is "unexplained". Features and alerts are checked by ``seq``: a gap is a loss.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import free_port
from tests.mosquitto import Mosquitto, Subscriber
from tests.opcua_server import NS_URI, ServerProcess

CONFIG = """
[agent]
id = "chaos"
state_dir = "state"
status_interval = "5s"
shutdown_timeout = "20s"
[health]
enabled = false

[[sources]]
type = "modbus"
name = "mb"
host = "127.0.0.1"
port = {modbus}
[[sources.devices]]
name = "plc"
unit = 1
interval = "50ms"
timeout = "300ms"
[[sources.tags]]
name = "counter"
address = 0
type = "uint32"

[[sources]]
type = "opcua"
name = "ua"
endpoint = "opc.tcp://127.0.0.1:{opcua}/"
mode = "subscription"
publishing_interval = "100ms"
keepalive_interval = "500ms"
request_timeout = "2s"
[[sources.tags]]
name = "v0"
node = "nsu={ns};s=Line1.V0"

[[pipelines]]
name = "count"
tags = ["counter"]
features = ["mean"]
[pipelines.window]
period = "100ms"
length = "1s"

[[sinks]]
type = "mqtt"
host = "127.0.0.1"
port = {broker}
prefix = "bench"
kinds = ["readings", "features", "status"]
[sinks.qos]
readings = 1
features = 1
"""


class CounterPlc:
    """Modbus TCP: FC 3 at address 0 answers the next value of a uint32 counter; ``served`` keeps them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.value = 0
        self.served: list[tuple[float, int]] = []  # (wall time, value)
        self.stops: list[float] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.stops.append(time.time())
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                pdu = await reader.readexactly(length - 1)
                count = struct.unpack(">H", pdu[3:5])[0]
                self.value += 1
                regs = [self.value >> 16, self.value & 0xFFFF] + [0] * max(0, count - 2)
                body = bytes([3, 2 * count]) + b"".join(struct.pack(">H", r) for r in regs[:count])
                writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body)
                self.served.append((time.time(), self.value))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


@dataclass
class Agent:
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    kills: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.starts.append(time.time())
        log = open(self.folder / "agent.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "-c", "edge.toml"],
            cwd=self.folder,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.kills.append(time.time())
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def schedule(rng: random.Random, rounds: int) -> list[str]:
    events = ["broker"] * rounds + ["kill"] * rounds + ["modbus"] * rounds + ["opcua"] * max(1, rounds - 1)
    rng.shuffle(events)
    return events


async def first_after(sub: Subscriber, since: float, match: str, limit: float = 60) -> float | None:
    """Seconds from ``since`` until the subscriber holds a message on a topic containing ``match``
    whose payload timestamp is after ``since``."""
    deadline = time.time() + limit
    while time.time() < deadline:
        for m in sub.snapshot():
            if match in m.topic and _fresh(m.body, since):
                return time.time() - since
        await asyncio.sleep(0.05)
    return None


def _fresh(body: dict, since: float) -> bool:  # type: ignore[type-arg]
    readings = body.get("readings")
    if readings:
        return any(r.get("quality") == "good" and r["ts"] > since for r in readings)
    return False


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="edge-chaos-"))
    broker = Mosquitto(folder / "mosquitto")
    broker.start()
    plc = CounterPlc(free_port())
    await plc.start()
    opc = ServerProcess(free_port(), n_vars=1, rate=20)
    await opc.start()
    (folder / "edge.toml").write_text(
        CONFIG.format(modbus=plc.port, opcua=opc.port, ns=NS_URI, broker=broker.port)
    )
    sub = Subscriber(broker.port, "bench/#", client_id="chaos-consumer")
    agent = Agent(folder)
    agent.start()
    recovery: dict[str, list[float | None]] = defaultdict(list)
    began = time.time()
    try:
        await asyncio.sleep(3)
        for event in schedule(rng, args.rounds):
            print(f"{time.time() - began:6.1f}s  {event}", flush=True)
            if event == "broker":
                broker.stop()
                await asyncio.sleep(rng.uniform(3, 10 if not args.quick else 4))
                broker.start()
                recovery["broker outage"].append(await first_after(sub, time.time(), "/readings/mb"))
            elif event == "kill":
                agent.kill()
                await asyncio.sleep(1.0)
                agent.start()
                recovery["agent SIGKILL"].append(await first_after(sub, time.time(), "/readings/mb"))
            elif event == "modbus":
                await plc.stop()
                await asyncio.sleep(2.0)
                await plc.start()
                recovery["Modbus PLC restart"].append(await first_after(sub, time.time(), "/readings/mb"))
            else:
                await opc.kill()
                await asyncio.sleep(2.0)
                await opc.start()
                recovery["OPC UA server restart"].append(await first_after(sub, time.time(), "/readings/ua"))
            await asyncio.sleep(rng.uniform(1, 3))
        await plc.stop()  # no more counter values: what was served is the expected set
        served_max = plc.value
        deadline = time.time() + 60
        while time.time() < deadline and served_max not in received_counter(sub)[0]:  # noqa: ASYNC110 - paho thread, no event
            await asyncio.sleep(0.1)
        code = agent.stop()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
        await opc.kill()
        sub.close()
        broker.kill()
    report(plc, agent, sub, recovery, time.time() - began, code)


def received_counter(sub: Subscriber) -> tuple[Counter[int], int]:
    values: Counter[int] = Counter()
    bad = 0
    for m in sub.snapshot():
        if "/readings/mb" not in m.topic:
            continue
        for r in m.body["readings"]:
            if r["tag"] == "counter" and r["quality"] == "good":
                values[int(r["value"])] += 1
            elif r["tag"] == "counter":
                bad += 1
    return values, bad


def explain(t: float, kills: list[float], stops: list[float]) -> str:
    i = bisect.bisect_left(kills, t)
    if i < len(kills) and kills[i] - t <= 0.15:
        return "agent SIGKILL (last readings batch, <= 100 ms)"
    j = bisect.bisect_left(stops, t)
    if j < len(stops) and stops[j] - t <= 1.0:
        return "PLC stopped (answer in flight)"
    return "unexplained"


def report(
    plc: CounterPlc,
    agent: Agent,
    sub: Subscriber,
    recovery: dict[str, list[float | None]],
    elapsed: float,
    code: int,
) -> None:
    values, bad = received_counter(sub)
    expected = {v for _, v in plc.served}
    lost = sorted(expected - set(values))
    when = dict((v, t) for t, v in plc.served)
    reasons = Counter(explain(when[v], agent.kills, plc.stops) for v in lost)
    print(
        f"\nchaos run: {elapsed:.0f} s, agent exit code at the end {code}, kills {len(agent.kills)}, "
        f"PLC stops {len(plc.stops)}"
    )
    print(f"{'topic':38} {'expected':>9} {'received':>9} {'lost':>6} {'dup':>6}  lost by reason")
    dups = sum(n - 1 for n in values.values() if n > 1)
    print(
        f"{'bench/chaos/readings/mb (counter)':38} {len(expected):9} {len(set(values) & expected):9} "
        f"{len(lost):6} {dups:6}  {dict(reasons)}  (+{bad} BAD markers while down)"
    )
    by_topic: dict[str, list[int]] = defaultdict(list)
    for m in sub.snapshot():
        if "/features/" in m.topic or "/readings/" in m.topic:
            by_topic[m.topic].append(int(m.body["seq"]))
    for topic, seqs in sorted(by_topic.items()):
        unique = set(seqs)
        gaps = (max(unique) - min(unique) + 1) - len(unique)
        print(
            f"{topic + ' (seq)':38} {max(unique) - min(unique) + 1:9} {len(unique):9} {gaps:6} "
            f"{len(seqs) - len(unique):6}"
        )
    print("\nrecovery: fault cleared -> first fresh reading at the subscriber (s)")
    for what, times in recovery.items():
        got = [t for t in times if t is not None]
        worst = max(got) if got else float("nan")
        print(
            f"  {what:24} n={len(times)}  median {sorted(got)[len(got) // 2] if got else float('nan'):.2f}"
            f"  max {worst:.2f}  never {len(times) - len(got)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two rounds of each fault, short outages")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    args.rounds = 2 if args.quick else 4
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
