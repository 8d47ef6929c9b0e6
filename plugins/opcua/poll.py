"""Poll mode: every tag read with batched Read requests at a fixed, drift-free interval.

The schedule is ``next += interval``; when a cycle overruns, the missed ticks are skipped and counted
as ``overruns`` instead of piling reads up. A bad node is a BAD reading; the others keep flowing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from asyncua import Client, ua

from agent.errors import TransientError
from agent.plugin import Emit, PluginContext
from agent.records import Reading
from plugins.opcua import status
from plugins.opcua.config import OpcUaSourceConfig, OpcUaTag


async def read_batched(
    client: Client, nodes: Sequence[tuple[OpcUaTag, ua.NodeId]], batch_size: int
) -> list[Reading]:
    """Read the Value attribute of every node, ``batch_size`` nodes per request."""
    out: list[Reading] = []
    for start in range(0, len(nodes), batch_size):
        chunk = nodes[start : start + batch_size]
        params = ua.ReadParameters(
            MaxAge=0,
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            NodesToRead=[ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value) for _, node in chunk],
        )
        values = await client.uaclient.read(params)
        now = time.time()
        out.extend(status.reading(tag.name, dv, now) for (tag, _), dv in zip(chunk, values, strict=True))
    return out


async def run_poll(
    cfg: OpcUaSourceConfig,
    ctx: PluginContext,
    client: Client,
    nodes: Sequence[tuple[OpcUaTag, ua.NodeId]],
    emit: Emit,
) -> None:
    """Read every node each ``poll_interval`` until cancelled; raises on a failed request."""
    interval = cfg.poll_interval
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        try:
            readings = await read_batched(client, nodes, cfg.batch_size)
        except TimeoutError as exc:  # the session was fine a poll ago: a frozen server or a black hole
            raise TransientError(
                f"{cfg.endpoint} did not answer a Read within {cfg.request_timeout:g} s "
                "(connected but silent); re-creating the client"
            ) from exc
        ctx.mark_up()
        ctx.status.count("readings", len(readings))
        if readings:
            await emit(readings)
        next_at += interval
        now = loop.time()
        if now > next_at:
            missed = int((now - next_at) // interval) + 1
            ctx.status.count("overruns", missed)
            next_at += missed * interval
        await asyncio.sleep(next_at - now)
