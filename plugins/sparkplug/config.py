"""Config of the Sparkplug B sink: the MQTT connection of the ``mqtt`` sink plus the Sparkplug names.

The connection options (host, port, protocol, TLS, credentials, keepalive, timeouts) are the MQTT sink's,
inherited, so both sinks connect, fail and reconnect the same way. The MQTT sink's topic options
(``prefix``, ``retain_status``, ``qos``, ``uns``) mean nothing here and are refused.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from plugins.mqtt.config import MqttSinkConfig

ID = r"^[^#+/]+$"  # one topic level: no wildcards, no separator
_NOT_HERE = ("prefix", "retain_status", "qos", "uns")


class SparkplugSinkConfig(MqttSinkConfig):
    """Publishes as a Sparkplug B 3.0 edge node: the agent is the node, sources and pipelines its devices."""

    type: Literal["sparkplug"]  # type: ignore[assignment]  # a sink type of its own over the same connection
    group_id: str = Field(pattern=ID, description="Sparkplug group id: the first topic level after spBv1.0.")
    edge_node_id: str | None = Field(
        default=None, pattern=ID, description="Sparkplug edge node id; the agent id when not set."
    )
    primary_host_id: str | None = Field(
        default=None,
        pattern=ID,
        description=(
            "Wait for spBv1.0/STATE/<id> online before NBIRTH; when that host goes offline, stop publishing "
            "(messages wait in the outbox) and reconnect. Not set: publish whenever connected."
        ),
    )
    kinds: list[str] = Field(
        default_factory=lambda: ["alert", "status", "features", "readings"],
        description="Message kinds sent: readings become DDATA of the source devices (by exception).",
    )
    data_qos: Literal[0, 1] = Field(
        default=1,
        description=(
            "QoS of DDATA. 1 makes delivery durable (the outbox acks on PUBACK); Sparkplug 3.0 asks for 0, "
            "which counts a message delivered once written to the socket. Births and deaths follow the spec."
        ),
    )
    pipeline_prefix: str = Field(
        default="pipeline-",
        pattern=r"^[^#+/]*$",
        description="Device id of a pipeline is this prefix and its name, so it never collides with a source.",
    )

    @model_validator(mode="before")
    @classmethod
    def _refuse_topic_options(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [k for k in _NOT_HERE if k in data]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: not a Sparkplug option (topics are spBv1.0/<group_id>/...; "
                    "QoS follows the specification, see data_qos)"
                )
        return data

    @model_validator(mode="after")
    def _clean_session(self) -> SparkplugSinkConfig:
        if not self.clean_start or self.session_expiry:
            raise ValueError(
                "Sparkplug edge nodes use a clean session: clean_start = true and session_expiry = 0"
            )
        return self
