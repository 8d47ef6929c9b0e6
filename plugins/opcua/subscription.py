"""Subscription mode: monitored items created in batches, notifications emitted in batches, a watchdog.

Notifications reach the loop through a ``PublishFeed`` (``plugins.opcua.feed``: at most ``buffer``
readings, overflow policy ``drop_oldest``: the newest state wins). asyncua's publish loop only hands
results to it, so a slow ``emit`` never blocks the client; what the feed dropped is counted as
``dropped``. A notification of one scan arrives as one ``ReadingBatch`` (``plugins.opcua.changes``).

The watchdog: a server that stays connected but sends nothing (no data, no keep-alive, no status
change) for ``watchdog_periods`` keep-alive periods makes ``run`` raise ``TransientError``, and the
supervisor re-creates the whole client and its subscription.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.common.subscription import Subscription

from agent.batch import ReadingChain
from agent.errors import TransientError
from agent.plugin import Emit, PluginContext
from agent.records import Reading, bad
from plugins.opcua.config import OpcUaSourceConfig, OpcUaTag
from plugins.opcua.feed import PublishFeed
from plugins.opcua.items import ItemCheck, nodes_by_tag

_TRIGGERS = {
    "status": ua.DataChangeTrigger.Status,
    "status_value": ua.DataChangeTrigger.StatusValue,
    "status_value_timestamp": ua.DataChangeTrigger.StatusValueTimestamp,
}
_DEADBANDS = {
    "none": ua.DeadbandType.None_,
    "absolute": ua.DeadbandType.Absolute,
    "percent": ua.DeadbandType.Percent,
}
EMIT_BATCH = 5000  # readings per emit at most, short of a single notification that is larger


def _filter(cfg: OpcUaSourceConfig, tag: OpcUaTag) -> ua.DataChangeFilter | None:
    deadband = tag.deadband or cfg.deadband
    value = tag.deadband_value if tag.deadband_value is not None else cfg.deadband_value
    if deadband == "none" and cfg.trigger == "status_value":
        return None  # the server's default filter; sending none keeps simple servers happy
    return ua.DataChangeFilter(
        Trigger=_TRIGGERS[cfg.trigger], DeadbandType=_DEADBANDS[deadband], DeadbandValue=float(value)
    )


def _request(
    cfg: OpcUaSourceConfig, tag: OpcUaTag, node: ua.NodeId, handle: int
) -> ua.MonitoredItemCreateRequest:
    sampling = tag.sampling_interval if tag.sampling_interval is not None else cfg.sampling_interval
    params = ua.MonitoringParameters(
        ClientHandle=handle,
        SamplingInterval=(cfg.publishing_interval if sampling is None else sampling) * 1000.0,
        QueueSize=cfg.queue_size,
        DiscardOldest=cfg.discard_oldest,
    )
    flt = _filter(cfg, tag)
    if flt is not None:
        params.Filter = flt
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value),
        MonitoringMode=ua.MonitoringMode.Reporting,
        RequestedParameters=params,
    )


class SubscriptionLoop:
    """One subscription on one connected client; lives for one ``run``."""

    def __init__(self, cfg: OpcUaSourceConfig, ctx: PluginContext, client: Client) -> None:
        self.cfg, self.ctx, self.client = cfg, ctx, client
        self.keepalive_count = max(1, math.ceil(cfg.keepalive_interval / cfg.publishing_interval))
        self.silence_s = cfg.watchdog_periods * self.keepalive_count * cfg.publishing_interval
        self.handles: dict[int, str] = {}  # client handle -> tag; the feed reads it live
        self.feed = PublishFeed(self.handles, cfg.buffer)
        self._started = time.monotonic()
        self.server_handles: dict[str, int] = {}
        self.check: ItemCheck | None = None

    async def _subscribe(self) -> Subscription:
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=self.cfg.publishing_interval * 1000.0,
            RequestedLifetimeCount=max(
                3 * self.keepalive_count, math.ceil(self.keepalive_count * self.cfg.watchdog_periods * 3)
            ),
            RequestedMaxKeepAliveCount=self.keepalive_count,
            MaxNotificationsPerPublish=10_000,
            PublishingEnabled=True,
            Priority=0,
        )
        sub = await self.client.create_subscription(params, None)
        if sub.subscription_id is None:  # asyncua sets it from the response it just read
            raise TransientError(f"{self.cfg.endpoint} created a subscription without an id")
        self.feed.attach(self.client.uaclient, sub.subscription_id)  # before any item exists
        return sub

    async def _monitor(
        self, sub: Subscription, nodes: Sequence[tuple[OpcUaTag, ua.NodeId]]
    ) -> tuple[dict[int, str], list[Reading]]:
        """Create the monitored items in batches; a refused item is a BAD reading, the rest flow."""
        handles = self.handles
        refused: list[Reading] = []
        size = self.cfg.batch_size
        for start in range(0, len(nodes), size):
            chunk = nodes[start : start + size]
            requests = [_request(self.cfg, tag, node, start + i + 1) for i, (tag, node) in enumerate(chunk)]
            # Known before the request: the server may publish an item's first value before the
            # client has read the response that created it (asyncua's Subscription does the same).
            handles.update((start + i + 1, tag.name) for i, (tag, _) in enumerate(chunk))
            results = await sub.create_monitored_items(requests)
            now = time.time()
            for (tag, _), req, result in zip(chunk, requests, results, strict=True):
                if isinstance(result, ua.StatusCode):
                    del handles[req.RequestedParameters.ClientHandle]
                    refused.append(bad(tag.name, now, result.name))
                else:
                    self.server_handles[tag.name] = int(result)
        return handles, refused

    async def run(self, emit: Emit, nodes: Sequence[tuple[OpcUaTag, ua.NodeId]]) -> None:
        sub = await self._subscribe()
        handles, refused = await self._monitor(sub, nodes)
        if refused:
            self.ctx.log.warning(
                "tags refused by the server",
                count=len(refused),
                first=refused[0].tag,
                reason=refused[0].reason,
            )
            await emit(refused)
        self.ctx.status.counters["monitored_items"] = len(handles)
        self.ctx.mark_up()
        started = self._started = time.monotonic()
        request = lambda tag, node, handle: _request(self.cfg, tag, node, handle)  # noqa: E731 - binds cfg for ItemCheck
        check = self.check = ItemCheck(
            self.cfg, self.ctx, self.client, sub, handles, self.server_handles, nodes_by_tag(nodes), request
        )
        tick = min(1.0, max(0.05, self.silence_s / 4))
        feed = self.feed
        while True:
            for readings in _groups(await feed.get(tick)):
                check.seen(readings)
                self.ctx.status.count("readings", len(readings))
                await emit(readings)
            if feed.ended is not None:
                raise self._lost(f"{self.cfg.endpoint} ended the subscription: {feed.ended.name}")
            checked = await check()
            if checked:
                await emit(checked)
            self._watchdog(started)

    def _lost(self, what: str) -> TransientError:
        """``what`` happened; when the server had been silent for a keep-alive period before it (a
        frozen server: asyncua's probe or its BadShutdown may fire before our watchdog), it is the
        documented watchdog case, and said so."""
        last = self.feed.last_publish_at
        silent = time.monotonic() - max(last or self._started, self._started)
        if silent > self.keepalive_count * self.cfg.publishing_interval + self.cfg.publishing_interval:
            return TransientError(
                f"{self.cfg.endpoint} sent no data or keep-alive for {silent:.0f} s (connected but "
                f"silent; then {what}); re-creating the client"
            )
        return TransientError(what)

    def _watchdog(self, started: float) -> None:
        if self.client.uaclient.state is not UaClientState.CONNECTED:
            raise self._lost(f"connection to {self.cfg.endpoint} lost ({self.client.uaclient.state.value})")
        counters = self.ctx.status.counters
        counters["queue_depth"] = len(self.feed)
        counters["dropped"] = self.feed.dropped
        counters["publish_decoded_fast"] = self.feed.decoded["fast"]
        counters["publish_decoded_by_asyncua"] = self.feed.decoded["asyncua"]
        last = self.feed.last_publish_at or started
        if time.monotonic() - max(last, started) > self.silence_s:
            raise TransientError(
                f"{self.cfg.endpoint} sent no data or keep-alive for {self.silence_s:.0f} s "
                "(connected but silent); re-creating the client"
            )


def _groups(parts: list[Sequence[Reading]]) -> Iterator[Sequence[Reading]]:
    """``parts`` as emits of about ``EMIT_BATCH`` readings: one part alone, several as a chain."""
    group: list[Sequence[Reading]] = []
    size = 0
    for part in parts:
        if group and size + len(part) > EMIT_BATCH:
            yield group[0] if len(group) == 1 else ReadingChain(group)
            group, size = [], 0
        group.append(part)
        size += len(part)
    if group:
        yield group[0] if len(group) == 1 else ReadingChain(group)


async def run_subscription(
    cfg: OpcUaSourceConfig,
    ctx: PluginContext,
    client: Client,
    nodes: Sequence[tuple[OpcUaTag, ua.NodeId]],
    emit: Emit,
) -> None:
    """Subscribe to ``nodes`` and emit their changes until cancelled or the connection fails."""
    await SubscriptionLoop(cfg, ctx, client).run(emit, nodes)
