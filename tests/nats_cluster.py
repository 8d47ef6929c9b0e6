"""A real three-node NATS cluster with JetStream and the MQTT listener, for tests and benchmarks.

Each node has its own config file, store directory and loopback ports (client, cluster route, MQTT and HTTP
monitoring), so the cluster never touches the machine's shared NATS on 4222. A node keeps its ports across
``kill()`` / ``start()``, like a broker pod that restarts with the same address.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port

BINARY = "/usr/sbin/nats-server"


def nats_binary() -> str | None:
    return shutil.which("nats-server") or (BINARY if Path(BINARY).exists() else None)


@dataclass
class Node:
    name: str
    folder: Path
    client_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def config(self, routes: list[int]) -> str:
        others = ", ".join(f"nats-route://127.0.0.1:{port}" for port in routes)
        return f"""
server_name: {self.name}
listen: 127.0.0.1:{self.client_port}
http: 127.0.0.1:{self.http_port}
cluster {{
  name: fleet
  listen: 127.0.0.1:{self.cluster_port}
  routes: [{others}]
}}
jetstream {{
  store_dir: "{self.folder / "js"}"
  max_memory_store: 64MB
  max_file_store: 512MB
}}
mqtt {{
  listen: 127.0.0.1:{self.mqtt_port}
  ack_wait: "5s"
  stream_replicas: 3
}}
"""

    def start(self, binary: str) -> None:
        assert not self.running, f"{self.name} is already running"
        log = (self.folder / "nats.log").open("ab")
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.folder / "nats.conf"), "-l", str(self.folder / "nats.log")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: the node dies as a crashed pod does, without closing its connections politely."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def healthy(self, streams: bool = True) -> bool:
        """The node serves MQTT and its JetStream is current (``/healthz`` answers 200).

        ``streams=False`` checks the node's JetStream and metadata only: a node that comes back into a busy
        cluster reports a consumer replica "not current" for as long as messages keep flowing.
        """
        if not self.running:
            return False
        query = "" if streams else "?js-server-only=true"
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}/healthz{query}", timeout=1
            ) as reply:
                ok = reply.status == 200
            socket.create_connection(("127.0.0.1", self.mqtt_port), timeout=0.5).close()
            return ok
        except OSError:
            return False

    def log_tail(self) -> str:
        path = self.folder / "nats.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


class NatsCluster:
    """Three nodes ``n1``..``n3`` in ``folder``; ``start()`` returns once every node is healthy."""

    def __init__(self, folder: Path, size: int = 3) -> None:
        binary = nats_binary()
        if binary is None:
            raise RuntimeError("nats-server is missing: apt-get install nats-server (CI installs it)")
        self.binary = binary
        self.nodes = [Node(f"n{i + 1}", folder / f"n{i + 1}") for i in range(size)]
        for node in self.nodes:
            node.folder.mkdir(parents=True, exist_ok=True)
            routes = [other.cluster_port for other in self.nodes if other is not node]
            (node.folder / "nats.conf").write_text(node.config(routes))

    def start(self, within: float = 30.0) -> None:
        for node in self.nodes:
            if not node.running:
                node.start(self.binary)
        self.wait_healthy(self.nodes, within)

    def restart(self, node: Node, within: float = 30.0) -> None:
        node.start(self.binary)
        self.wait_healthy([node], within, streams=False)

    def wait_healthy(self, nodes: list[Node], within: float, streams: bool = True) -> None:
        deadline = time.monotonic() + within
        while not all(node.healthy(streams) for node in nodes):
            for node in nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(f"{node.name} exited: {node.log_tail()}")
            if time.monotonic() > deadline:
                sick = [n.name for n in nodes if not n.healthy(streams)]
                raise RuntimeError(f"nodes {sick} not healthy in {within} s: {nodes[0].log_tail()}")
            time.sleep(0.1)

    def by_mqtt_url(self, url: str) -> Node:
        return next(node for node in self.nodes if node.mqtt_url == url)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


def running_cluster(folder: Path) -> Iterator[NatsCluster]:
    """Body of a fixture: a started cluster, killed at teardown."""
    cluster = NatsCluster(folder)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
