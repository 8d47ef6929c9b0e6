"""Config of the MQTT sink: broker(s), session, TLS, credentials, topics and QoS per message kind."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from agent.config.base import Duration, Model, SinkConfig
from plugins.mqtt.servers import Failover, Server, check_servers, parse_servers

QoS = Literal[0, 1, 2]


class QosConfig(Model):
    """MQTT QoS per message kind. Only QoS >= 1 is acknowledged by the broker, so only QoS >= 1 is
    durable: a QoS 0 message counts as delivered once written to the socket."""

    alert: QoS = Field(default=1, description="QoS of alerts.")
    status: QoS = Field(default=1, description="QoS of status messages (birth and will included).")
    features: QoS = Field(default=1, description="QoS of feature vectors and scores; 1 keeps them durable.")
    readings: QoS = Field(
        default=0, description="QoS of forwarded raw readings (`kinds` must list readings)."
    )


class UnsConfig(Model):
    """UNS mode: the present on retained topics, for subscribers that come late (dashboards, historians)."""

    enabled: bool = Field(
        default=False,
        description=(
            "Publish each tag's latest value retained on `{prefix}/{agent_id}/{source}/{tag}` as "
            "`{value, ts_ms, quality, unit}`, and each pipeline's alert state retained on "
            "`{prefix}/{agent_id}/alerts/{pipeline}/state`. Needs `kinds` to list readings."
        ),
    )
    qos: QoS = Field(default=1, description="QoS of the retained tag and alert-state topics.")
    keep_batch: bool = Field(
        default=False,
        description="Also publish the batched `readings/{source}` topic (off: the per-tag topics replace it).",
    )


class MqttSinkConfig(SinkConfig):
    """Publishes alerts, status, features and optionally raw readings to an MQTT broker or cluster."""

    type: Literal["mqtt"]
    host: str = Field(default="localhost", description="Broker host name or address (or use `servers`).")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Broker port; 1883, or 8883 with TLS, when not set."
    )
    servers: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Brokers of a cluster, `mqtt://host:port` or `mqtts://host:port` (TLS), instead of "
        "`host`/`port`; the sink connects to one at a time and moves to the next when a connection fails.",
    )
    failover: Failover = Field(
        default="ordered",
        description="Order of `servers`: `ordered` as listed, `random` a per-agent shuffle that spreads a fleet.",
    )
    protocol: Literal["3.1.1", "5"] = Field(default="3.1.1", description="MQTT protocol version.")
    client_id: str | None = Field(
        default=None, max_length=128, description="MQTT client id; `edge-agent-{agent_id}` when not set."
    )
    keepalive: Duration = Field(
        default=30.0,
        ge=5,
        le=65535,
        description="Keepalive: a silent broker is declared lost after 1.5x this.",
    )
    connect_timeout: Duration = Field(default=10.0, gt=0, description="Most time for TCP, TLS and CONNACK.")
    ack_timeout: Duration = Field(
        default=30.0, gt=0, description="Most time a batch waits for its acknowledgements before a reconnect."
    )
    clean_start: bool = Field(
        default=True, description="Start a fresh session on each connect (MQTT 3.1.1: clean session)."
    )
    session_expiry: Duration = Field(
        default=0.0, ge=0, description="MQTT 5: seconds the broker keeps the session after a disconnect."
    )
    max_inflight: int = Field(
        default=1000, ge=1, le=65535, description="Most QoS>=1 messages sent and not yet acknowledged."
    )
    username: str | None = Field(default=None, description="User name for the broker.")
    password: SecretStr | None = Field(
        default=None,
        description="Password; prefer `password_file` (a systemd credential or container secret).",
    )
    tls: bool = Field(default=False, description="Use TLS; implied by `tls_ca_file` or `tls_cert_file`.")
    tls_ca_file: Path | None = Field(
        default=None,
        description="CA bundle that signs the broker's certificate; the system CAs when not set.",
    )
    tls_cert_file: Path | None = Field(default=None, description="Client certificate (PEM) for mutual TLS.")
    tls_key_file: Path | None = Field(
        default=None, description="Private key (PEM) of the client certificate."
    )
    tls_insecure_skip_verify: bool = Field(
        default=False,
        description="Accept any broker certificate and host name. Only for a lab: it allows interception.",
    )
    prefix: str = Field(
        default="edge",
        pattern=r"^[^#+/][^#+]*[^#+/]$|^[^#+/]$",
        description="Topic prefix (UNS style, e.g. `factory/gumi/line1`); topics are `{prefix}/{agent_id}/...`.",
    )
    retain_status: bool = Field(default=True, description="Publish status (birth, will, updates) retained.")
    qos: QosConfig = Field(default_factory=QosConfig, description="QoS per message kind.")
    uns: UnsConfig = Field(default_factory=UnsConfig, description="UNS mode: retained current values.")

    @model_validator(mode="after")
    def _tls_files(self) -> MqttSinkConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("mutual TLS needs both tls_cert_file and tls_key_file")
        if self.tls_ca_file is not None or self.tls_cert_file is not None:
            object.__setattr__(self, "tls", True)
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        if self.uns.enabled and "readings" not in self.kinds:
            raise ValueError('uns.enabled needs the readings: add "readings" to kinds')
        check_servers(self.servers, self.model_fields_set, self.tls)
        return self

    def security_warnings(self) -> list[str]:
        """Insecure settings, said at start and by ``check`` (issue 10)."""
        found = []
        if self.tls and self.tls_insecure_skip_verify:
            found.append(
                "tls_insecure_skip_verify = true: the broker's certificate and host name are not checked, so "
                "anyone on the network path can pose as the broker and read or change what is published; "
                "set tls_ca_file to the CA that signed the broker's certificate instead"
            )
        if self.password is not None and not self.tls:
            found.append(
                "a password is sent to the broker without TLS, in clear text; set tls = true "
                "(and tls_ca_file) on a broker that listens with TLS"
            )
        return found

    @property
    def broker_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls else 1883)

    @property
    def server_list(self) -> list[Server]:
        """``servers`` parsed, or the one ``host``/``port``; the TLS settings apply to mqtts:// servers."""
        if self.servers is None:
            return [Server(self.host, self.broker_port, self.tls)]
        return parse_servers(self.servers)
