"""The wire form of a message: its payload plus the envelope fields every consumer relies on.

``schema`` names the payload schema (``edge-agent/<kind>/2``, JSON Schema files in ``agent/schemas``);
``seq`` increases by one per topic and survives restarts, so consumers detect gaps and duplicates;
``replayed`` marks messages that waited in the outbox through an outage or a restart.
"""

from __future__ import annotations

import json
from typing import Any

from agent.records import SCHEMA_VERSION, Envelope, encode_body, iso

__all__ = ["SCHEMA_VERSION", "dumps", "iso", "wire"]


def wire(envelope: Envelope, agent_id: str) -> dict[str, Any]:
    """The JSON object published for ``envelope``, as a dict (for tests and tools; sinks publish the
    bytes ``agent.records.WireEncoder`` made at append)."""
    message = envelope.message
    return {
        "schema": f"edge-agent/{message.kind.value}/{SCHEMA_VERSION}",
        "agent": agent_id,
        "seq": envelope.seq,
        "ts": iso(message.ts),
        "ts_ms": round(message.ts * 1000),
        "replayed": envelope.replayed,
        **json.loads(encode_body(message)),  # readings hold Reading objects: made JSON the one way
    }


def dumps(obj: dict[str, Any]) -> str:
    """Compact JSON; NaN and infinities become null (JSON has no NaN)."""
    return json.dumps(_clean(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj
