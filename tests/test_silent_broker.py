"""A broker that accepts the connection but never sends PUBACK (issue 11 item 9): the agent says it is not
ready, and logs "connected" once, not at every retry."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
from pathlib import Path

from tests.conftest import free_port
from tests.mosquitto import eventually
from tests.test_operations import Agent

CONFIG = """
[agent]
id = "g"
state_dir = "state"
status_interval = "1h"
[health]
port = {health}
[[sources]]
type = "replay"
name = "rec"
path = "data.csv"
speed = 20
at_end = "loop"
[[sources.tags]]
name = "a"
[[sinks]]
type = "mqtt"
host = "127.0.0.1"
port = {broker}
ack_timeout = "300ms"
kinds = ["readings"]
"""


class ConnackOnly:
    """Answers CONNECT with CONNACK (accepted) and PINGREQ with PINGRESP; never acknowledges a PUBLISH."""

    def __init__(self, port: int, drop_after: float | None = None) -> None:
        self.port = port
        self.connections = 0
        self.drop_after = drop_after  # set: acknowledge publishes, and close every connection this soon

    async def __aenter__(self) -> ConnackOnly:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(
            asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError, TimeoutError
        ):
            async with asyncio.timeout(self.drop_after):
                await self._packets(reader, writer)
        writer.close()

    async def _packets(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            first = (await reader.readexactly(1))[0]
            length, shift = 0, 0
            while True:
                byte = (await reader.readexactly(1))[0]
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            body = await reader.readexactly(length)
            if first >> 4 == 1:  # CONNECT
                writer.write(b"\x20\x02\x00\x00")
            elif first >> 4 == 12:  # PINGREQ
                writer.write(b"\xd0\x00")
            elif first >> 4 == 3 and (first >> 1) & 3 and self.drop_after is not None:  # PUBLISH, QoS 1
                topic_len = int.from_bytes(body[:2], "big")
                writer.write(b"\x40\x02" + body[2 + topic_len : 4 + topic_len])  # PUBACK
            await writer.drain()


def readyz(port: int) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/readyz")
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


async def test_a_broker_that_never_acknowledges_makes_the_agent_not_ready(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("ts,a\n" + "".join(f"{1_700_000_000 + i},{i}\n" for i in range(100)))
    health, broker = free_port(), free_port()
    (tmp_path / "edge.toml").write_text(CONFIG.format(health=health, broker=broker))
    async with ConnackOnly(broker) as fake:
        agent = Agent(tmp_path)
        try:
            await eventually(lambda: fake.connections >= 3, within=60, what="three connections")
            status, body = await asyncio.to_thread(readyz, health)
        finally:
            code = await asyncio.to_thread(agent.stop)
    assert code == 0
    assert status == 503 and "connected but nothing is acknowledged" in body, body
    lines = [json.loads(x) for x in agent.log().splitlines() if x.startswith("{")]
    events = [e["event"] for e in lines if e.get("component", "").startswith("sink")]
    assert events.count("connected") == 1, events
    assert events.count("connection lost") == 1, events


async def test_a_broker_dropping_every_connection_soon_is_logged_once_not_per_cycle(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("ts,a\n" + "".join(f"{1_700_000_000 + i},{i}\n" for i in range(100)))
    health, broker = free_port(), free_port()
    (tmp_path / "edge.toml").write_text(CONFIG.format(health=health, broker=broker))
    async with ConnackOnly(broker, drop_after=0.5) as fake:
        agent = Agent(tmp_path)
        try:
            await eventually(lambda: fake.connections >= 8, within=90, what="eight short connections")
        finally:
            code = await asyncio.to_thread(agent.stop)
    assert code == 0
    lines = [json.loads(x) for x in agent.log().splitlines() if x.startswith("{")]
    sink = [e["event"] for e in lines if e.get("component", "").startswith("sink")]
    # connected, lost, recovered once; then one line says it is unstable; nothing per cycle after that
    assert len(sink) <= 6, sink
    assert sink.count("connection unstable: it fails again soon after each connect, backing off") == 1
