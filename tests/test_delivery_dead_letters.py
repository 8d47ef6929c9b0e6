"""Issue 11 item 6: a message the broker refuses for good goes to the dead letters; the rest flows.

A real mosquitto with an ACL that lets the agent publish its status and features but not its alerts:
over MQTT 5 the broker answers a QoS 1 publish to the denied topic with PUBACK reason code 0x87 (Not
authorized). Before, that raised FatalError, the whole batch was released and retried every 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.delivery.deliver import deliver
from agent.delivery.sqlite_store import SqliteOutbox
from agent.plugin import State
from agent.supervise import Backoff, supervise
from tests.mosquitto import Mosquitto, Subscriber, eventually
from tests.test_mqtt_sink import PREFIX, alert, features, make_sink

REFUSED = "0x87 Not authorized"


class AclMosquitto(Mosquitto):
    """Anonymous clients may publish status and features of agent a1, and read everything.

    Without ``max_queued_messages 0``: with it, mosquitto 2.0.11 drops a v5 client's connection
    ("Bad socket read/write") right after refusing its QoS 1 publish, instead of only sending 0x87.
    """

    def _config(self) -> str:
        acl = self.folder / "acl"
        acl.write_text(
            f"topic readwrite {PREFIX}/a1/status\ntopic readwrite {PREFIX}/a1/features/#\ntopic read {PREFIX}/#\n"
        )
        conf = super()._config().replace("max_queued_messages 0\n", "")
        return conf.replace("allow_anonymous true\n", f"allow_anonymous true\nacl_file {acl}\n", 1)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = AclMosquitto(tmp_path / "mosquitto")
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_a_refused_alert_is_dead_lettered_and_the_features_flow(
    broker: Mosquitto, tmp_path: Path
) -> None:
    sub = Subscriber(broker.port, f"{PREFIX}/#")
    sink = make_sink(broker.port, tmp_path, protocol="5")
    outbox = SqliteOutbox(tmp_path / "outbox-mqtt.sqlite", 10**7, encode=sink.encode)
    with capture_logs() as logs:
        task = asyncio.create_task(
            supervise(lambda: deliver(sink, outbox, 50), sink.ctx.status, sink.ctx.log, Backoff(0.05, 0.3)),
            name="deliver",
        )
        try:
            outbox.append([features("line1", i) for i in range(5)] + [alert("line1", 0)])
            outbox.append([features("line1", i) for i in range(5, 10)] + [alert("line1", 1)])
            got = await sub.wait_for(lambda ms: len([m for m in ms if "/features/" in m.topic]) >= 10)
            await eventually(lambda: outbox.stats.dead_letters.get(REFUSED) == 2, what="two dead letters")
            await eventually(lambda: outbox.stats.depth == 0, what="outbox drained")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            sub.close()
    assert sorted(m.body["seq"] for m in got if "/features/" in m.topic) == list(range(1, 11))
    assert sink.ctx.status.failures == 0 and sink.ctx.status.state is not State.DOWN
    refusals = [e for e in logs if e["event"] == "message refused by the far side, kept as a dead letter"]
    assert len(refusals) == 1 and refusals[0]["reason"] == REFUSED, "logged once per reason"
    assert outbox.dead_rows() == [("alert", "line1", 1, REFUSED), ("alert", "line1", 2, REFUSED)]
    assert outbox.stats.as_dict()["dead_letters"] == {REFUSED: 2}
    outbox.close()
