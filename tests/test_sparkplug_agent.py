"""The real `edge-agent run` as a Sparkplug B edge node, watched by an independent host.

The host decodes with pysparkplug (its own protoc-built protobuf module and its own alias/birth logic,
none of the agent's code) and checks what a Sparkplug 3.0 host checks: every message decodes, NBIRTH
has seq 0 and a bdSeq one above the last session's (or equal, for a rebirth), every later message of
the node has the next seq (0-255), NDEATH carries the bdSeq of the session it ends, DDATA only names
metrics born in DBIRTH. It asks for a rebirth and gets it, and it watches a broker outage and a SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.mosquitto import Mosquitto
from tests.pump import make_data, make_model, source_and_pipeline

pysparkplug = pytest.importorskip("pysparkplug")  # .ci/run installs it with --no-deps (it pins paho<2)

CONFIG = """
[agent]
id = "gw1"
state_dir = "state"
status_interval = "2s"
readings_interval = "200ms"
shutdown_timeout = "10s"

[health]
enabled = false

{pump}
[[sinks]]
type = "sparkplug"
host = "127.0.0.1"
port = {port}
group_id = "plant"
keepalive = "5s"
{extra}
"""


class QueueingMosquitto(Mosquitto):
    """Mosquitto that also queues QoS 0 messages for an offline persistent session, as a host's broker
    would be set up, so the host misses no NBIRTH (QoS 0 by the spec) while it reconnects."""

    def _config(self) -> str:
        return super()._config() + "queue_qos0_messages true\n"


@dataclass
class Event:
    type: str
    device: str | None
    seq: int | None
    bdseq: int | None
    metrics: list[Any] = field(default_factory=list)


class Host:
    """A minimal Sparkplug host on pysparkplug's decoding: records events and every rule broken."""

    def __init__(self, port: int, group: str = "plant", host_id: str | None = None) -> None:
        self.events: list[Event] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._births: dict[tuple[str, str | None], Any] = {}
        self._bdseq: dict[str, int] = {}  # node -> bdSeq of its current session
        self._seq: dict[str, int] = {}  # node -> last seq
        self._last: dict[str, bytes] = {}  # topic -> last payload, to recognise a redelivery
        self.group, self.host_id = group, host_id
        self._ready = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id="test-host",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(1, 1)
        if host_id is not None:
            self.client.will_set(f"spBv1.0/STATE/{host_id}", self._state(False), 1, True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self._ready.wait(10), "host did not get its SUBACK"

    @staticmethod
    def _state(online: bool) -> bytes:
        return pysparkplug.State(timestamp=pysparkplug.get_current_timestamp(), online=online).encode()

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(f"spBv1.0/{self.group}/#", qos=1)

    def announce(self, online: bool) -> None:
        assert self.host_id is not None
        self.client.publish(f"spBv1.0/STATE/{self.host_id}", self._state(online), 1, True).wait_for_publish(5)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            try:
                self._check(msg)
            except Exception as exc:  # the host records, the test asserts
                self.errors.append(f"{msg.topic}: {type(exc).__name__}: {exc}")

    def _check(self, msg: mqtt.MQTTMessage) -> None:
        if msg.dup and self._last.get(msg.topic) == msg.payload:
            return  # QoS 1 redelivery of a message this host already has (after the broker restart)
        self._last[msg.topic] = msg.payload
        topic = pysparkplug.Topic.from_str(msg.topic)
        kind, node, device = str(topic.message_type), topic.edge_node_id, topic.device_id
        if kind in ("NCMD", "DCMD", "STATE"):
            return
        birth = self._births.get((node, device)) if kind in ("DDATA", "DDEATH") else None
        if kind in ("DDATA", "DDEATH") and birth is None:
            raise AssertionError(f"{kind} before any DBIRTH of {device}")
        payload = pysparkplug.Message.from_mqtt_message(msg, birth=birth).payload
        metrics = list(payload.metrics) if hasattr(payload, "metrics") else []
        seq = getattr(payload, "seq", None)
        if kind == "NDEATH":
            assert payload.bd_seq_metric.name == "bdSeq", payload
            bdseq = payload.bd_seq_metric.value
            if bdseq == self._bdseq.get(node):
                self._seq.pop(node, None)  # the session is over
            self.events.append(Event(kind, None, None, bdseq))
            return
        bdseq = None
        if kind == "NBIRTH":
            bdseq = next(m.value for m in metrics if m.name == "bdSeq")
            last = self._bdseq.get(node)
            if last is not None and bdseq not in (last, (last + 1) % 256):
                self.errors.append(f"bdSeq went from {last} to {bdseq}")
            if seq != 0:
                self.errors.append(f"NBIRTH seq {seq}")
            self._bdseq[node] = bdseq
            self._births = {k: v for k, v in self._births.items() if k[0] != node}
        elif node not in self._seq:
            raise AssertionError(f"{kind} seq {seq} without an NBIRTH of this session")
        elif seq != (self._seq[node] + 1) % 256:
            self.errors.append(f"{kind} seq {seq} after {self._seq[node]}")
        self._seq[node] = seq
        if kind in ("NBIRTH", "DBIRTH"):
            self._births[(node, device)] = payload
        if kind == "DDATA":
            assert birth is not None
            unborn = [m.name for m in metrics if m.name not in {b.name for b in birth.metrics}]
            if unborn:
                self.errors.append(f"DDATA of {device} carries unborn metrics {unborn}")
        self.events.append(Event(kind, device, seq, bdseq, metrics))

    def rebirth(self, node: str) -> None:
        metric = pysparkplug.Metric(
            timestamp=pysparkplug.get_current_timestamp(),
            name="Node Control/Rebirth",
            datatype=pysparkplug.DataType.BOOLEAN,
            value=True,
        )
        self.command(node, [metric])

    def command(self, node: str, metrics: list[Any], device: str | None = None) -> None:
        ts = pysparkplug.get_current_timestamp()
        if device is None:
            topic, payload = (
                f"spBv1.0/{self.group}/NCMD/{node}",
                pysparkplug.NCmd(timestamp=ts, metrics=metrics),
            )
        else:
            topic = f"spBv1.0/{self.group}/DCMD/{node}/{device}"
            payload = pysparkplug.DCmd(timestamp=ts, metrics=metrics)
        self.client.publish(topic, payload.encode(include_dtypes=True), 1).wait_for_publish(5)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = QueueingMosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


def spawn(folder: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(folder / "edge.toml")],
        cwd=folder,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def wait(predicate: Callable[[], bool], what: str, within: float = 60, host: Host | None = None) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}" + (
            f"; host errors: {host.errors[:5]}" if host else ""
        )
        time.sleep(0.05)


