"""The ``[[sources]] type = "opcua"`` config section. Pydantic only: no protocol library imported here."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from agent.config.base import Duration, SourceConfig, TagConfig
from plugins.opcua import nodeid

SecurityPolicy = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]
Trigger = Literal["status", "status_value", "status_value_timestamp"]
Deadband = Literal["none", "absolute", "percent"]


class OpcUaTag(TagConfig):
    """One OPC UA variable read as a tag."""

    node: str = Field(
        description="Node id: ns=2;s=..., ns=2;i=..., ns=2;g=<guid>, ns=2;b=<base64>, or nsu=<namespace uri>;s=... "
        "(the nsu= form survives namespace index changes after a server restart)."
    )
    sampling_interval: Duration | None = Field(
        default=None, description="Per-tag sampling interval (subscription mode); default: the source's."
    )
    deadband: Deadband | None = Field(
        default=None, description="Per-tag deadband type; default: the source's."
    )
    deadband_value: float | None = Field(
        default=None, ge=0, description="Per-tag deadband size; default: the source's."
    )

    @field_validator("node")
    @classmethod
    def _node_parses(cls, value: str) -> str:
        nodeid.parse(value)
        return value.strip()


class OpcUaSourceConfig(SourceConfig):
    """Reads variables from one OPC UA server by subscription or by polling."""

    type: Literal["opcua"]
    endpoint: str = Field(
        pattern=r"^opc\.tcp://", description="Server endpoint URL, e.g. opc.tcp://plc1:4840."
    )
    mode: Literal["subscription", "poll"] = Field(
        default="subscription",
        description="subscription: the server pushes changes (monitored items); poll: batched Read every interval.",
    )
    tags: list[OpcUaTag] = Field(default_factory=list, description="The variables to read.")

    # subscription mode
    publishing_interval: Duration = Field(
        default=1.0, gt=0, description="How often the server sends collected changes (subscription mode)."
    )
    sampling_interval: Duration | None = Field(
        default=None,
        ge=0,
        description="How often the server samples each variable; default: publishing_interval.",
    )
    queue_size: int = Field(
        default=10, ge=1, le=10_000, description="Server-side queue per monitored item between two publishes."
    )
    discard_oldest: bool = Field(
        default=True,
        description="When a monitored item's server queue is full, drop the oldest value (else newest).",
    )
    trigger: Trigger = Field(
        default="status_value",
        description="What counts as a change: status, status_value, status_value_timestamp.",
    )
    deadband: Deadband = Field(
        default="none",
        description="Deadband filter: none, absolute (engineering units) or percent (of EURange).",
    )
    deadband_value: float = Field(default=0.0, ge=0, description="Deadband size, in units or percent.")
    keepalive_interval: Duration = Field(
        default=5.0,
        gt=0,
        description="Longest quiet gap before the server sends a keep-alive (subscription mode).",
    )
    watchdog_periods: float = Field(
        default=3.0,
        ge=1.5,
        description="Re-create the client when nothing (data, keep-alive, status) arrived for this many "
        "keep-alive periods.",
    )
    item_check_interval: Duration = Field(
        default=30.0,
        gt=0,
        description="Subscription mode: a monitored item silent this long is checked with a Read; a deleted "
        "node becomes BAD, and an item whose node answers again (recreated) or changed unnoticed is re-created.",
    )
    buffer: int = Field(
        default=100_000,
        ge=100,
        description="Client-side notification queue bound; when full, the oldest notification is dropped (counted).",
    )

    # poll mode
    poll_interval: Duration = Field(default=1.0, gt=0, description="Read period in poll mode, drift-free.")

    # both
    batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Most nodes per CreateMonitoredItems or Read request."
    )
    request_timeout: Duration = Field(default=5.0, gt=0, description="Timeout of each request to the server.")
    session_timeout: Duration = Field(
        default=60.0,
        ge=1,
        description="Session lifetime the server keeps after the connection is lost. A session orphaned by a "
        "network black hole holds one of the server's session slots this long.",
    )

    # security
    security_policy: SecurityPolicy = Field(
        default="None",
        description="None, Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss.",
    )
    security_mode: SecurityMode = Field(default="None", description="None, Sign or SignAndEncrypt.")
    certificate: Path | None = Field(
        default=None,
        description="Client certificate (DER or PEM). Default: generated once into <state_dir>/opcua/.",
    )
    private_key: Path | None = Field(
        default=None, description="Client private key (PEM or DER) for certificate."
    )
    private_key_password: SecretStr | None = Field(
        default=None, description="Password of the private key, if encrypted (or private_key_password_file)."
    )
    application_uri: str | None = Field(
        default=None,
        description="ApplicationUri written into a generated certificate; default urn:<hostname>:edge-agent. "
        "A loaded certificate's own URI is always used when connecting.",
    )
    server_certificate: Path | None = Field(
        default=None, description="Trust exactly this server certificate (pinned; DER or PEM)."
    )
    trusted_ca_dir: Path | None = Field(
        default=None,
        description="Trust server certificates found in, or issued by a CA certificate in, this directory.",
    )
    trust_unknown_server: bool = Field(
        default=False,
        description="DANGER: accept any server certificate. Only for commissioning; logs the thumbprint.",
    )
    server_uri: str | None = Field(
        default=None,
        description="Pin the server's ApplicationUri: its certificate and its endpoint description must "
        "both carry exactly this URI.",
    )
    username: str | None = Field(default=None, description="User name; anonymous when unset.")
    password: SecretStr | None = Field(default=None, description="Password (or password_file).")
    allow_plaintext_password: bool = Field(
        default=False,
        description='DANGER: send the password over a security_policy = "None" channel, readable by anyone '
        "on the network. Refused unless this is true.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSourceConfig:
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError(
                "security_policy and security_mode go together: both 'None', or a policy such as "
                "'Basic256Sha256' with mode 'Sign' or 'SignAndEncrypt'"
            )
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("give both certificate and private_key, or neither (to use the generated pair)")
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not")
        if self.password is not None and self.security_policy == "None" and not self.allow_plaintext_password:
            raise ValueError(
                'a password over security_policy = "None" travels in clear text: use a security_policy '
                "such as 'Basic256Sha256' with security_mode 'SignAndEncrypt', or set "
                "allow_plaintext_password = true to accept that risk"
            )
        seen: set[str] = set()
        for tag in self.tags:
            if tag.name in seen:
                raise ValueError(f"tag name {tag.name!r} is used twice in source {self.name!r}")
            seen.add(tag.name)
        return self

    def security_warnings(self) -> list[str]:
        """Insecure settings, said at start and by ``check`` (issue 10)."""
        found = []
        if self.security_policy == "None":
            found.append(
                'security_policy = "None": readings arrive unsigned and unencrypted, so anyone on the '
                "network path can read or change them; use 'Basic256Sha256' with 'SignAndEncrypt'"
            )
        if self.password is not None and self.security_policy == "None":
            found.append("allow_plaintext_password = true: the password travels in clear text")
        if self.trust_unknown_server:
            found.append(
                "trust_unknown_server = true: any server certificate is accepted (commissioning only)"
            )
        return found

    @property
    def secure(self) -> bool:
        return self.security_mode != "None"
