"""The MQTT sink: one paho client per connection, driven by the asyncio event loop.

Threading: none of paho's. The event loop drives the client (``plugins.mqtt.netloop``: the socket watched
with ``add_reader``/``add_writer``, ``loop_misc`` every second for keepalive), so paho's callbacks run on
the loop thread and resolve the sink's futures directly. Only the blocking ``connect`` (DNS, TCP, TLS) runs
in the default executor; paho writes nothing from there.

One owner of reconnects: paho's own reconnect is off (``reconnect_on_failure=False``). A lost connection
fails the pending ``publish`` with ``TransientError``; the delivery loop's supervisor reconnects with a
fresh client (a client that saw a broken network is never reused).

Several brokers: one connect attempt is one pass over ``servers`` (see ``plugins/mqtt/servers.py``); the
server in use is in the status (``info["server"]``, ``counters["failovers"]``) and so in /metrics.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from agent.errors import FatalError, TransientError
from agent.plugin import PluginContext, Refused, Sink
from agent.records import Envelope, Kind
from plugins.mqtt.bridge import PahoBridge, Pending, close_socket, next_session
from plugins.mqtt.config import MqttSinkConfig
from plugins.mqtt.connect import connack_error, connect_error, connect_options, tls_context
from plugins.mqtt.netloop import NetLoop
from plugins.mqtt.payloads import Encoder, Topics
from plugins.mqtt.servers import Server, ServerList, one_pass_error
from plugins.mqtt.uns import Uns


class MqttSink(PahoBridge, Sink):
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
        self._servers: ServerList | None = None  # built on the first connect, kept across reconnects
        self._where = config.server_list[0].where
        self.uns = (
            Uns(self.topics.base, ctx.tags, config.uns.qos, config.uns.keep_batch)
            if config.uns.enabled
            else None
        )
        self._client: mqtt.Client | None = None
        self._net: NetLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        self._connack: asyncio.Future[ReasonCode | str] | None = None  # str: why the connection dropped
        self._waiting: dict[int, tuple[Pending, int]] = {}
        self._probing = False  # check --connect: own client id, no will, no birth, no goodbye
        self._session = 0  # this connection's number: its birth and its will carry it (Sparkplug's bdSeq)

    @property
    def connected(self) -> bool:
        return self._connected

    async def __aenter__(self) -> MqttSink:
        """Connect to the first server that answers, each tried once; the supervisor backs off between passes."""
        if self._servers is None:
            self._servers = ServerList(self.config.server_list, self.config.failover)
        servers, failures = self._servers, []
        for _ in range(len(servers)):
            try:
                await self._open(servers.current)
                return self
            except Exception as exc:  # cancellation ends the pass and keeps the server
                failures.append((servers.current, exc))
                self._attempt_ended(exc)
        raise one_pass_error(failures)

    async def _open(self, server: Server) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._waiting = {}
        self._connack = loop.create_future()
        if not self._probing:
            self._session = await asyncio.to_thread(next_session, self.ctx.state_dir, self.ctx.name)
        self._where = server.where
        client = self._client = self._new_client(server)
        net = self._net = NetLoop(client, functools.partial(self._broken, client))
        try:
            await self._connect(client, server)
            net.start()
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
            self._on_server(server)
            if self._probing:
                return
            await self._session_started()
        except BaseException:
            await self._close(goodbye=False)
            raise

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._close(goodbye=True)
        self._attempt_ended(exc[1] if len(exc) > 1 else None)

    def _attempt_ended(self, exc: object) -> None:
        if isinstance(exc, Exception) and self._servers is not None:  # a shutdown keeps the server
            self._servers.failed()
            self.ctx.status.counters["failovers"] = self._servers.failovers

    def _on_server(self, server: Server) -> None:
        status, servers = self.ctx.status, self._servers
        assert servers is not None
        status.info["server"] = server.url
        status.counters["server_index"] = servers.listed.index(server)
        status.counters["failovers"] = moves = servers.failovers
        more = {"failovers": moves} if len(servers) > 1 else {}
        if not status.episode_failures and not status.flapping:  # once, not at every retry (issue 11)
            self.ctx.log.info(
                "connected", broker=server.where, protocol=self.config.protocol, tls=server.tls, **more
            )

    async def probe(self) -> None:
        """Connect as ``{client id}-check-{pid}`` and leave, publishing nothing: the broker would drop a
        running agent whose client id we took, and a birth or goodbye would flip its retained status."""
        self._probing = True
        try:
            async with self:
                pass
        finally:
            self._probing = False

    async def publish(self, batch: Sequence[Envelope]) -> Refused:
        """Publish the stored bytes of ``batch`` in order; return when the broker acknowledged every message.

        Returns:
            The envelopes an MQTT 5 broker refused (PUBACK reason code >= 0x80, e.g. 0x87 not authorized
            by its ACL) with the reason; the delivery loop moves them to the dead letters.

        Raises:
            TransientError: not connected, the connection was lost, or no acknowledgement in ``ack_timeout``.
        """
        topic_for, wire, qos, retain = (
            self.topics.for_message,
            self.wire,
            self._qos,
            self.config.retain_status,
        )
        if self.uns is not None:
            item = lambda env: (  # noqa: E731 - the one item of an envelope, as below
                topic_for(env.message.kind, env.message.key),
                wire(env),
                qos[env.message.kind],
                retain and env.message.kind is Kind.STATUS,
            )
            # A refusal of a derived per-tag topic cannot be pinned on one envelope: the batch is kept.
            if await self._send(self.uns.items(batch, item)):
                raise FatalError(
                    f"broker {self._where} refused a UNS topic; check its ACL for {self.topics.base}/#"
                )
            self.ctx.status.count("published", len(batch))
            return []
        refused = await self._send(
            [
                (
                    topic_for(env.message.kind, env.message.key),
                    wire(env),
                    qos[env.message.kind],
                    retain and env.message.kind is Kind.STATUS,
                )
                for env in batch
            ]
        )
        self.ctx.status.count("published", len(batch) - len(refused))
        return [(batch[i], reason) for i, reason in refused]

    async def _send(self, items: list[tuple[str, bytes, int, bool]]) -> list[tuple[int, str]]:
        """Publish ``items``; the (index, reason) of each the broker refused."""
        client = self._client
        if client is None or not self._connected or self._loop is None:
            raise TransientError(f"not connected to broker {self._where}")
        if not items:
            return []  # nothing to wait for (UNS: every reading was older than its retained value)
        pending = Pending(self._loop.create_future(), len(items))
        for i, (topic, payload, qos, retain) in enumerate(items):
            info = client.publish(topic, payload, qos, retain)
            if info.rc is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise TransientError(f"cannot publish to broker {self._where}: {mqtt.error_string(info.rc)}")
            self._waiting[info.mid] = (pending, i)
        done, _ = await asyncio.wait((pending.future,), timeout=self.config.ack_timeout)
        if not done:
            self.ctx.status.counters["stalled"] = 1  # connected, but nothing is delivered: not ready
            raise TransientError(f"broker {self._where} acknowledged nothing within ack_timeout")
        self.ctx.status.counters["stalled"] = 0
        if pending.lost is not None:
            raise TransientError(f"connection to broker {self._where} lost: {pending.lost}")
        return pending.refused

    # What a session says: a subclass (the Sparkplug sink) overrides these three.

    def _will(self) -> tuple[str, bytes, int, bool]:
        """The last will registered with each CONNECT: a retained ``offline`` status."""
        will = self.encoder.presence("offline", time.time(), {"session": self._session})
        return self.topics.status, will, self._qos[Kind.STATUS], self.config.retain_status

    async def _session_started(self) -> None:
        """Runs once the broker accepted the connection, before any ``publish``: the birth."""
        birth = self.encoder.presence("online", time.time(), {**self.ctx.info, "session": self._session})
        refused = await self._send(
            [(self.topics.status, birth, self._qos[Kind.STATUS], self.config.retain_status)]
        )
        if refused:
            raise FatalError(
                f"broker {self._where} refused the birth message ({refused[0][1]}); "
                f"check its ACL for topic {self.topics.status}"
            )

    def _goodbye(self) -> list[tuple[str, bytes, int, bool]]:
        """What a deliberate disconnect publishes first: ``offline``, the same as the will."""
        return [self._will()]

    def _new_client(self, server: Server) -> mqtt.Client:
        cfg = self.config
        v5 = cfg.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=(cfg.client_id or f"edge-agent-{self.ctx.agent_id}")
            + (f"-check-{os.getpid()}" if self._probing else ""),
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
        if server.tls:
            client.tls_set_context(tls_context(cfg, self.ctx.name))
        if not self._probing:
            client.will_set(*self._will())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    async def _connect(self, client: mqtt.Client, server: Server) -> None:
        cfg = self.config
        options = connect_options(cfg)
        connect = functools.partial(client.connect, server.host, server.port, round(cfg.keepalive), **options)
        attempt = asyncio.get_running_loop().run_in_executor(None, connect)
        try:
            await attempt
        except asyncio.CancelledError:
            attempt.add_done_callback(lambda _: close_socket(client))
            raise
        except OSError as exc:  # ssl.SSLError, socket.gaierror and TimeoutError are OSErrors too
            raise connect_error(exc, server.host, self._where) from exc

    def _broken(self, client: mqtt.Client, exc: BaseException) -> None:
        self.ctx.log.error("mqtt client failed", broker=self._where, exc_info=exc)
        self._connection_lost(client, f"{type(exc).__name__}: {exc}")

    async def _close(self, goodbye: bool) -> None:
        """Say offline (retained) when leaving on purpose, then disconnect and stop watching the socket."""
        if goodbye and self._connected and not self._probing:
            try:
                async with asyncio.timeout(min(2.0, self.config.ack_timeout)):
                    await self._send(self._goodbye())
            except (TimeoutError, TransientError, FatalError):
                pass  # the broker publishes the retained will instead
        self._connected = False
        if self._net is not None:
            self._net.stop()
        self._client = self._net = None
