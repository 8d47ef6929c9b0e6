"""The OPC UA source: one new client per ``run``, node ids resolved at every connect.

``run`` connects, resolves every tag's node id against the server's current namespace array
(so ``nsu=`` ids survive a server that renumbered its namespaces), then subscribes or polls until
the connection fails. It never reconnects by itself: it raises ``TransientError`` and the
supervisor runs it again, which re-creates the client, the subscription and the monitored items,
and retries tags that were bad on the previous connection.

A gap is visible, not silent (issue 11 item 7): every failed run (the loss, then each failed
reconnect) emits a BAD reading per tag with the reason, so an outage shows as BAD markers at the
retry cadence (see ``agent.supervise``), as Modbus does, instead of as nothing.
"""

from __future__ import annotations

import time

from asyncua import Client, ua

from agent.errors import FatalError, TransientError
from agent.plugin import Emit, PluginContext, Source
from agent.records import Reading, bad
from plugins.opcua import nodeid
from plugins.opcua.config import OpcUaSourceConfig, OpcUaTag
from plugins.opcua.connection import close_client, open_client, translate
from plugins.opcua.poll import read_batched, run_poll
from plugins.opcua.subscription import run_subscription

Nodes = list[tuple[OpcUaTag, ua.NodeId]]


class OpcUaSource(Source):
    """Reads ``[[sources]] type = "opcua"`` tags by subscription or by polling."""

    config: OpcUaSourceConfig

    def __init__(self, config: OpcUaSourceConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self._refs = [(tag, nodeid.parse(tag.node)) for tag in config.tags]

    async def _resolve(self, client: Client) -> tuple[Nodes, list[Reading]]:
        """Node ids for this connection; a tag whose namespace URI is missing is a BAD reading."""
        namespaces: list[str] = []
        if any(ref.uri is not None for _, ref in self._refs):
            namespaces = await client.get_namespace_array()
        nodes: Nodes = []
        missing: list[Reading] = []
        now = time.time()
        for tag, ref in self._refs:
            try:
                nodes.append((tag, ua.NodeId.from_string(ref.resolve(namespaces))))
            except LookupError as exc:
                missing.append(bad(tag.name, now, str(exc)))
        return nodes, missing

    async def run(self, emit: Emit) -> None:
        try:
            await self._run(emit)
        except (TransientError, FatalError) as exc:
            now = time.time()
            await emit([bad(tag.name, now, str(exc)[:200]) for tag, _ in self._refs])
            raise

    async def _run(self, emit: Emit) -> None:
        cfg = self.config
        client = await open_client(cfg, self.ctx.state_dir, self.ctx.log)
        try:
            nodes, missing = await self._resolve(client)
            if missing:
                self.ctx.log.warning(
                    "namespace not found", count=len(missing), first=missing[0].tag, reason=missing[0].reason
                )
                await emit(missing)
            if cfg.mode == "subscription":
                await run_subscription(cfg, self.ctx, client, nodes, emit)
            else:
                await run_poll(cfg, self.ctx, client, nodes, emit)
        except (TransientError, FatalError):
            raise
        except Exception as exc:
            raise translate(exc, cfg.endpoint, "reading from") from exc
        finally:
            await close_client(client, cfg.request_timeout)

    async def read_once(self) -> list[Reading]:
        cfg = self.config
        client = await open_client(cfg, self.ctx.state_dir, self.ctx.log)
        try:
            nodes, missing = await self._resolve(client)
            return missing + await read_batched(client, nodes, cfg.batch_size)
        except (TransientError, FatalError):
            raise
        except Exception as exc:
            raise translate(exc, cfg.endpoint, "reading from") from exc
        finally:
            await close_client(client, cfg.request_timeout)