def count(host: Host, kind: str, device: str | None = None) -> int:
    return sum(e.type == kind and (device is None or e.device == device) for e in host.snapshot())


def setup(tmp_path: Path, port: int, extra: str = "") -> None:
    make_data(tmp_path / "data.csv", seconds=600, anomaly=(300, 400))
    make_model(tmp_path / "model.onnx")
    pump = source_and_pipeline(speed=20, at_end="loop")
    (tmp_path / "edge.toml").write_text(CONFIG.format(port=port, pump=pump, extra=extra))


def test_host_sees_gapless_seq_and_bdseq_across_rebirth_outage_and_sigkill(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    setup(tmp_path, mosquitto.port)
    log = tmp_path / "agent.log"
    host = Host(mosquitto.port)
    agent = spawn(tmp_path, log)
    try:
        wait(lambda: count(host, "DDATA", "rec") >= 3 and count(host, "DDATA", "pipeline-pump") >= 2, "data")
        births = count(host, "NBIRTH")
        host.rebirth("gw1")
        wait(lambda: count(host, "NBIRTH") > births, "the rebirth")
        wait(lambda: count(host, "DDATA", "rec") >= 6, "data after the rebirth")
        valve = pysparkplug.Metric(
            timestamp=1, name="valve", datatype=pysparkplug.DataType.BOOLEAN, value=True
        )
        host.command("gw1", [valve])
        host.command("gw1", [valve], device="rec")
        wait(lambda: log.read_text().count("command refused") >= 2, "both commands refused and logged")

        mosquitto.stop()  # a broker outage: the agent buffers in its outbox
        time.sleep(1.5)
        mosquitto.start()
        wait(lambda: count(host, "NBIRTH") > births + 1, "the NBIRTH of the next session")
        wait(
            lambda: any(m.is_historical for e in host.snapshot() if e.type == "DDATA" for m in e.metrics),
            "what waited in the outbox, sent with is_historical",
        )
        agent.send_signal(signal.SIGKILL)  # the broker sends the will: NDEATH with this session's bdSeq
        agent.wait(10)
        wait(lambda: count(host, "NDEATH") >= 1, "the NDEATH will", host=host)
        agent = spawn(tmp_path, log)
        wait(lambda: count(host, "NBIRTH") > births + 2, "the NBIRTH after the restart")
        wait(
            lambda: count(host, "DDATA", "rec") >= 3 + ddata_before_last_birth(host), "data after the restart"
        )
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        wait(lambda: count(host, "NDEATH") >= 2, "the NDEATH of a clean stop")
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        host.close()
    events = host.snapshot()
    assert host.errors == [], host.errors
    nbirths = [e.bdseq for e in events if e.type == "NBIRTH"]
    assert nbirths == [0, 0, 1, 2], nbirths  # first, rebirth (same session), after the outage, after SIGKILL
    deaths = [e.bdseq for e in events if e.type == "NDEATH"]
    # the will of session 0 when the broker shuts down (mosquitto sends wills then), the will of the
    # killed session 1, then the clean stop of session 2
    assert deaths in ([1, 2], [0, 1, 2]), deaths
    dbirth = next(e for e in events if e.type == "DBIRTH" and e.device == "rec")
    assert {m.name for m in dbirth.metrics} == {"bearing_temp", "vibration"}
    values = [m.value for e in events if e.type == "DDATA" and e.device == "rec" for m in e.metrics]
    assert values and all(
        v is None or 40 < v < 60 or 0.5 < v < 1.5 for v in values
    )  # temperatures, vibration
    pipeline = next(e for e in events if e.type == "DBIRTH" and e.device == "pipeline-pump")
    assert {"score", "features/bearing_temp.mean", "alert/active"} <= {m.name for m in pipeline.metrics}


def ddata_before_last_birth(host: Host) -> int:
    events = host.snapshot()
    last = max(i for i, e in enumerate(events) if e.type == "NBIRTH")
    return sum(e.type == "DDATA" and e.device == "rec" for e in events[:last])
