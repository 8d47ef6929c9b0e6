"""UNS mode of the MQTT sink: a subscriber that comes late sees the present of every tag and pipeline.

In process against a real mosquitto, then the real `edge-agent run` with its configured units.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from pydantic import ValidationError

from agent.errors import FatalError
from agent.plugin import ComponentStatus, PluginContext
from agent.records import Envelope, Kind, Message
from plugins.mqtt.config import MqttSinkConfig
from plugins.mqtt.sink import MqttSink
from plugins.mqtt.uns import TypeLock
from tests.mosquitto import Mosquitto, running_mosquitto
from tests.pump import make_data, make_model, source_and_pipeline

SCHEMAS = Path(__file__).resolve().parents[1] / "agent" / "schemas"
TAGS = {
    "press": {
        "running": {"unit": None, "type": "bool"},
        "pressure": {"unit": "bar", "type": "int16"},
        "recipe": {"unit": None, "type": "string"},
        "temp": {"unit": "degC", "type": None},
    }
}


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    yield from running_mosquitto(tmp_path)


def late_subscriber(port: int, topic_filter: str, expect: int) -> dict[str, dict[str, Any]]:
    """Connect now, subscribe, and return the retained messages (topic -> body) once ``expect`` came."""
    got: dict[str, dict[str, Any]] = {}
    done, lock = threading.Event(), threading.Lock()

    def on_message(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            with lock:
                got[msg.topic] = json.loads(msg.payload)
                if len(got) >= expect:
                    done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="late-dashboard")
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe(topic_filter, qos=1)
    client.loop_start()
    try:
        done.wait(15)
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        return dict(got)


def make_sink(
    port: int, tmp_path: Path, prefix: str = "plant/line1", agent_id: str = "gw1", **uns: Any
) -> MqttSink:
    config = MqttSinkConfig(
        type="mqtt",
        name="uns",
        host="127.0.0.1",
        port=port,
        prefix=prefix,
        kinds=["alert", "status", "features", "readings"],
        uns={"enabled": True, **uns},
    )
    ctx = PluginContext("uns", agent_id, tmp_path, ComponentStatus("uns", "sink"), tags=TAGS)
    return MqttSink(config, ctx)


def readings(n: int, rows: list[tuple[str, Any, int]], replayed: bool = False) -> Envelope:
    body = {
        "source": "press",
        "readings": [{"tag": t, "ts_ms": ts, "value": v, "quality": "good"} for t, v, ts in rows],
    }
    return Envelope(n, n, Message(Kind.READINGS, "press", rows[-1][2] / 1000, body), replayed=replayed)


async def test_a_late_subscriber_sees_every_tag_and_the_alert_state(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sink = make_sink(mosquitto.port, tmp_path)
    async with sink:
        await sink.publish(
            [
                readings(1, [("running", True, 1000), ("pressure", 3, 1000), ("recipe", "A", 1000)]),
                readings(2, [("pressure", 4, 2000), ("temp", 21, 2000), ("temp", 21.5, 3000)]),
                readings(3, [("pressure", "n/a", 4000)]),  # text on a numeric tag: null, bad, never a string
                readings(4, [("running", False, 500)], replayed=True),  # older than the present: kept out
            ]
        )
        alert = {"pipeline": "pump", "state": "raised", "score": 9.5, "threshold": 4.0, "summary": "hot"}
        await sink.publish([Envelope(5, 1, Message(Kind.ALERT, "pump", 5.0, alert))])
    got = late_subscriber(mosquitto.port, "plant/line1/gw1/#", expect=6)  # 4 tags, state, status
    base = "plant/line1/gw1"
    assert got[f"{base}/press/running"]["value"] is True
    assert got[f"{base}/press/recipe"] == {
        "schema": "edge-agent/tag/1",
        "value": "A",
        "ts_ms": 1000,
        "quality": "good",
        "unit": None,
    }
    temp = got[f"{base}/press/temp"]
    assert temp["value"] == 21.5 and isinstance(temp["value"], float) and temp["unit"] == "degC"
    pressure = got[f"{base}/press/pressure"]
    assert pressure["value"] is None and pressure["quality"] == "bad" and "not a number" in pressure["reason"]
    assert pressure["unit"] == "bar" and pressure["ts_ms"] == 4000
    state = got[f"{base}/alerts/pump/state"]
    assert state["active"] is True and state["state"] == "raised" and state["ts_ms"] == 5000
    assert f"{base}/readings/press" not in got  # the per-tag topics replace the batch topic
    jsonschema.validate(state, json.loads((SCHEMAS / "alert-state.schema.json").read_text()))
    tag_schema = json.loads((SCHEMAS / "tag.schema.json").read_text())
    for topic, body in got.items():
        if "/press/" in topic:
            jsonschema.validate(body, tag_schema)


def test_the_json_type_of_a_tag_never_changes() -> None:
    lock = TypeLock({"flag": "bool"})
    assert lock.fit("flag", True) == (True, None)
    assert lock.fit("flag", 1)[0] is None  # 1 is not a bool
    assert lock.fit("n", 1) == (1.0, None)  # first value pins "number"; always a JSON float
    assert lock.fit("n", 2.5) == (2.5, None)
    assert lock.fit("n", True)[0] is None
    assert lock.fit("s", None) == (None, None)  # null pins nothing
    assert lock.fit("s", "x") == ("x", None)
    assert lock.fit("s", 3)[0] is None


def test_uns_needs_readings_and_refuses_a_source_named_like_an_agent_topic(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match='add "readings" to kinds'):
        MqttSinkConfig(type="mqtt", uns={"enabled": True})
    config = MqttSinkConfig(type="mqtt", kinds=["readings"], uns={"enabled": True})
    ctx = PluginContext("uns", "gw1", tmp_path, ComponentStatus("uns", "sink"), tags={"alerts": {}})
    with pytest.raises(FatalError, match="source name 'alerts'"):
        MqttSink(config, ctx)


CONFIG = """
[agent]
id = "gw1"
state_dir = "state"
status_interval = "1h"

[health]
enabled = false

{pump}
[[sinks]]
type = "mqtt"
host = "127.0.0.1"
port = {port}
prefix = "plant"
kinds = ["alert", "status", "features", "readings"]
uns.enabled = true
"""


def test_the_real_agent_leaves_the_present_retained_with_units(tmp_path: Path, mosquitto: Mosquitto) -> None:
    make_data(tmp_path / "data.csv", seconds=600, anomaly=(300, 400))
    make_model(tmp_path / "model.onnx")
    pump = source_and_pipeline(speed=200).replace('name = "vibration"', 'name = "vibration"\nunit = "mm/s"')
    (tmp_path / "edge.toml").write_text(CONFIG.format(port=mosquitto.port, pump=pump))
    run = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(tmp_path / "edge.toml")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = late_subscriber(mosquitto.port, "plant/gw1/#", expect=4)  # 2 tags, the alert state, the status
    vibration = got["plant/gw1/rec/vibration"]
    assert vibration["unit"] == "mm/s" and isinstance(vibration["value"], float)
    assert vibration["ts_ms"] == 1_700_000_599_000  # the last row of the file
    state = got["plant/gw1/alerts/pump/state"]
    assert state["active"] is False and state["state"] == "cleared"  # raised at ~310 s, cleared at ~410 s
