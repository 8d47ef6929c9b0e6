"""The fleet failover against a second real broker: two private RabbitMQ nodes with the MQTT plugin.

Each node has its own name, home (and so Erlang cookie), Mnesia and log folders, enabled-plugins file and
config, on free loopback ports, and both register with an ``epmd`` this test starts on a free port, so the
machine's own RabbitMQ and epmd are never touched. The nodes are not clustered (a RabbitMQ cluster's join
would double the time): each agent lists both and fails over from one to the other, and a QoS 1 reader on
each node gets what was published there. Every counter and every ``seq`` must reach one of the readers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_fleet import ROWS, SPEED, Agent, Recorder, wait

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
pytestmark = pytest.mark.skipif(not SERVER.exists(), reason="rabbitmq-server not installed")


@dataclass
class RabbitNode:
    name: str
    folder: Path
    epmd_port: int
    amqp_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (self.folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}\n"
            "mqtt.allow_anonymous = true\nloopback_users = none\n"
        )
        env = {
            **os.environ,
            "HOME": str(self.folder),
            "RABBITMQ_NODENAME": f"{self.name}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.folder / "pid"),
        }
        out = (self.folder / "out.log").open("ab")
        self.proc = subprocess.Popen(
            [str(SERVER)], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
        out.close()

    def wait_up(self, within: float = 60) -> None:
        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                socket.create_connection(("127.0.0.1", self.mqtt_port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait(up, within, f"RabbitMQ {self.name} to listen for MQTT")

    def kill(self) -> None:
        """SIGKILL to the node's own process group (the shell script, beam and its helpers)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        path = self.folder / "out.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@pytest.fixture
def rabbits(tmp_path: Path) -> Iterator[list[RabbitNode]]:
    epmd_port = free_port()
    epmd = subprocess.Popen(["epmd", "-port", str(epmd_port)], stdin=subprocess.DEVNULL)
    suffix = os.urandom(3).hex()
    nodes = [RabbitNode(f"fleet-{suffix}-{x}", tmp_path / f"rabbit-{x}", epmd_port) for x in "ab"]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_up()
        yield nodes
    finally:
        for node in nodes:
            node.kill()
        epmd.kill()
        epmd.wait(10)


@pytest.mark.slow
def test_agents_fail_over_between_two_rabbitmq_nodes(
    rabbits: list[RabbitNode], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = rabbits
    agents = [
        Agent(f"gw{i + 1}", tmp_path / f"gw{i + 1}", [a.mqtt_url, b.mqtt_url], "ordered") for i in range(2)
    ]
    readers = [Recorder(a), Recorder(b)]  # type: ignore[arg-type]  # a node with an mqtt_port is enough
    report = []
    try:
        for agent in agents:
            agent.write()
            agent.spawn()
        wait(lambda: all(x.server() == a.mqtt_url for x in agents), 60, "every agent on node a")

        def counters(agent: Agent) -> set[int]:
            return readers[0].counters(agent.name) | readers[1].counters(agent.name)

        wait(lambda: all(len(counters(x)) > SPEED for x in agents), 60, "every agent delivering")
        newest = {x.name: max(counters(x)) for x in agents}
        killed = time.monotonic()
        a.kill()
        wait(lambda: all(x.server() == b.mqtt_url for x in agents), 60, "every agent on node b")
        moved = time.monotonic() - killed
        wait(lambda: all(max(counters(x)) > newest[x.name] + SPEED for x in agents), 60, "new readings on b")
        report.append(f"all on b {moved:.2f} s after a died, new readings {time.monotonic() - killed:.2f} s")
        a.start()  # what a confirmed before it died is in its durable queue for its reader
        a.wait_up()
        wait(lambda: all(len(counters(x)) >= ROWS for x in agents), 90, "every counter of every agent")
        for agent in agents:
            seqs = sorted({m.seq for r in readers for m in r.arrivals(agent.name)})
            assert counters(agent) == set(range(ROWS)), f"{agent.name}: a PLC value is missing"
            assert seqs == list(range(1, seqs[-1] + 1)), f"{agent.name}: a seq is missing"
            arrivals = [m for r in readers for m in r.arrivals(agent.name)]
            for seq in {m.seq for m in arrivals if sum(n.seq == m.seq for n in arrivals) > 1}:
                same = [m for m in arrivals if m.seq == seq]
                assert any(m.replayed or m.dup for m in same), (
                    f"{agent.name}: seq {seq} twice, neither resent"
                )
            copies = len(arrivals) - len(seqs)
            report.append(
                f"{agent.name}: {len(seqs)} seqs, {copies} duplicated, {agent.failovers()} failovers"
            )
    finally:
        for reader in readers:
            reader.close()
        for agent in agents:
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.kill()
                agent.proc.wait(10)
    with capsys.disabled():
        print("\nfleet recovery (RabbitMQ, 2 nodes):\n  " + "\n  ".join(report))
