"""The Sparkplug B sink: the MQTT sink's connection, speaking as a Sparkplug 3.0 edge node.

It reuses ``plugins.mqtt.sink.MqttSink`` whole (paho driven by the event loop, one reconnect owner, PUBACK
waits, error translation in ``plugins.mqtt.connect``) and changes only what a session says: the will is
NDEATH with this session's ``bdSeq`` (QoS 1, not retained); once connected it subscribes to its NCMD and
DCMD topics (and the primary host's STATE when configured), then publishes NBIRTH and the DBIRTHs.
``publish`` turns each envelope into DDATA / DBIRTH / DDEATH through ``EdgeNode``.

Commands: NCMD ``Node Control/Rebirth = true`` makes the node born again (NBIRTH with seq 0 and the
same bdSeq, then every DBIRTH); every other command (NCMD or DCMD) is refused and logged: this agent
writes nothing to machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt

from agent.errors import FatalError, TransientError
from agent.plugin import PluginContext, Refused
from agent.records import Envelope
from plugins.mqtt.servers import Server
from plugins.mqtt.sink import MqttSink
from plugins.sparkplug.config import SparkplugSinkConfig
from plugins.sparkplug.node import NAMESPACE, REBIRTH, EdgeNode, Out
from plugins.sparkplug.payload import decode, read_value
from plugins.sparkplug.session import BdSeq
from plugins.sparkplug.translate import translate


def _now_ms() -> int:
    return round(time.time() * 1000)


class SparkplugSink(MqttSink):
    """One Sparkplug edge node per sink instance; see the module docstring."""

    config: SparkplugSinkConfig

    def __init__(self, config: SparkplugSinkConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self.node = EdgeNode(
            config.group_id,
            config.edge_node_id or ctx.agent_id,
            tags=getattr(ctx, "tags", None),
            pipeline_prefix=config.pipeline_prefix,
            info=ctx.info,
        )
        self.bdseq = BdSeq(ctx.state_dir / f"sparkplug-{ctx.name}.bdseq")
        self._session_bdseq = self.bdseq.pending()
        self._host_online: bool | None = None  # None: no primary host configured, or no STATE seen yet
        self._qos_of = {"DDATA": config.data_qos, "NDATA": config.data_qos}

    @property
    def connected(self) -> bool:
        return super().connected and self._host_online is not False

    # -- the session ------------------------------------------------------------------------------

    def _will(self) -> tuple[str, bytes, int, bool]:
        self._session_bdseq = self.bdseq.pending()
        return self.node.topic("NDEATH"), self.node.death(self._session_bdseq, _now_ms()), 1, False

    def _new_client(self, server: Server) -> mqtt.Client:
        client = super()._new_client(server)
        client.on_message = self._on_message
        return client

    async def _session_started(self) -> None:
        client = self._client
        assert client is not None
        group, node = self.config.group_id, self.node.node
        topics = [(f"{NAMESPACE}/{group}/NCMD/{node}", 1), (f"{NAMESPACE}/{group}/DCMD/{node}/+", 1)]
        host = self.config.primary_host_id
        self._host_online = None
        if host is not None:
            topics.append((f"{NAMESPACE}/STATE/{host}", 1))
        client.subscribe(topics)
        if host is not None:
            await self._wait_for_host(host)
        await asyncio.to_thread(self.bdseq.commit, self._session_bdseq)
        await self._send(self._items(self.node.birth(self._session_bdseq, _now_ms())))
        self.ctx.log.info("born", group=group, node=node, bdSeq=self._session_bdseq)

    async def _wait_for_host(self, host: str) -> None:
        logged = False
        while self._host_online is not True:
            if not self._connected:
                raise TransientError(f"connection to broker {self._where} lost while waiting for host {host}")
            if not logged:
                self.ctx.log.info("waiting for primary host", host=host)
                logged = True
            await asyncio.sleep(0.05)

    def _goodbye(self) -> list[tuple[str, bytes, int, bool]]:
        return [self._will_now()]

    def _will_now(self) -> tuple[str, bytes, int, bool]:
        return self.node.topic("NDEATH"), self.node.death(self._session_bdseq, _now_ms()), 1, False

    # -- data -------------------------------------------------------------------------------------

    async def publish(self, batch: Sequence[Envelope]) -> Refused:
        """Translate the batch into Sparkplug messages and publish them; a refusal keeps the whole batch
        (one envelope becomes several messages, and a refused birth would break the session's seq)."""
        if self._host_online is False:
            raise TransientError(f"primary host {self.config.primary_host_id} is offline")
        now = _now_ms()
        outs: list[Out] = []
        for envelope in batch:
            outs += translate(self.node, envelope, now)
        if outs and await self._send(self._items(outs)):
            raise FatalError(f"broker {self._where} refused Sparkplug messages; check its ACL for spBv1.0/#")
        self.ctx.status.count("published", len(outs))
        return []

    def _items(self, outs: list[Out]) -> list[tuple[str, bytes, int, bool]]:
        return [(o.topic, o.payload, self._qos_of.get(o.type, 0), False) for o in outs]

    # -- commands (paho calls on_message on the loop thread, from loop_read) ---------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if client is not self._client:
            return
        topic, payload = msg.topic, bytes(msg.payload)
        if topic.startswith(f"{NAMESPACE}/STATE/"):
            self._state(payload)
        elif "/NCMD/" in topic:
            self._ncmd(client, payload)
        else:
            self.ctx.log.warning(
                "command refused", topic=topic, reason="this agent accepts no device commands"
            )

    def _state(self, payload: bytes) -> None:
        online: bool | None = None
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            body = json.loads(payload)
            online = body.get("online") if isinstance(body, dict) else None
        if not isinstance(online, bool):
            self.ctx.log.warning("bad STATE message ignored", payload=payload[:100].decode(errors="replace"))
            return
        if online != self._host_online:
            self.ctx.log.info("primary host " + ("online" if online else "offline"))
        self._host_online = online

    def _ncmd(self, client: mqtt.Client, payload: bytes) -> None:
        try:
            command = decode(payload)
        except ValueError as exc:
            self.ctx.log.warning("command refused", reason=str(exc)[:200])
            return
        refused: list[str] = []
        rebirth = False
        for metric in command.metrics:
            name = metric.name or (self.node.aliases.name(metric.alias) or (None, f"alias {metric.alias}"))[1]
            if name == REBIRTH and read_value(metric) is True:
                rebirth = True
            else:
                refused.append(name)
        if refused:
            self.ctx.log.warning(
                "command refused", metrics=refused[:10], reason="this agent writes nothing to machines"
            )
        if rebirth and self._connected:
            self.ctx.log.info("rebirth requested")
            for topic, body, qos, retain in self._items(self.node.birth(self._session_bdseq, _now_ms())):
                client.publish(topic, body, qos, retain)  # QoS 0: nothing to wait for
