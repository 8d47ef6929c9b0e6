"""The Sparkplug sink in process against a real mosquitto: the primary host's STATE, and config refusals."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from agent.errors import TransientError
from agent.plugin import ComponentStatus, PluginContext
from agent.records import Envelope, Kind, Message
from plugins.sparkplug.config import SparkplugSinkConfig
from plugins.sparkplug.sink import SparkplugSink
from tests.mosquitto import Mosquitto, eventually, running_mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    yield from running_mosquitto(tmp_path)


class Watcher:
    """Records the topic of every message under spBv1.0/#, and publishes STATE like a primary host."""

    def __init__(self, port: int) -> None:
        self.topics: list[str] = []
        self._lock, ready = threading.Lock(), threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("spBv1.0/#", qos=1)
        self.client.loop_start()
        assert ready.wait(10)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.topics.append(msg.topic)

    def seen(self, kind: str) -> int:
        with self._lock:
            return sum(f"/{kind}/" in t for t in self.topics)

    def state(self, online: bool) -> None:
        body = json.dumps({"online": online, "timestamp": 1}).encode()
        self.client.publish("spBv1.0/STATE/scada", body, 1, True).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_sink(port: int, tmp_path: Path, **options: Any) -> SparkplugSink:
    config = SparkplugSinkConfig(
        type="sparkplug", name="spb", host="127.0.0.1", port=port, group_id="plant", **options
    )
    ctx = PluginContext(name="spb", agent_id="gw1", state_dir=tmp_path, status=ComponentStatus("spb", "sink"))
    return SparkplugSink(config, ctx)


def readings(n: int) -> Envelope:
    body = {
        "source": "rec",
        "readings": [{"tag": "t", "ts_ms": 1000 + n, "value": float(n), "quality": "good"}],
    }
    return Envelope(n, n, Message(Kind.READINGS, "rec", 1.0 + n, body))


async def test_nbirth_waits_for_the_primary_host_and_its_offline_stops_publishing(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    watcher = Watcher(mosquitto.port)
    sink = make_sink(mosquitto.port, tmp_path, primary_host_id="scada")
    try:
        entering = asyncio.create_task(sink.__aenter__(), name="enter")
        await eventually(lambda: sink._connected, what="the connection")
        await asyncio.sleep(0.3)  # give a wrong NBIRTH every chance to appear
        assert watcher.seen("NBIRTH") == 0 and not entering.done()
        watcher.state(True)
        await asyncio.wait_for(entering, 10)
        await eventually(lambda: watcher.seen("NBIRTH") == 1, what="NBIRTH after STATE online")
        await sink.publish([readings(1)])
        await eventually(lambda: watcher.seen("DBIRTH") == 1, what="DBIRTH")
        watcher.state(False)
        await eventually(lambda: not sink.connected, what="the sink to see the host offline")
        with pytest.raises(TransientError, match="primary host scada is offline"):
            await sink.publish([readings(2)])  # the outbox keeps it
        assert watcher.seen("DDATA") == 0
    finally:
        await sink.__aexit__(None, None, None)
        watcher.close()


async def test_other_commands_are_refused_and_logged(tmp_path: Path, mosquitto: Mosquitto) -> None:
    watcher = Watcher(mosquitto.port)
    sink = make_sink(mosquitto.port, tmp_path)
    try:
        with capture_logs() as logs:
            await sink.__aenter__()
            watcher.client.publish("spBv1.0/plant/NCMD/gw1", b"\xff\xff not protobuf", 1).wait_for_publish(5)
            watcher.client.publish("spBv1.0/plant/DCMD/gw1/rec", b"", 1).wait_for_publish(5)
            await eventually(lambda: sum(e["event"] == "command refused" for e in logs) == 2, what="refusals")
        assert watcher.seen("NBIRTH") == 1  # and nothing else happened
    finally:
        await sink.__aexit__(None, None, None)
        watcher.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prefix": "x"}, "not a Sparkplug option"),
        ({"clean_start": False}, "clean session"),
        ({"group_id": "a/b"}, "group_id"),
    ],
)
def test_config_refuses_what_sparkplug_does_not_allow(options: dict[str, Any], message: str) -> None:
    base = {"type": "sparkplug", "group_id": "plant", **options}
    with pytest.raises(ValidationError, match=message):
        SparkplugSinkConfig.model_validate(base)
