"""A server list in the MQTT sink: config validation, failover order, and a real failover between two mosquittos.

The fleet test on a NATS cluster is in ``tests/test_fleet.py``; this file keeps the fast checks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.delivery.memory_store import MemoryOutbox
from agent.errors import TransientError
from agent.ops.metrics import MetricsSnapshot, SinkMetrics, render
from agent.plugin import ComponentStatus, PluginContext, State
from plugins.mqtt.config import MqttSinkConfig
from plugins.mqtt.servers import Server, ServerList, parse_server
from plugins.mqtt.sink import MqttSink
from tests.conftest import free_port
from tests.mosquitto import Mosquitto, Subscriber, eventually, running_mosquitto
from tests.test_mqtt_sink import PREFIX, delivering, features


def config(**options: Any) -> MqttSinkConfig:
    return MqttSinkConfig.model_validate({"type": "mqtt", **options})


def test_a_server_url_gives_host_port_and_tls() -> None:
    assert parse_server("mqtt://a") == Server("a", 1883, False)
    assert parse_server("mqtts://b.plant.local") == Server("b.plant.local", 8883, True)
    assert parse_server("mqtts://10.0.0.7:9883").url == "mqtts://10.0.0.7:9883"
    assert parse_server("mqtt://[::1]:1884").url == "mqtt://[::1]:1884"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("tcp://a:1883", "mqtt:// or mqtts://"),
        ("a:1883", "mqtt:// or mqtts://"),
        ("mqtt://:1883", "no host"),
        ("mqtt://a:99999", "out of range"),
        ("mqtt://user:pw@a:1883", "credentials"),
        ("mqtt://a:1883/topic", "nothing after it"),
    ],
)
def test_a_bad_server_url_is_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        config(servers=[url])


def test_servers_and_host_or_port_together_are_refused() -> None:
    with pytest.raises(ValidationError, match="either servers or host"):
        config(servers=["mqtt://a:1883"], host="b")
    with pytest.raises(ValidationError, match="either servers or port"):
        config(servers=["mqtt://a:1883"], port=1884)
    with pytest.raises(ValidationError, match="listed twice"):
        config(servers=["mqtt://a:1883", "mqtt://A:1883"])
    with pytest.raises(ValidationError, match="write it as mqtts://"):
        config(servers=["mqtts://a", "mqtt://b"], tls=True)
    with pytest.raises(ValidationError, match="failover"):
        config(servers=["mqtt://a"], failover="roundrobin")


def test_the_single_host_still_works_as_a_list_of_one() -> None:
    assert config(host="b", port=1884).server_list == [Server("b", 1884, False)]
    assert config(host="b", tls_ca_file="/ca.pem").server_list == [Server("b", 8883, True)]
    mixed = config(servers=["mqtt://a:1883", "mqtts://b:8883"]).server_list
    assert mixed == [Server("a", 1883, False), Server("b", 8883, True)]


def test_ordered_failover_walks_the_list_and_wraps() -> None:
    servers = [Server(h, 1883, False) for h in "abc"]
    order = ServerList(servers, "ordered")
    assert [order.current.host] + [order.failed().host for _ in range(4)] == list("abcab")
    assert order.failovers == 4
    alone = ServerList(servers[:1])
    assert alone.failed() == servers[0] and alone.failovers == 0  # one server: retrying is not moving


def test_random_failover_tries_every_server_before_any_twice_and_spreads_a_fleet() -> None:
    servers = [Server(h, 1883, False) for h in "abcde"]
    firsts = set()
    for seed in range(40):
        walk = ServerList(servers, "random", random.Random(seed))
        seen = [walk.current] + [walk.failed() for _ in range(4)]
        assert sorted(s.host for s in seen) == list("abcde")
        firsts.add(walk.current.host)
    assert len(firsts) > 1  # agents listing the same servers start on different ones


@pytest.fixture
def two_brokers(tmp_path: Path) -> Iterator[tuple[Mosquitto, Mosquitto]]:
    first = running_mosquitto(tmp_path / "a")
    second = running_mosquitto(tmp_path / "b")
    yield next(first), next(second)
    for gen in (first, second):
        gen.close()


async def test_the_sink_fails_over_to_the_next_server_and_says_which(
    two_brokers: tuple[Mosquitto, Mosquitto], tmp_path: Path
) -> None:
    a, b = two_brokers
    subs = [Subscriber(a.port, f"{PREFIX}/#", "sub-a"), Subscriber(b.port, f"{PREFIX}/#", "sub-b")]
    servers = [f"mqtt://127.0.0.1:{a.port}", f"mqtt://127.0.0.1:{b.port}"]
    cfg = config(name="mqtt", servers=servers, prefix=PREFIX)
    status = ComponentStatus("mqtt", "sink")
    sink = MqttSink(cfg, PluginContext("mqtt", "a1", tmp_path, status))
    outbox = MemoryOutbox(10**6)
    try:
        async with delivering(sink, outbox):
            outbox.append([features("line1", 0)])
            await subs[0].wait_for(lambda ms: any("/features/" in m.topic for m in ms))
            assert status.info["server"] == servers[0] and status.counters["server_index"] == 0
            a.kill()
            outbox.append([features("line1", 1)])
            got = await subs[1].wait_for(lambda ms: any("/features/" in m.topic for m in ms), within=30)
            await eventually(lambda: status.state is State.UP, what="the sink up again")
        assert [m.body["seq"] for m in got if "/features/" in m.topic][-1] == 2
        assert status.info["server"] == servers[1] and status.counters["server_index"] == 1
        assert status.counters["failovers"] >= 1
    finally:
        for sub in subs:
            sub.close()
    sinks = [SinkMetrics("mqtt", "up", server=status.info["server"], failovers_total=1)]
    text = render(MetricsSnapshot(sinks=sinks))
    info = [line for line in text.splitlines() if line.startswith("edge_agent_sink_server_info{")]
    assert len(info) == 1 and f'server="{servers[1]}"' in info[0] and 'sink="mqtt"' in info[0]
    assert info[0].endswith(" 1.0")
    assert 'edge_agent_sink_failovers_total{sink="mqtt"} 1.0' in text


def test_a_sink_with_one_host_shows_no_server_metrics() -> None:
    text = render(MetricsSnapshot(sinks=[SinkMetrics("file", "up")]))
    assert "sink_server_info" not in text and "sink_failovers_total" not in text


async def test_one_attempt_tries_each_server_once_and_says_what_each_answered(
    two_brokers: tuple[Mosquitto, Mosquitto], tmp_path: Path
) -> None:
    a, _ = two_brokers
    dead = [f"mqtt://127.0.0.1:{free_port()}", f"mqtt://127.0.0.1:{free_port()}"]
    status = ComponentStatus("mqtt", "sink")
    sink = MqttSink(
        config(name="mqtt", servers=[*dead, f"mqtt://127.0.0.1:{a.port}"], prefix=PREFIX),
        PluginContext("mqtt", "a1", tmp_path, status),
    )
    async with sink:  # no supervisor, no backoff: the pass walks past both dead servers
        assert sink.connected and status.info["server"].endswith(f":{a.port}")
        assert status.counters["failovers"] == 2
    nobody = MqttSink(config(name="mqtt", servers=dead), PluginContext("mqtt", "a1", tmp_path, status))
    with pytest.raises(TransientError, match="no server of 2 took the connection") as caught:
        async with nobody:
            pass
    assert all(f"{url}: broker" in str(caught.value) for url in dead)
