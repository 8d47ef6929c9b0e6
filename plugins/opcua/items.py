"""Silent monitored items: a deleted node is BAD, a recreated one is subscribed again (issue 11 item 7).

A server that deletes a node may not say so to the subscription (asyncua's own server drops that
notification), and an item attached to the deleted node stays silent after the node is created again:
the tag went quiet for good with nothing logged. A silent item is indistinguishable from a value that
does not change, so every ``item_check_interval`` the items silent that long are read once (batched):

* the Read says the node is gone (``BadNodeIdUnknown``...): a BAD reading, logged once per node;
* the node answers again after being gone, or (with no deadband) its value differs from the last one
  notified: the monitored item is deleted and created again, logged once, and the value is emitted;
* otherwise the value simply did not change and nothing happens.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from agent.batch import ReadingBatch, parts
from agent.plugin import PluginContext
from agent.records import Quality, Reading, Value
from plugins.opcua.config import OpcUaSourceConfig, OpcUaTag
from plugins.opcua.poll import read_batched

GONE = frozenset({"BadNodeIdUnknown", "BadNodeIdInvalid", "BadNodeIdRejected"})
Request = Callable[[OpcUaTag, ua.NodeId, int], ua.MonitoredItemCreateRequest]


class ItemCheck:
    """Checks the silent items of one subscription; see the module docstring."""

    def __init__(
        self,
        cfg: OpcUaSourceConfig,
        ctx: PluginContext,
        client: Client,
        sub: Subscription,
        handles: dict[int, str],
        server_handles: dict[str, int],
        nodes: dict[str, tuple[OpcUaTag, ua.NodeId]],
        request: Request,
    ) -> None:
        self.cfg, self.ctx, self.client, self.sub = cfg, ctx, client, sub
        self.handles, self.server_handles, self.nodes = handles, server_handles, nodes
        self.request = request
        now = time.monotonic()
        self.last_seen = dict.fromkeys(handles.values(), now)
        self.last_value: dict[str, Value] = {}
        self.gone: set[str] = set()
        self.next_at = now + cfg.item_check_interval

    def seen(self, readings: Sequence[Reading]) -> None:
        """Note ``readings`` as notified now; a batch is taken whole, without a ``Reading`` per item."""
        now = time.monotonic()
        last_seen, last_value = self.last_seen, self.last_value
        for part in parts(readings):
            if isinstance(part, ReadingBatch):
                last_seen.update(zip(part.layout.tags, repeat(now)))
                last_value.update(zip(part.layout.tags, part.values, strict=True))
            else:
                for r in part:
                    last_seen[r.tag] = now
                    last_value[r.tag] = r.value

    async def __call__(self) -> list[Reading]:
        """Readings from checking the items silent for ``item_check_interval`` (usually none)."""
        now = time.monotonic()
        if now < self.next_at:
            return []
        interval = self.cfg.item_check_interval
        self.next_at = now + interval
        silent = [t for t, seen in self.last_seen.items() if now - seen >= interval and t in self.nodes]
        if not silent:
            return []
        out: list[Reading] = []
        readings = await read_batched(self.client, [self.nodes[t] for t in silent], self.cfg.batch_size)
        for r in readings:
            self.last_seen[r.tag] = now
            if r.quality is Quality.BAD and r.reason in GONE:
                if r.tag not in self.gone:
                    self.gone.add(r.tag)
                    self.ctx.log.warning("node gone from the server", tag=r.tag, reason=r.reason)
                    out.append(r)
            elif r.tag in self.gone or self._changed_unnoticed(r):
                await self._recreate(r.tag)
                out.append(r)
        return out

    def _changed_unnoticed(self, r: Reading) -> bool:
        tag = self.nodes[r.tag][0]
        deadband = tag.deadband or self.cfg.deadband
        known = r.tag in self.last_value
        return (
            deadband == "none" and r.quality is Quality.GOOD and known and r.value != self.last_value[r.tag]
        )

    async def _recreate(self, name: str) -> None:
        tag, node = self.nodes[name]
        old = self.server_handles.pop(name, None)
        if old is not None:
            with contextlib.suppress(ua.UaStatusCodeError):  # the server dropped it with the node
                await self.sub.unsubscribe(old)
        handle = max(self.handles, default=0) + 1
        self.handles[handle] = name  # before the request: its first value may come before the answer
        (result,) = await self.sub.create_monitored_items([self.request(tag, node, handle)])
        if isinstance(result, ua.StatusCode):
            del self.handles[handle]
            self.ctx.log.warning("monitored item could not be re-created", tag=name, reason=result.name)
            return
        self.server_handles[name] = int(result)
        was_gone = name in self.gone
        self.gone.discard(name)
        self.ctx.status.count("items_recreated")
        self.ctx.log.info(
            "monitored item re-created", tag=name, why="node back" if was_gone else "changed unnoticed"
        )


def nodes_by_tag(nodes: Any) -> dict[str, tuple[OpcUaTag, ua.NodeId]]:
    return {tag.name: (tag, node) for tag, node in nodes}
