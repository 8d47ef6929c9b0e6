"""A fleet on a clustered broker: five real `edge-agent run` processes on a three-node NATS cluster (JetStream,
MQTT listener), QoS 1. The node the agents are on is killed, then another; both come back. Every agent must
fail over, every counter value of every agent's PLC and every ``seq`` must reach a subscriber, and a message
may arrive twice only where QoS 1 allows it (a resend after a lost connection, or a broker redelivery).

Each agent's PLC is the replay source over its own file: a ``counter`` column 0..N-1 that the subscriber checks
value by value. What NATS's MQTT support lacks is tested in ``test_what_nats_mqtt_does_and_does_not_do``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from plugins.mqtt.connect import connack_error
from tests.conftest import free_port
from tests.nats_cluster import NatsCluster, Node, nats_binary, running_cluster

pytestmark = pytest.mark.skipif(nats_binary() is None, reason="nats-server not installed (CI installs it)")

AGENTS = 5
ROWS = 600  # counter values per agent's PLC
SPEED = 15  # rows per second: the file lasts 40 s, long enough for both kills

CONFIG = """
[agent]
id = "{agent}"
state_dir = "state"
status_interval = "1h"
readings_interval = "0.25s"
shutdown_timeout = "20s"

[health]
port = {health}

[[sources]]
type = "replay"
name = "plc"
path = "plc.csv"
speed = {speed}
at_end = "idle"
[[sources.tags]]
name = "counter"

[[sinks]]
type = "mqtt"
servers = {servers}
failover = "{failover}"
prefix = "fleet"
kinds = ["readings"]
ack_timeout = "5s"
[sinks.qos]
readings = 1
"""


@dataclass
class Arrival:
    seq: int
    counters: list[int]
    replayed: bool
    dup: bool  # the broker's DUP flag: a redelivery
    at: float


class Recorder:
    """A QoS 1 subscriber with a persistent session that records every readings message of the fleet.

    It must be subscribed before any agent publishes: a broker delivers a message only to the subscriptions
    that exist when it arrives (issue 15: a reader that subscribed 0.3 s after the agents' first publishes
    was missing their seqs 1-4 and the test blamed a node death for it). ``prove_from`` waits until a
    message published on another node has reached it.
    """

    PROBE = "fleet/_probe/readings/check"

    def __init__(self, node: Node) -> None:
        self.by_agent: dict[str, list[Arrival]] = defaultdict(list)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._probed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-reader", clean_session=False
        )
        self.client.on_connect = lambda c, *_: c.subscribe("fleet/+/readings/#", qos=1)
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", node.mqtt_port, keepalive=10)
        self.client.loop_start()
        assert self._ready.wait(20), "the fleet reader got no SUBACK"

    def prove_from(self, node: Node, within: float = 60) -> None:
        """Publish QoS 1 probes on ``node`` until one reaches this reader (interest spreads in the cluster)."""
        probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-probe")
        probe.connect("127.0.0.1", node.mqtt_port, keepalive=10)
        probe.loop_start()
        try:
            start = time.monotonic()
            while not self._probed.is_set():
                assert time.monotonic() - start < within, f"no probe from {node.name} reached the reader"
                if probe.is_connected():
                    probe.publish(self.PROBE, b"{}", qos=1)
                self._probed.wait(0.5)
        finally:
            probe.disconnect()
            probe.loop_stop()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.PROBE:
            self._probed.set()
            return
        body = json.loads(msg.payload)
        counters = [int(r["value"]) for r in body["readings"]]
        arrival = Arrival(body["seq"], counters, body["replayed"], bool(msg.dup), time.monotonic())
        with self._lock:
            self.by_agent[body["agent"]].append(arrival)

    def arrivals(self, agent: str) -> list[Arrival]:
        with self._lock:
            return list(self.by_agent[agent])

    def counters(self, agent: str) -> set[int]:
        return {c for a in self.arrivals(agent) for c in a.counters}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Agent:
    name: str
    folder: Path
    servers: list[str]
    failover: str
    health: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def write(self) -> None:
        self.folder.mkdir(parents=True)
        lines = ["timestamp,counter"] + [f"{1_700_000_000 + i},{i}" for i in range(ROWS)]
        (self.folder / "plc.csv").write_text("\n".join(lines) + "\n")
        config = CONFIG.format(
            agent=self.name,
            health=self.health,
            speed=SPEED,
            servers=json.dumps(self.servers),
            failover=self.failover,
        )
        (self.folder / "edge.toml").write_text(config)

    def spawn(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "-c", "edge.toml"],
            cwd=self.folder,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "agent.log").open("wb"),
        )

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health}/metrics", timeout=2) as reply:
                return str(reply.read().decode())
        except OSError:
            return ""

    def server(self) -> str | None:
        """The broker the agent's MQTT sink is on, from its /metrics (None while it is not up)."""
        text = self.metrics()
        if 'edge_agent_sink_state{sink="mqtt",state="up"} 1' not in text:
            return None
        for line in text.splitlines():
            if line.startswith("edge_agent_sink_server_info{"):
                return line.split('server="', 1)[1].split('"', 1)[0]
        return None

    def failovers(self) -> int:
        for line in self.metrics().splitlines():
            if line.startswith('edge_agent_sink_failovers_total{sink="mqtt"}'):
                return int(float(line.rsplit(" ", 1)[1]))
        return 0

    def log(self) -> str:
        path = self.folder / "agent.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def wait(predicate: Callable[[], bool], within: float, what: object) -> float:
    """Poll until ``predicate()``; the seconds it took. Fails after ``within`` seconds."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            pytest.fail(f"timed out after {within} s waiting for {what}")  # what may be computed late
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    yield from running_cluster(tmp_path / "nats")


@pytest.fixture
def reader(cluster: NatsCluster) -> Iterator[Recorder]:
    """The fleet's reader on n3, subscribed and reached from n1 before any agent starts."""
    reader = Recorder(cluster.nodes[2])
    try:
        reader.prove_from(cluster.nodes[0])
        yield reader
    finally:
        reader.close()


