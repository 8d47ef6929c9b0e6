"""OPC UA source: subscription or poll, node ids by namespace URI, certificates, one owner of reconnect.

Only ``config`` is imported here, so ``edge-agent check`` does not import asyncua.
"""

from __future__ import annotations

from agent.registry import PluginSpec
from plugins.opcua.config import OpcUaSourceConfig

SPEC = PluginSpec(
    type="opcua",
    kind="source",
    config=OpcUaSourceConfig,
    impl="plugins.opcua.source:OpcUaSource",
    summary="OPC UA client: subscriptions or batched polling, recovers by itself after server restarts.",
    sample="plugins.opcua:sample.toml",
)
