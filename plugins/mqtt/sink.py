"""The MQTT sink: one paho client per connection, bridged into asyncio.

Threading: paho runs its network loop in its own daemon thread (``loop_start``); its callbacks never
touch asyncio objects directly. CONNACK and disconnects reach the event loop with
``call_soon_threadsafe``; PUBACKs are queued on a deque and drained in the loop by one scheduled callback
per burst, not one per message. The blocking ``connect`` (DNS, TCP, TLS) runs in the default executor.

One owner of reconnects: paho's own reconnect is off (``reconnect_on_failure=False``). A lost connection
fails the pending ``publish`` with ``TransientError``; the delivery loop's supervisor reconnects with a
fresh client (a client that saw a broken network is never reused).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from agent.errors import FatalError, TransientError
from agent.plugin import PluginContext, Sink
from agent.records import Envelope, Kind
from plugins.mqtt.config import MqttSinkConfig
from plugins.mqtt.connect import connack_error, connect_error, connect_options, tls_context
from plugins.mqtt.payloads import Encoder, Topics


@dataclass
class _Pending:
    """The acknowledgements one ``publish`` call waits for."""

    future: asyncio.Future[None]
    remaining: int
    refused: list[str] = field(default_factory=list)
    lost: str | None = None  # why the connection dropped before every acknowledgement came


class MqttSink(Sink):
    """Publishes envelopes to ``{prefix}/{agent_id}/...`` and returns once the broker acknowledged them."""

    config: MqttSinkConfig
    window = 2  # batches in flight at once; the broker acknowledges in order

    def __init__(self, config: MqttSinkConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self.topics = Topics(config.prefix, ctx.agent_id)
        self.encoder = Encoder(ctx.agent_id)
        q = config.qos
        self._qos = {
            Kind.ALERT: q.alert,
            Kind.STATUS: q.status,
            Kind.FEATURES: q.features,
            Kind.READINGS: q.readings,
        }
        self._where = f"{config.host}:{config.broker_port}"
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        self._connack: asyncio.Future[ReasonCode | str] | None = None  # str: why the connection dropped
        self._waiting: dict[int, _Pending] = {}
        self._acks: deque[tuple[int, str | None]] = deque()
        self._drain_scheduled = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def __aenter__(self) -> MqttSink:
        loop = self._loop = asyncio.get_running_loop()
        self._waiting, self._acks, self._drain_scheduled = {}, deque(), False
        self._connack = loop.create_future()
        client = self._client = self._new_client()
        try:
            await self._connect(client)
            client.loop_start()
            try:
                async with asyncio.timeout(self.config.connect_timeout):
                    code = await self._connack
            except TimeoutError:
                raise TransientError(f"broker {self._where} sent no CONNACK within connect_timeout") from None
            if isinstance(code, str):
                raise TransientError(f"broker {self._where} closed the connection before CONNACK: {code}")
            if code.is_failure:
                raise connack_error(code, self._where)
            self._connected = True
            status = self.ctx.status
            if not status.episode_failures and not status.flapping:  # once, not at every retry
                self.ctx.log.info(
                    "connected", broker=self._where, protocol=self.config.protocol, tls=self.config.tls
                )
            birth = self.encoder.presence("online", time.time(), self.ctx.info)
            await self._send([(self.topics.status, birth, self._qos[Kind.STATUS], self.config.retain_status)])
        except BaseException:
            await self._close(client, goodbye=False)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._close(self._client, goodbye=True)

    async def publish(self, batch: Sequence[Envelope]) -> None:
        """Publish ``batch`` in order; return when the broker acknowledged every message.

        Raises:
            TransientError: not connected, the connection was lost, or no acknowledgement in ``ack_timeout``.
            FatalError: an MQTT 5 broker refused a message (PUBACK reason code >= 0x80, e.g. an ACL).
        """
        topic_for, encode, qos, retain = (
            self.topics.for_message,
            self.encoder.encode,
            self._qos,
            self.config.retain_status,
        )
        await self._send(
            [
                (
                    topic_for(env.message.kind, env.message.key),
                    encode(env),
                    qos[env.message.kind],
                    retain and env.message.kind is Kind.STATUS,
                )
                for env in batch
            ]
        )
        self.ctx.status.count("published", len(batch))

    async def _send(self, items: list[tuple[str, bytes, int, bool]]) -> None:
        client = self._client
        if client is None or not self._connected or self._loop is None:
            raise TransientError(f"not connected to broker {self._where}")
        pending = _Pending(self._loop.create_future(), len(items))
        for topic, payload, qos, retain in items:
            info = client.publish(topic, payload, qos, retain)
            if info.rc is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise TransientError(f"cannot publish to broker {self._where}: {mqtt.error_string(info.rc)}")
            self._waiting[info.mid] = pending
        done, _ = await asyncio.wait((pending.future,), timeout=self.config.ack_timeout)
        if not done:
            self.ctx.status.counters["stalled"] = 1  # connected, but nothing is delivered: not ready
            raise TransientError(f"broker {self._where} acknowledged nothing within ack_timeout")
        self.ctx.status.counters["stalled"] = 0
        if pending.lost is not None:
            raise TransientError(f"connection to broker {self._where} lost: {pending.lost}")
        if pending.refused:
            raise FatalError(
                f"broker {self._where} refused {len(pending.refused)} of {len(items)} messages "
                f"({pending.refused[0]}); check its ACL for topic {self.topics.base}/#"
            )

    def _new_client(self) -> mqtt.Client:
        cfg = self.config
        v5 = cfg.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"edge-agent-{self.ctx.agent_id}",
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else cfg.clean_start,
            reconnect_on_failure=False,
        )
        client.connect_timeout = cfg.connect_timeout
        client.max_inflight_messages_set(cfg.max_inflight)
        client.max_queued_messages_set(0)
        if cfg.username is not None:
            password = cfg.password.get_secret_value() if cfg.password is not None else None
            client.username_pw_set(cfg.username, password)
        if cfg.tls:
            client.tls_set_context(tls_context(cfg, self.ctx.name))
        will = self.encoder.presence("offline", time.time())
        client.will_set(self.topics.status, will, self._qos[Kind.STATUS], cfg.retain_status)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    async def _connect(self, client: mqtt.Client) -> None:
        cfg = self.config
        options = connect_options(cfg)
        connect = functools.partial(
            client.connect, cfg.host, cfg.broker_port, round(cfg.keepalive), **options
        )
        attempt = asyncio.get_running_loop().run_in_executor(None, connect)
        try:
            await attempt
        except asyncio.CancelledError:
            attempt.add_done_callback(lambda _: _close_socket(client))
            raise
        except OSError as exc:  # ssl.SSLError, socket.gaierror and TimeoutError are OSErrors too
            raise connect_error(exc, cfg.host, self._where) from exc

    async def _close(self, client: mqtt.Client, goodbye: bool) -> None:
        """Say offline (retained) when leaving on purpose, then disconnect and stop paho's thread."""
        if goodbye and self._connected:
            offline = self.encoder.presence("offline", time.time())
            try:
                async with asyncio.timeout(min(2.0, self.config.ack_timeout)):
                    await self._send(
                        [(self.topics.status, offline, self._qos[Kind.STATUS], self.config.retain_status)]
                    )
            except (TimeoutError, TransientError, FatalError):
                pass  # the broker publishes the retained will instead
        self._connected = False
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        self._client = None

    # paho's network thread calls these three; they only hand over to the event loop.

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, code: ReasonCode, props: Any
    ) -> None:
        self._threadsafe(self._connack_received, client, code)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, code: ReasonCode, props: Any
    ) -> None:
        self._threadsafe(
            self._connection_lost, client, code.getName() if code is not None else "network error"
        )

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, code: ReasonCode, props: Any) -> None:
        self._acks.append((mid, code.getName() if code.is_failure else None))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._threadsafe(self._drain_acks)

    def _threadsafe(self, callback: Any, *args: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                self._loop.call_soon_threadsafe(callback, *args)

    def _connack_received(self, client: mqtt.Client, code: ReasonCode) -> None:
        if client is self._client and self._connack is not None and not self._connack.done():
            self._connack.set_result(code)

    def _drain_acks(self) -> None:
        self._drain_scheduled = False  # before draining: an ack queued from now on schedules a new drain
        while self._acks:
            mid, refused = self._acks.popleft()
            pending = self._waiting.pop(mid, None)
            if pending is None:
                continue
            if refused:
                pending.refused.append(refused)
            pending.remaining -= 1
            if pending.remaining == 0 and not pending.future.done():
                pending.future.set_result(None)

    def _connection_lost(self, client: mqtt.Client, reason: str) -> None:
        if client is not self._client:
            return  # a late word from the previous connection's client
        self._connected = False
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)
        for pending in self._waiting.values():
            if not pending.future.done():
                pending.lost = reason
                pending.future.set_result(None)
        self._waiting.clear()


def _close_socket(client: mqtt.Client) -> None:
    sock = client.socket()
    if sock is not None:
        sock.close()