@pytest.fixture
def fleet(tmp_path: Path, cluster: NatsCluster, reader: Recorder) -> Iterator[list[Agent]]:
    urls = [node.mqtt_url for node in cluster.nodes]
    n1, n2, n3 = urls
    # Three agents prefer n1, one n2; the last walks n1/n2 in its own random order.
    plans = [([n1, n2, n3], "ordered"), ([n2, n3, n1], "ordered"), ([n1, n2, n3], "ordered")]
    plans += [([n1, n3, n2], "ordered"), ([n1, n2], "random")]
    agents = [Agent(f"gw{i + 1}", tmp_path / f"gw{i + 1}", s, f) for i, (s, f) in enumerate(plans[:AGENTS])]
    for agent in agents:
        agent.write()
        agent.spawn()
    try:
        yield agents
    finally:
        for agent in agents:
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.kill()
                agent.proc.wait(10)


def kill_and_recover(cluster: NatsCluster, agents: list[Agent], reader: Recorder, node: Node) -> list[str]:
    """Kill ``node``; wait until every agent on it is up on another node and delivering; restart the node.

    Returns one report line per agent that failed over: seconds from the kill until its /metrics showed it
    up on another node, and until the reader got a reading taken after the kill.
    """
    on_it = [a for a in agents if a.server() == node.mqtt_url]
    assert on_it, f"no agent is on {node.name}"
    newest = {a.name: max(reader.counters(a.name), default=-1) for a in on_it}
    killed = time.monotonic()
    node.kill()
    moved: dict[str, tuple[float, str]] = {}
    flowing: dict[str, float] = {}

    def everyone_back() -> bool:
        for agent in on_it:
            server = agent.server()
            if agent.name not in moved and server not in (None, node.mqtt_url):
                moved[agent.name] = (time.monotonic() - killed, cluster.by_mqtt_url(server).name)
            # a reading at least a second of PLC time younger than the newest seen before the kill
            if agent.name not in flowing and max(reader.counters(agent.name)) > newest[agent.name] + SPEED:
                flowing[agent.name] = time.monotonic() - killed
        return len(moved) == len(flowing) == len(on_it)

    wait(everyone_back, 60, Late(lambda: stuck(on_it, moved, flowing, node)))
    cluster.restart(node)
    return [
        f"{a.name}: {node.name} -> {moved[a.name][1]}, up on it {moved[a.name][0]:.2f} s after the kill, "
        f"new readings at the reader after {flowing[a.name]:.2f} s"
        for a in on_it
    ]


