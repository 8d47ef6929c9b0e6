"""Subscription mode: monitored items created in batches, notifications emitted in batches, a watchdog.

Notifications reach the loop through asyncua's bounded iterator queue (``buffer`` entries, overflow
policy ``drop_oldest``: the newest state wins). asyncua's publish loop only ``put_nowait``s into it,
so a slow ``emit`` never blocks the client; what the queue dropped is counted as ``dropped``.

The watchdog: a server that stays connected but sends nothing (no data, no keep-alive, no status
change) for ``watchdog_periods`` keep-alive periods makes ``run`` raise ``TransientError``, and the
supervisor re-creates the whole client and its subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from typing import Any

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, StatusChangeEvent, Subscription
from asyncua.observer import Observer

from agent.errors import TransientError
from agent.plugin import Emit, PluginContext
from agent.records import Reading, bad
from plugins.opcua import status
from plugins.opcua.config import OpcUaSourceConfig, OpcUaTag
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
EMIT_BATCH = 5000


class _Counter(Observer):
    """Counts notifications asyncua delivered into the queue, to derive how many the queue dropped."""

    def __init__(self) -> None:
        self.produced = 0

    def observe_request(self, request: Any) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def on_notification(self, subscription_id: int | None, event_count: int) -> None:
        self.produced += event_count


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
        self.counter = _Counter()
        self.consumed = 0
        self._sub: Subscription | None = None
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
        self.client.uaclient.observer = self.counter
        return await self.client.create_subscription(
            params, None, queue_maxsize=self.cfg.buffer, overflow=OverflowPolicy.DROP_OLDEST
        )

    async def _monitor(
        self, sub: Subscription, nodes: Sequence[tuple[OpcUaTag, ua.NodeId]]
    ) -> tuple[dict[int, str], list[Reading]]:
        """Create the monitored items in batches; a refused item is a BAD reading, the rest flow."""
        handles: dict[int, str] = {}
        refused: list[Reading] = []
        size = self.cfg.batch_size
        for start in range(0, len(nodes), size):
            chunk = nodes[start : start + size]
            requests = [_request(self.cfg, tag, node, start + i + 1) for i, (tag, node) in enumerate(chunk)]
            results = await sub.create_monitored_items(requests)
            now = time.time()
            for (tag, _), req, result in zip(chunk, requests, results, strict=True):
                if isinstance(result, ua.StatusCode):
                    refused.append(bad(tag.name, now, result.name))
                else:
                    handles[req.RequestedParameters.ClientHandle] = tag.name
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
        self._sub = sub
        request = lambda tag, node, handle: _request(self.cfg, tag, node, handle)  # noqa: E731 - binds cfg for ItemCheck
        check = self.check = ItemCheck(
            self.cfg, self.ctx, self.client, sub, handles, self.server_handles, nodes_by_tag(nodes), request
        )
        tick = min(1.0, max(0.05, self.silence_s / 4))
        # asyncua's iterator hands out one event per await; reading its queue lets us drain what is
        # ready in one go. Not next_event(): its wait_for can swallow a cancellation on 3.11 (gh-86296).
        queue = sub._event_queue
        assert queue is not None
        while True:
            events: list[Any] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    events.append(await queue.get())
            while events and len(events) < EMIT_BATCH and not queue.empty():
                events.append(queue.get_nowait())
            if events:
                readings = self._readings(events, handles)
                if readings:
                    check.seen(readings)
                    await emit(readings)
            checked = await check()
            if checked:
                await emit(checked)
            self._watchdog(sub, started)

    def _readings(self, events: list[Any], handles: dict[int, str]) -> list[Reading]:
        out: list[Reading] = []
        for event in events:
            if isinstance(event, DataChangeEvent):
                item = event.data.monitored_item
                tag = handles.get(item.ClientHandle)
                if tag is not None:
                    out.append(status.reading(tag, item.Value))
            elif isinstance(event, StatusChangeEvent):
                code = event.notification.Status
                if code is not None and not code.is_good():
                    raise self._lost(f"{self.cfg.endpoint} ended the subscription: {code.name}")
            elif event is None:
                raise TransientError(f"subscription on {self.cfg.endpoint} was closed")
        self.consumed += len(events)
        self.ctx.status.count("readings", len(out))
        return out

    def _lost(self, what: str) -> TransientError:
        """``what`` happened; when the server had been silent for a keep-alive period before it (a
        frozen server: asyncua's probe or its BadShutdown may fire before our watchdog), it is the
        documented watchdog case, and said so."""
        last = self._sub.last_publish_at if self._sub is not None else None
        silent = time.monotonic() - max(last or self._started, self._started)
        if silent > self.keepalive_count * self.cfg.publishing_interval + self.cfg.publishing_interval:
            return TransientError(
                f"{self.cfg.endpoint} sent no data or keep-alive for {silent:.0f} s (connected but "
                f"silent; then {what}); re-creating the client"
            )
        return TransientError(what)

    def _watchdog(self, sub: Subscription, started: float) -> None:
        if self.client.uaclient.state is not UaClientState.CONNECTED:
            raise self._lost(f"connection to {self.cfg.endpoint} lost ({self.client.uaclient.state.value})")
        counters = self.ctx.status.counters
        queue = sub._event_queue
        pending = queue.qsize() if queue is not None else 0
        counters["queue_depth"] = pending
        counters["dropped"] = max(0, self.counter.produced - self.consumed - pending)
        last = sub.last_publish_at or started
        if time.monotonic() - max(last, started) > self.silence_s:
            raise TransientError(
                f"{self.cfg.endpoint} sent no data or keep-alive for {self.silence_s:.0f} s "
                "(connected but silent); re-creating the client"
            )


async def run_subscription(
    cfg: OpcUaSourceConfig,
    ctx: PluginContext,
    client: Client,
    nodes: Sequence[tuple[OpcUaTag, ua.NodeId]],
    emit: Emit,
) -> None:
    """Subscribe to ``nodes`` and emit their changes until cancelled or the connection fails."""
    await SubscriptionLoop(cfg, ctx, client).run(emit, nodes)
