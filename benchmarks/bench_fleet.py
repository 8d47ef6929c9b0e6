"""Messages/s and CPU per message through a three-node NATS cluster vs a single mosquitto, same run, and the
agent's CPU per message against the number of servers it lists.

Usage: ``python benchmarks/bench_fleet.py [--quick] [--messages N]``

Starts its own mosquitto (``tests.mosquitto``) and its own NATS cluster (``tests.nats_cluster``: JetStream,
MQTT listener, streams R3), each on free loopback ports, with one QoS 1 subscriber per broker in a
``mosquitto_sub`` process (so a QoS 1 message is stored and delivered, as with a real consumer). For each
case it publishes N feature messages (~400 bytes) QoS 1 through the durable outbox and the MQTT sink, as
``bench_mqtt.py`` does, and raw paho QoS 1 with the same in-flight window as the baseline of each broker:

* agent CPU per message: this process's CPU time (all threads) over the messages;
* broker CPU per message: the broker processes' CPU time (every NATS node together) over the messages;
* ``servers`` listed: 1, 3 (the cluster) or 8 (the broker first, then unreachable ports that are never
  tried because the first answers): the agent's CPU per message must not grow with the list.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.delivery.deliver import deliver
from agent.delivery.sqlite_store import SqliteOutbox
from agent.plugin import ComponentStatus, PluginContext, State
from agent.records import Message
from agent.supervise import Backoff, supervise
from benchmarks.bench_mqtt import STEP, _quiet, message, raw_paho
from plugins.mqtt.config import MqttSinkConfig
from plugins.mqtt.sink import MqttSink
from tests.conftest import free_port
from tests.mosquitto import Mosquitto, eventually
from tests.nats_cluster import NatsCluster

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_of(pids: list[int]) -> float:
    """User + system CPU seconds of processes, from /proc."""
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


class Meter:
    """Wall time, this process's CPU and the brokers' CPU over a block."""

    def __init__(self, brokers: list[int]) -> None:
        self.brokers = brokers

    def __enter__(self) -> Meter:
        self.wall, self.cpu, self.broker = time.perf_counter(), time.process_time(), cpu_of(self.brokers)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.broker = cpu_of(self.brokers) - self.broker


async def through_agent(
    servers: list[str], messages: list[Message], folder: Path, brokers: list[int]
) -> Meter:
    outbox = SqliteOutbox(folder / f"outbox-{time.monotonic_ns()}.sqlite", 2**30, log=_quiet)
    cfg = MqttSinkConfig(type="mqtt", servers=servers, prefix="bench", qos={"features": 1}, ack_timeout=60)
    ctx = PluginContext("mqtt", "bench", folder, ComponentStatus("mqtt", "sink"))
    ctx.log = _quiet
    sink = MqttSink(cfg, ctx)
    task = asyncio.create_task(
        supervise(lambda: deliver(sink, outbox, STEP), sink.ctx.status, _quiet, Backoff(0.05, 0.5)),
        name="deliver",
    )
    await eventually(lambda: sink.ctx.status.state is State.UP, what="a connection")
    with Meter(brokers) as meter:
        for i in range(0, len(messages), STEP):
            outbox.append(messages[i : i + STEP])
            await asyncio.sleep(0)
        await eventually(lambda: outbox.stats.acked >= len(messages), within=600, what="every ack")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    outbox.close()
    return meter


def raw(port: int, messages: list[Message], brokers: list[int]) -> Meter:
    with Meter(brokers) as meter:
        raw_paho(port, messages, 1)
    return meter


def subscriber(port: int, name: str) -> subprocess.Popen[bytes]:
    """A QoS 1 consumer with a persistent session in its own process, so its CPU is not ours."""
    return subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-c", "-i", name, "-t", "bench/#"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def row(name: str, n: int, meters: list[Meter], base: float | None) -> float:
    rate = statistics.median(n / m.wall for m in meters)
    agent_us = statistics.median(m.cpu / n * 1e6 for m in meters)
    broker_us = statistics.median(m.broker / n * 1e6 for m in meters)
    ratio = f"{rate / base:7.2f}" if base else f"{'':7}"
    print(f"{name:46} {rate:9.0f} {ratio} {agent_us:13.1f} {broker_us:14.1f}")
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer messages and rounds: about a minute")
    parser.add_argument("--messages", type=int, default=None)
    args = parser.parse_args()
    n = args.messages or (3_000 if args.quick else 10_000)
    rounds = 1 if args.quick else 3
    messages = [message(i) for i in range(n)]
    folder = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    mosquitto = Mosquitto(folder / "mosquitto")
    mosquitto.start()
    cluster = NatsCluster(folder / "nats")
    cluster.start()
    await asyncio.sleep(2)  # the MQTT streams are created a moment after the nodes report healthy
    subs = [subscriber(mosquitto.port, "bench-mosq"), subscriber(cluster.nodes[2].mqtt_port, "bench-nats")]
    try:
        assert mosquitto.proc is not None
        mosq_pids = [mosquitto.proc.pid]
        nats_pids = [node.proc.pid for node in cluster.nodes if node.proc is not None]
        mosq_url = f"mqtt://127.0.0.1:{mosquitto.port}"
        nats_urls = [node.mqtt_url for node in cluster.nodes]
        unreachable = [f"mqtt://127.0.0.1:{free_port()}" for _ in range(7)]
        cases: list[tuple[str, Callable[[], object], list[int]]] = [
            ("mosquitto: raw paho", lambda: raw(mosquitto.port, messages, mosq_pids), mosq_pids),
            ("mosquitto: agent, 1 server listed", lambda: [mosq_url], mosq_pids),
            ("mosquitto: agent, 8 servers listed", lambda: [mosq_url, *unreachable], mosq_pids),
            (
                "NATS x3: raw paho to n1",
                lambda: raw(cluster.nodes[0].mqtt_port, messages, nats_pids),
                nats_pids,
            ),
            ("NATS x3: agent, 1 server listed", lambda: nats_urls[:1], nats_pids),
            ("NATS x3: agent, 3 servers listed", lambda: nats_urls, nats_pids),
        ]
        results: dict[str, list[Meter]] = {name: [] for name, _, _ in cases}
        for _ in range(rounds):
            for name, case, pids in cases:
                made = case()
                if isinstance(made, Meter):
                    results[name].append(made)
                else:
                    assert isinstance(made, list)
                    results[name].append(await through_agent(made, messages, folder, pids))
        print(f"# {n} feature messages QoS 1, {rounds} round(s), median; a QoS 1 subscriber on each broker")
        print(f"{'case':46} {'msg/s':>9} {'ratio':>7} {'agent µs/msg':>13} {'broker µs/msg':>14}")
        base = 0.0
        for name, _, _ in cases:
            rate = row(name, n, results[name], None if "raw" in name else base)
            if "raw" in name:
                base = rate
    finally:
        for sub in subs:
            sub.kill()
            sub.wait()
        cluster.stop()
        mosquitto.kill()


if __name__ == "__main__":
    asyncio.run(main())