class Late:
    """A failure message worked out only when a wait fails."""

    def __init__(self, make: Callable[[], str]) -> None:
        self.make = make

    def __str__(self) -> str:
        return self.make()


def stuck(on_it: list[Agent], moved: dict[str, Any], flowing: dict[str, float], node: Node) -> str:
    late = [a for a in on_it if a.name not in moved or a.name not in flowing]
    return f"every agent on {node.name} to fail over and deliver; still not: " + "\n".join(
        f"{a.name} moved={moved.get(a.name)} flowing={flowing.get(a.name)}\n{a.log()[-2500:]}" for a in late
    )


def missing(fleet: list[Agent], reader: Recorder) -> str:
    lines = ["every counter of every agent; missing:"]
    for agent in fleet:
        gone = sorted(set(range(ROWS)) - reader.counters(agent.name))
        seqs = sorted({a.seq for a in reader.arrivals(agent.name)})
        if gone:
            lines.append(
                f"{agent.name} on {agent.server()}: {len(gone)} values from {gone[:3]}, seqs up to "
                f"{seqs[-1] if seqs else None} ({len(seqs)} distinct)\n{agent.log()[-1500:]}"
            )
    return "\n".join(lines)


@pytest.mark.slow
def test_a_fleet_survives_two_broker_nodes_dying(
    cluster: NatsCluster, reader: Recorder, fleet: list[Agent], capsys: pytest.CaptureFixture[str]
) -> None:
    report: list[str] = []
    wait(lambda: all(a.server() is not None for a in fleet), 60, "every agent up")
    wait(lambda: all(len(reader.counters(a.name)) > SPEED for a in fleet), 60, "every agent delivering")
    n1, n2, _ = cluster.nodes
    report += kill_and_recover(cluster, fleet, reader, n1)
    report += kill_and_recover(cluster, fleet, reader, n2)
    wait(
        lambda: all(len(reader.counters(a.name)) >= ROWS for a in fleet),
        90,
        Late(lambda: missing(fleet, reader)),
    )
    time.sleep(1.0)  # redeliveries in flight still count as duplicates
    failed_over: dict[str, int] = {}
    for agent in fleet:
        assert agent.proc is not None and agent.proc.poll() is None, agent.log()
        arrivals = reader.arrivals(agent.name)
        assert reader.counters(agent.name) == set(range(ROWS)), f"{agent.name}: a PLC value is missing"
        seqs = sorted({a.seq for a in arrivals})
        assert seqs == list(range(1, seqs[-1] + 1)), f"{agent.name}: a seq is missing"
        copies: dict[int, list[Arrival]] = defaultdict(list)
        for a in arrivals:
            copies[a.seq].append(a)
        duplicates = {seq: c for seq, c in copies.items() if len(c) > 1}
        for seq, c in duplicates.items():
            # QoS 1: a resend after a lost connection (replayed) or a broker redelivery (DUP flag).
            assert any(a.replayed or a.dup for a in c), f"{agent.name}: seq {seq} twice, neither resent"
        moves = failed_over[agent.name] = agent.failovers()
        report.append(
            f"{agent.name}: {len(arrivals)} messages, {len(seqs)} seqs, {len(duplicates)} duplicated, "
            f"{moves} failovers, now on {cluster.by_mqtt_url(str(agent.server())).name}"
        )
    assert all(failed_over.values()), f"every agent fails over at least once: {failed_over}"
    with capsys.disabled():
        print("\nfleet recovery (NATS cluster, 3 nodes):\n  " + "\n  ".join(report))


