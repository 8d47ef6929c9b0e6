"""Topics and JSON payloads of the MQTT sink.

Every payload is the message's own body plus the envelope fields, first in the object:
``schema`` (``edge-agent/<kind>/2``), ``agent``, ``seq`` (per topic, +1 each, durable across restarts),
``ts`` (ISO-8601 UTC, milliseconds, for people), ``ts_ms`` (epoch milliseconds) and ``replayed``. Every
other time in a payload is epoch milliseconds too (``ts_ms`` of each reading, ``window.start_ms`` /
``end_ms``, ``since_ms``, ``started_at_ms``). The JSON Schema of
each kind is in ``agent/schemas/<kind>.schema.json``. Birth and last-will messages on the status topic
come from the sink, not from the outbox, and carry no ``seq``.
"""

from __future__ import annotations

import json
from typing import Any

from agent.records import SCHEMA_VERSION, Envelope, Kind, WireEncoder, iso, mark_replayed

_LEVEL = {Kind.ALERT: "alerts", Kind.FEATURES: "features", Kind.READINGS: "readings"}


class Topics:
    """The topic tree of one agent: ``{prefix}/{agent_id}/status|alerts/{key}|features/{key}|readings/{key}``."""

    def __init__(self, prefix: str, agent_id: str) -> None:
        self.base = f"{prefix}/{agent_id}"
        self.status = f"{self.base}/status"

    def for_message(self, kind: Kind, key: str) -> str:
        if kind is Kind.STATUS:
            return self.status
        return f"{self.base}/{_LEVEL[kind]}/{key}"


class Encoder:
    """Birth and will payloads, and ``encode(envelope)``: the JSON of ``agent.records.WireEncoder``.

    The sink publishes the bytes its outbox stored at append (``Sink.encode``); ``encode`` here is for
    envelopes made by hand (tests, tools).
    """

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self._wire = WireEncoder(agent_id)
        self._dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

    def encode(self, envelope: Envelope) -> bytes:
        data = envelope.data or self._wire(envelope.message, envelope.seq)
        return mark_replayed(data) if envelope.replayed else data

    def presence(self, state: str, ts: float, info: dict[str, Any] | None = None) -> bytes:
        """A birth (``online``, with session, version, config_hash, started_at and started_at_ms) or will
        (``offline``, with the session of the birth it ends) status."""
        body: dict[str, Any] = {
            "schema": f"edge-agent/status/{SCHEMA_VERSION}",
            "agent": self.agent_id,
            "ts": iso(ts),
            "ts_ms": round(ts * 1000),
            "state": state,
        }
        if info:
            keys = ("session", "version", "config_hash", "started_at", "started_at_ms")
            body.update({k: info[k] for k in keys if k in info})
        return self._dumps(body).encode()
