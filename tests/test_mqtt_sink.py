"""The MQTT sink and the delivery loop against a real mosquitto (started by ``tests.mosquitto``).

Run as a script (``python tests/test_mqtt_sink.py --port ...``) this file is a tiny agent: it appends
features to a durable outbox and delivers them; the SIGKILL and last-will tests run it as a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from structlog.testing import capture_logs

from agent.delivery.envelope import wire
from agent.delivery.memory_store import MemoryOutbox
from agent.delivery.outbox import Outbox
from agent.delivery.sqlite_store import SqliteOutbox
from agent.errors import FatalError, TransientError
from agent.plugin import ComponentStatus, PluginContext, State
from agent.records import Envelope, Kind, Message
from agent.supervise import Backoff, supervise
from plugins.mqtt.config import MqttSinkConfig
from plugins.mqtt.payloads import Encoder
from plugins.mqtt.sink import MqttSink
from tests.mosquitto import PASSWORD, USER, Mosquitto, Received, Subscriber, eventually, running_mosquitto

PREFIX = "factory/test"
SCHEMAS = Path(__file__).resolve().parents[1] / "agent" / "schemas"


def make_sink(port: int, tmp_path: Path, agent_id: str = "a1", **options: Any) -> MqttSink:
    config = MqttSinkConfig(type="mqtt", name="mqtt", host="127.0.0.1", port=port, prefix=PREFIX, **options)
    ctx = PluginContext(
        name="mqtt",
        agent_id=agent_id,
        state_dir=tmp_path,
        status=ComponentStatus("mqtt", "sink"),
        info={"version": "0.1.0", "config_hash": "c0ffee", "started_at": "2026-11-20T00:00:00.000Z"},
    )
    return MqttSink(config, ctx)


def features(key: str, n: int) -> Message:
    payload = {
        "pipeline": key,
        "window": {"start_ms": 1_700_000_000_000 + n * 1000, "end_ms": 1_700_000_010_000 + n * 1000},
        "coverage": 1.0,
        "status": "scored",
        "reason": None,
        "features": {"pump.rms": 0.5 + n, "pump.mean": None},
        "score": 0.1,
        "model": "pump-v1",
    }
    return Message(Kind.FEATURES, key, 1_700_000_010.0 + n, payload)


def alert(key: str, n: int) -> Message:
    payload = {
        "pipeline": key,
        "state": "raised",
        "score": 0.97,
        "threshold": 0.9,
        "clear_threshold": 0.8,
        "window": {"start_ms": 1_700_000_000_000, "end_ms": 1_700_000_010_000},
        "model": "pump-v1",
        "top": [
            {
                "feature": "rms",
                "tag": "pump",
                "contribution": 0.7,
                "value": 3.2,
                "z": 4.1,
                "normal": [0.1, 1.2],
            }
        ],
        "summary": f"pump rms high ({n})",
    }
    return Message(Kind.ALERT, key, 1_700_000_010.0 + n, payload)


def by_topic(received: list[Received], kind_level: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in received:
        if f"/{kind_level}/" in m.topic:
            out[m.topic].append(m.body)
    return out


def dedup_seqs(bodies: list[dict[str, Any]]) -> list[int]:
    """Seqs in arrival order, each kept the first time it arrives (what a consumer does)."""
    seen: set[int] = set()
    out = []
    for body in bodies:
        if body["seq"] not in seen:
            seen.add(body["seq"])
            out.append(body["seq"])
    return out


@contextlib.asynccontextmanager
async def delivering(sink: MqttSink, outbox: Outbox) -> AsyncIterator[asyncio.Task[None]]:
    """Run the supervised delivery loop as the runner does, with a quick backoff."""
    from agent.delivery.deliver import deliver

    task = asyncio.create_task(
        supervise(
            lambda: deliver(sink, outbox, 50), sink.ctx.status, sink.ctx.log, Backoff(base=0.05, cap=0.3)
        ),
        name="deliver",
    )
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    yield from running_mosquitto(tmp_path)


@pytest.fixture
def subscriber(mosquitto: Mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto.port, f"{PREFIX}/#")
    yield sub
    sub.close()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_publish_and_receive_every_kind_with_birth_and_goodbye(
    mosquitto: Mosquitto, subscriber: Subscriber, tmp_path: Path, protocol: str
) -> None:
    sink = make_sink(mosquitto.port, tmp_path, protocol=protocol, qos={"readings": 1})
    outbox = MemoryOutbox(10**6, encode=sink.encode)
    readings = {
        "source": "plc1",
        "readings": [{"tag": "pump", "ts_ms": 1500, "value": 2.0, "quality": "good"}],
    }
    status = {
        "state": "online",
        "version": "0.1.0",
        "config_hash": "c0ffee",
        "started_at": "2026-11-20T00:00:00.000Z",
        "uptime_s": 12.0,
        "sources": {
            "plc1": {"state": "up", "since": "2026-11-20T00:00:00.000Z", "failures": 0, "error": None}
        },
        "sinks": {"mqtt": {"state": "up"}},
        "outbox": {"mqtt": MemoryOutbox(1024).stats.as_dict()},
    }
    outbox.append([features("line1", 0), alert("line1", 0), Message(Kind.READINGS, "plc1", 1.5, readings)])
    outbox.append([Message(Kind.STATUS, "agent", 2.0, status), features("line1", 1)])
    async with delivering(sink, outbox):
        await subscriber.wait_for(lambda ms: len(ms) >= 6)
        await eventually(lambda: outbox.stats.depth == 0, what="acks")  # acked too, not only received
    got = await subscriber.wait_for(lambda ms: ms[-1].body.get("state") == "offline")
    topics = [m.topic for m in got]
    assert topics[0] == f"{PREFIX}/a1/status" and got[0].body["state"] == "online"
    assert got[0].body["config_hash"] == "c0ffee" and "seq" not in got[0].body
    assert sorted(topics[1:6]) == sorted(
        [
            f"{PREFIX}/a1/alerts/line1",
            f"{PREFIX}/a1/status",
            f"{PREFIX}/a1/features/line1",
            f"{PREFIX}/a1/features/line1",
            f"{PREFIX}/a1/readings/plc1",
        ]
    )
    assert [m.body["seq"] for m in got if "/features/" in m.topic] == [1, 2]
    first = next(m.body for m in got if "/alerts/" in m.topic)
    assert first["schema"] == "edge-agent/alert/2" and first["agent"] == "a1"
    # appended while the first connection was being made: no outage, so not replayed (issue 12)
    assert first["replayed"] is False
    assert first["ts"] == "2023-11-14T22:13:30.000Z" and first["ts_ms"] == 1_700_000_010_000
    schemas = {p.name.split(".")[0]: json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")}
    kind_of = {"alerts": "alert", "features": "features", "readings": "readings", "status": "status"}
    for m in got:
        level = m.topic.split("/")[3]
        jsonschema.validate(m.body, schemas[kind_of[level]])
    assert sink.ctx.status.counters["published"] == 5 and outbox.stats.depth == 0


async def test_broker_outage_every_seq_arrives_once_in_order(
    mosquitto: Mosquitto, subscriber: Subscriber, tmp_path: Path
) -> None:
    sink = make_sink(mosquitto.port, tmp_path)
    outbox = SqliteOutbox(tmp_path / "outbox.sqlite", 10**7, replay_rate=500, encode=sink.encode)
    produced: dict[str, int] = defaultdict(int)

    async def produce(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            batch = [features(key, produced[key] + 1) for key in ("line1", "line2")]
            for key in ("line1", "line2"):
                produced[key] += 1
            if produced["line1"] % 10 == 0:
                batch.append(alert("line1", produced["line1"]))
            outbox.append(batch)
            await asyncio.sleep(0.005)

    async with delivering(sink, outbox):
        await produce(0.5)
        await asyncio.to_thread(mosquitto.stop)
        await produce(1.0)  # buffered in the outbox
        assert outbox.stats.depth > 0
        await asyncio.to_thread(mosquitto.start)
        await produce(0.5)
        total = dict(produced)

        def complete(ms: list[Received]) -> bool:
            topics = by_topic(ms, "features")
            return all(len(set(dedup_seqs(topics[f"{PREFIX}/a1/features/{k}"]))) >= total[k] for k in total)

        got = await subscriber.wait_for(complete, within=30)
    outbox.close()
    features_seen = by_topic(got, "features")
    for key, n in total.items():
        bodies = features_seen[f"{PREFIX}/a1/features/{key}"]
        assert dedup_seqs(bodies) == list(range(1, n + 1)), "a gap or a reordering in a topic"
        assert next(b["features"]["pump.rms"] for b in bodies if b["seq"] == n) == 0.5 + n
    alerts = dedup_seqs(by_topic(got, "alerts")[f"{PREFIX}/a1/alerts/line1"])
    assert alerts == list(range(1, total["line1"] // 10 + 1))
    assert any(b["replayed"] for b in features_seen[f"{PREFIX}/a1/features/line1"])
    assert sink.ctx.status.state is State.STOPPED and sink.ctx.status.failures >= 1


async def test_unreachable_broker_at_start_buffers_then_delivers(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    sub = Subscriber(broker.port, f"{PREFIX}/#")  # its persistent session outlives the broker restart
    broker.stop()
    sink = make_sink(broker.port, tmp_path)
    outbox = MemoryOutbox(10**6, encode=sink.encode)
    try:
        async with delivering(sink, outbox):
            outbox.append([features("line1", i) for i in range(5)])
            status = sink.ctx.status
            await eventually(
                lambda: status.state is State.DOWN and "refused" in (status.last_error or ""),
                what="the sink down with 'connection refused'",
            )
            await asyncio.to_thread(broker.start)
            got = await sub.wait_for(
                lambda ms: len(by_topic(ms, "features")[f"{PREFIX}/a1/features/line1"]) >= 5
            )
        assert [m.body["replayed"] for m in got if "/features/" in m.topic] == [True] * 5
    finally:
        sub.close()
        broker.kill()


async def run_until_failures(sink: MqttSink, failures: int) -> list[MutableMapping[str, Any]]:
    with capture_logs() as logs:
        async with delivering(sink, MemoryOutbox(10**6)):
            await eventually(lambda: sink.ctx.status.failures >= failures, what=f"{failures} failures")
    return logs


async def test_wrong_password_is_a_clear_fatal_error_retried_without_crash(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sink = make_sink(mosquitto.auth_port, tmp_path, username=USER, password="wrong")
    with pytest.raises(
        FatalError, match="refused the connection: Not authorized; check username and password"
    ):
        async with sink:
            pass
    logs = await run_until_failures(sink, 3)
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert len(errors) == 1 and errors[0]["event"] == "failed, needs attention"
    assert sink.ctx.status.failures >= 3  # retried with backoff; ended by our cancel, never crashed

    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    good = make_sink(mosquitto.auth_port, tmp_path, username=USER, password_file=str(secret))
    async with good:
        assert good.connected


async def test_untrusted_server_certificate_is_fatal_and_skip_verify_connects(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    pki = mosquitto.pki
    client = {"tls_cert_file": str(pki.client_cert), "tls_key_file": str(pki.client_key)}
    untrusted = make_sink(mosquitto.tls_port, tmp_path, tls_ca_file=str(pki.other_ca), **client)
    with pytest.raises(FatalError, match="TLS certificate is not trusted"):
        async with untrusted:
            pass
    logs = await run_until_failures(untrusted, 2)
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["failed, needs attention"]

    lab = make_sink(mosquitto.tls_port, tmp_path, tls=True, tls_insecure_skip_verify=True, **client)
    async with lab:
        assert lab.connected


async def test_mutual_tls_publishes(mosquitto: Mosquitto, subscriber: Subscriber, tmp_path: Path) -> None:
    pki = mosquitto.pki
    sink = make_sink(
        mosquitto.tls_port,
        tmp_path,
        tls_ca_file=str(pki.ca),
        tls_cert_file=str(pki.client_cert),
        tls_key_file=str(pki.client_key),
    )
    sink.config.host = "localhost"  # the name in the server certificate
    async with sink:
        await sink.publish([Envelope(1, 7, alert("line1", 1))])
    got = await subscriber.wait_for(lambda ms: any("/alerts/" in m.topic for m in ms))
    assert next(m.body["seq"] for m in got if "/alerts/" in m.topic) == 7


async def test_publish_after_broker_death_raises_transient(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sink = make_sink(mosquitto.port, tmp_path)
    async with sink:
        await asyncio.to_thread(mosquitto.kill)
        with pytest.raises(TransientError, match=r"lost|not connected"):
            for n in range(100):
                await sink.publish([Envelope(n + 1, n + 1, features("line1", n))])
                await asyncio.sleep(0.01)
        assert not sink.connected


def test_encoder_puts_the_envelope_first_and_marks_replay() -> None:
    body = Encoder("a1").encode(Envelope(3, 42, features("line1", 0), replayed=True))
    assert body.startswith(b'{"schema":"edge-agent/features/2","agent":"a1","seq":42,')
    decoded = json.loads(body)
    assert (
        decoded["replayed"] is True
        and decoded["pipeline"] == "line1"
        and decoded["ts_ms"] == 1_700_000_010_000
    )
    assert decoded == wire(Envelope(3, 42, features("line1", 0), replayed=True), "a1")
    odd = Message(Kind.FEATURES, "line1", 1.0, {"features": {"a.b": float("nan"), "c.d": "é"}})
    assert json.loads(Encoder("a1").encode(Envelope(1, 1, odd)))["features"] == {"a.b": None, "c.d": "é"}


def test_sample_config_is_valid_and_registered(tmp_path: Path) -> None:
    from plugins import BUILTIN

    spec = next(s for s in BUILTIN if s.type == "mqtt")
    section = tomllib.loads(spec.sample_text() or "")["sinks"][0]
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    section["password_file"] = str(secret)
    config = spec.config.model_validate(section)
    assert isinstance(config, MqttSinkConfig)
    assert config.tls and config.broker_port == 8883 and config.password is not None
    assert config.password.get_secret_value() == "s3cret" and config.outbox.fsync == "append"
    with pytest.raises(ValueError, match="tls_cert_file and tls_key_file"):
        MqttSinkConfig(type="mqtt", tls_cert_file=str(secret))


# --- the subprocess agent: SIGKILL and last will -------------------------------------------------------


def spawn_agent(port: int, db: Path, count: int, agent_id: str = "a1") -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [
        sys.executable,
        __file__,
        "--port",
        str(port),
        "--db",
        str(db),
        "--count",
        str(count),
        "--id",
        agent_id,
    ]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL)


async def test_agent_killed_during_outage_loses_nothing(
    mosquitto: Mosquitto, subscriber: Subscriber, tmp_path: Path
) -> None:
    db = tmp_path / "state" / "outbox-mqtt.sqlite"
    topic = f"{PREFIX}/a1/features/line1"
    first = spawn_agent(mosquitto.port, db, count=10**9)
    try:
        await subscriber.wait_for(lambda ms: len(by_topic(ms, "features")[topic]) >= 20)
        await asyncio.to_thread(mosquitto.stop)
        await asyncio.sleep(0.5)  # the agent keeps appending to its outbox
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    await asyncio.to_thread(mosquitto.start)
    second = spawn_agent(mosquitto.port, db, count=50)
    assert await asyncio.to_thread(second.wait, 60) == 0
    box = SqliteOutbox(db, 10**6)
    final = box._seq[("features", "line1")]
    assert box.stats.depth == 0
    box.close()
    got = await subscriber.wait_for(lambda ms: final in {b["seq"] for b in by_topic(ms, "features")[topic]})
    bodies = by_topic(got, "features")[topic]
    assert dedup_seqs(bodies) == list(range(1, final + 1))
    assert len(bodies) - final <= 2 * 50, "only what was in flight may come twice"
    assert any(b["replayed"] for b in bodies if b["seq"] <= final - 50)


async def test_last_will_when_the_agent_is_killed(
    mosquitto: Mosquitto, subscriber: Subscriber, tmp_path: Path
) -> None:
    agent = spawn_agent(mosquitto.port, tmp_path / "outbox.sqlite", count=10**9, agent_id="a2")
    try:
        await subscriber.wait_for(lambda ms: any(m.body.get("state") == "online" for m in ms))
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait()
    got = await subscriber.wait_for(lambda ms: ms[-1].body.get("state") == "offline")
    assert got[-1].topic == f"{PREFIX}/a2/status"
    late = Subscriber(mosquitto.port, f"{PREFIX}/a2/status", client_id="late")  # the will is retained
    try:
        retained = await late.wait_for(lambda ms: len(ms) >= 1)
    finally:
        late.close()
    assert retained[0].retain and retained[0].body["state"] == "offline"


async def _agent_main(argv: list[str]) -> None:
    from agent.delivery.deliver import deliver

    parser = argparse.ArgumentParser()
    for name in ("--port", "--count"):
        parser.add_argument(name, type=int, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--id", default="a1")
    args = parser.parse_args(argv)
    sink = make_sink(args.port, args.db.parent, agent_id=args.id)
    outbox = SqliteOutbox(args.db, 10**7, encode=sink.encode)
    delivery = asyncio.create_task(
        supervise(lambda: deliver(sink, outbox, 50), sink.ctx.status, sink.ctx.log, Backoff(0.05, 0.3)),
        name="deliver",
    )
    for n in range(args.count):
        outbox.append([features("line1", n)])
        await asyncio.sleep(0.005)
    await eventually(lambda: outbox.stats.depth == 0, within=120, what="an empty outbox")
    delivery.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await delivery
    outbox.close()


if __name__ == "__main__":
    asyncio.run(_agent_main(sys.argv[1:]))