def nats_version() -> tuple[int, ...]:
    out = subprocess.run([str(nats_binary()), "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(p) for p in out.strip().rsplit("v", 1)[1].split(".")[:2])


class Probe:
    """A bare paho client on one node that records what it receives."""

    def __init__(self, node: Node, client_id: str, **options: Any) -> None:
        self.got: list[tuple[str, bytes, bool]] = []
        self.connack: list[Any] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **options)
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, m.payload, bool(m.retain)))
        self.client.on_connect = lambda c, u, f, code, p: self.connack.append(code)
        self.client.connect("127.0.0.1", node.mqtt_port, keepalive=10)
        self.client.loop_start()

    def subscribe(self, topic: str) -> None:
        wait(lambda: self.client.is_connected(), 10, "CONNACK")
        self.client.subscribe(topic, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.slow
def test_what_nats_mqtt_does_and_does_not_do(cluster: NatsCluster) -> None:
    n1, n2, n3 = cluster.nodes
    probes: list[Probe] = []
    try:
        # Retained messages work, and reach subscribers on the other nodes after a short sync.
        publisher = Probe(n1, "pub")
        probes.append(publisher)
        wait(publisher.client.is_connected, 10, "CONNACK")
        publisher.client.publish(
            "fleet/gw9/status", b'{"state":"online"}', qos=1, retain=True
        ).wait_for_publish(10)
        for node in (n1, n2):
            late = Probe(node, f"late-{node.name}")
            probes.append(late)
            late.subscribe("fleet/+/status")
            wait(lambda p=late: ("fleet/gw9/status", b'{"state":"online"}', True) in p.got, 20, "retained")  # type: ignore[misc]
        # The last will is published when a client drops without DISCONNECT, to subscribers on any node.
        watcher = Probe(n3, "watcher")
        probes.append(watcher)
        watcher.subscribe("fleet/+/will")
        time.sleep(0.5)  # the subscription must be in place (NATS gives no other sign) before the drop
        doomed = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="doomed")
        doomed.will_set("fleet/gw8/will", b"offline", qos=1)
        doomed.connect("127.0.0.1", n2.mqtt_port)
        doomed.loop_start()
        wait(doomed.is_connected, 10, "CONNACK")
        doomed.socket().close()  # type: ignore[union-attr]
        wait(lambda: ("fleet/gw8/will", b"offline", False) in watcher.got, 20, "the will")
        doomed.loop_stop()
        # QoS 2: nats-server before 2.10 closes the connection on a QoS 2 PUBLISH.
        qos2 = Probe(n1, "qos2")
        probes.append(qos2)
        wait(qos2.client.is_connected, 10, "CONNACK")
        info = qos2.client.publish("fleet/gw7/x", b"1", qos=2)
        if nats_version() < (2, 10):
            wait(lambda: not qos2.client.is_connected(), 10, "the QoS 2 refusal")
        else:
            info.wait_for_publish(10)
        # MQTT 5 is refused with CONNACK 0x84, which the sink reports as fatal: "set protocol".
        v5 = Probe(n1, "v5", protocol=mqtt.MQTTv5)
        probes.append(v5)
        wait(lambda: bool(v5.connack), 10, "the CONNACK to MQTT 5")
        assert v5.connack[0].value == 0x84 and "set protocol" in str(connack_error(v5.connack[0], "n1"))
    finally:
        for probe in probes:
            probe.close()
