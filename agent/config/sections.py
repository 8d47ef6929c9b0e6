"""Config sections of the core: ``[agent]``, ``[bus]``, ``[health]`` and ``[[pipelines]]`` (with window and alert)."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Literal, cast, get_args

from pydantic import Field, SecretStr, model_validator

from agent.config.base import TAG_NAME, Duration, Model

FeatureName = Literal[
    "mean", "std", "min", "max", "rms", "p2p", "slope", "skewness", "kurtosis", "crest", "last"
]


def _default_state_dir() -> Path:
    # systemd's StateDirectory= exports STATE_DIRECTORY; otherwise keep state next to where we run.
    return Path(os.environ.get("STATE_DIRECTORY", "./state").split(":")[0])


class AgentSection(Model):
    """``[agent]``: identity, logging and lifecycle of this agent."""

    id: str = Field(
        default_factory=socket.gethostname,
        pattern=TAG_NAME,
        description="Agent id, used in MQTT topics and payloads. Default: the host name.",
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto = readable console on a terminal, JSON lines otherwise."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level logged."
    )
    state_dir: Path = Field(
        default_factory=_default_state_dir,
        description="Outbox, sequence counters, certificates. Default: $STATE_DIRECTORY or ./state.",
    )
    shutdown_timeout: Duration = Field(
        default=10.0, description="On SIGTERM, how long to drain pipelines and flush sinks before exiting."
    )
    status_interval: Duration = Field(default=30.0, description="How often a status message is published.")
    readings_interval: Duration = Field(
        default=0.1,
        gt=0,
        description=(
            "Raw readings for sinks that take them are batched over this interval, then appended to the "
            "outbox: a kill -9 loses at most the readings of this last interval (issue 11 item 7)."
        ),
    )
    model_check_interval: Duration = Field(
        default=5.0, description="How often model files are checked for changes (hot swap)."
    )
    allow_empty_reload: bool = Field(
        default=False,
        description=(
            "Let a SIGHUP reload remove every source or every sink. Off: such a reload is refused, "
            "because an empty or truncated file is the usual cause."
        ),
    )
    language: Literal["en", "ko"] = Field(
        default="en", description="Language of alert summaries and the status page: en or ko."
    )


class BusConfig(Model):
    """``[bus]``: the bounded queue between sources and pipelines."""

    capacity: int = Field(default=100_000, ge=1, description="Most readings held (about 100 bytes each).")
    overflow: Literal["drop_oldest", "drop_newest", "block"] = Field(
        default="drop_oldest",
        description="When full: drop the oldest batch, drop the new one, or make sources wait.",
    )


class WindowConfig(Model):
    """``[pipelines.window]``: how readings are cut into windows."""

    kind: Literal["time", "count"] = Field(default="time", description="Time windows or count windows.")
    length: Duration = Field(default=60.0, gt=0, description="time: window length.")
    hop: Duration | None = Field(
        default=None,
        description=(
            "time: a window every hop (hop = length: tumbling). Default: length / 12 in whole periods, "
            "at least one period (5 s for 60 s windows at 1 s), so a step is raised within ~15 s."
        ),
    )
    period: Duration = Field(default=1.0, gt=0, description="time: grid period on which tags are aligned.")
    size: int = Field(
        default=60, ge=2, description="count: rows per window (a row per reading of the first tag)."
    )
    step: int | None = Field(
        default=None, ge=1, description="count: a window every step rows; default = size."
    )
    max_age: Duration | None = Field(
        default=None, description="A value is held at most this long, then missing. Default: 3 x period."
    )
    min_coverage: float = Field(
        default=0.8, ge=0, le=1, description="Least fraction of good rows per tag for a window to be scored."
    )

    @model_validator(mode="after")
    def _check(self) -> WindowConfig:
        if self.kind == "time":
            hop = self.hop_s
            if hop > self.length:
                raise ValueError(
                    f"hop ({hop:g}s) is longer than length ({self.length:g}s): windows would skip data; "
                    "make hop <= length (hop = length gives tumbling windows)"
                )
            if self.period > hop:
                raise ValueError(f"period ({self.period:g}s) must not be longer than hop ({hop:g}s)")
        elif self.step is not None and self.step > self.size:
            raise ValueError(f"step ({self.step}) is larger than size ({self.size}); make step <= size")
        return self

    @property
    def hop_s(self) -> float:
        if self.hop is not None:
            return self.hop
        return min(self.length, max(self.period, round(self.length / 12 / self.period) * self.period))

    @property
    def max_age_s(self) -> float:
        return self.max_age if self.max_age is not None else 3 * self.period


class AlertConfig(Model):
    """``[pipelines.alert]``: when a score becomes an alert."""

    threshold: float | None = Field(
        default=None, description="Raise at or above this score. Default: the model's edge_agent.threshold."
    )
    clear_threshold: float | None = Field(
        default=None, description="Clear below this score. Default: the model's, else 0.8 x threshold."
    )
    rule: Literal["cusum", "consecutive"] = Field(
        default="cusum",
        description=(
            "cusum: raise when the summed log excess of the score over reference x threshold reaches "
            "evidence (fast on a big step, patient near the line); consecutive: raise_after windows in a row."
        ),
    )
    reference: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="cusum: scores above reference x threshold add evidence, scores below take it away.",
    )
    evidence: float = Field(
        default=2.0,
        gt=0,
        description="cusum: evidence (natural log units) that raises; 2.0 = 3 windows at 2x threshold.",
    )
    raise_after: int = Field(
        default=3, ge=1, description="consecutive: windows in a row at or above threshold to raise."
    )
    clear_after: int = Field(
        default=3, ge=1, description="Consecutive windows below clear_threshold to clear."
    )
    sustained_after: Duration | None = Field(
        default=3600.0,
        description="An alert open this long is re-announced as sustained, and again every as long. None: never.",
    )
    top: int = Field(default=3, ge=0, le=50, description="How many contributing features an alert names.")

    @model_validator(mode="after")
    def _check(self) -> AlertConfig:
        if (
            self.threshold is not None
            and self.clear_threshold is not None
            and self.clear_threshold > self.threshold
        ):
            raise ValueError("clear_threshold must not be above threshold (that would flap)")
        return self


class PipelineConfig(Model):
    """``[[pipelines]]``: tags -> windows -> features -> model -> alerts."""

    name: str = Field(pattern=TAG_NAME, description="Unique name; the last level of its topics.")
    enabled: bool = Field(default=True, description="A disabled pipeline is validated but not run.")
    tags: list[str] = Field(min_length=1, description="Tag names, in feature-vector order.")
    window: WindowConfig = Field(default_factory=WindowConfig, description="How readings become windows.")
    features: list[FeatureName] = Field(
        default_factory=lambda: cast(list[FeatureName], list(get_args(FeatureName))),
        min_length=1,
        description="Features per tag, in order.",
    )
    model: Path | None = Field(default=None, description="ONNX model file; none = publish features only.")
    alert: AlertConfig = Field(default_factory=AlertConfig, description="Alert rule.")
    adapt: bool = Field(
        default=False,
        description=(
            "Let normal follow slow, harmless drift: learn a per-feature offset from plainly normal windows "
            "(no alert open, full coverage, score under half the threshold), at most 3 robust sigmas."
        ),
    )
    adapt_time: Duration = Field(
        default=86400.0, gt=0, description="adapt: time constant of the drift followed (default 1 day)."
    )


class HealthConfig(Model):
    """The ``[health]`` section: where the health endpoint and the status page listen, and who may read them.

    ``/healthz`` always answers without a token (it says only "ok" and the loop lag, and container
    probes cannot send headers); ``/``'s data (``/api/...``), ``/readyz`` and ``/metrics`` need the
    bearer token when one is set. Beyond loopback a token is required, unless
    ``allow_unauthenticated = true`` says the network is trusted.
    """

    enabled: bool = Field(default=True, description="Serve /healthz, /readyz, /metrics and the status page.")
    host: str = Field(
        default="127.0.0.1",
        description='Address to listen on; "0.0.0.0" to let Prometheus or a container runtime reach it '
        "(then set `token`/`token_file`, or `allow_unauthenticated = true`).",
    )
    port: int = Field(default=9108, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    max_loop_lag: Duration = Field(
        default=2.0,
        gt=0,
        description="Event loop lag above which /healthz answers 503 and systemd pings stop.",
    )
    token: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="Bearer token for /api/..., /readyz and /metrics (at least 16 characters); prefer "
        "`token_file` (a container secret or systemd credential).",
    )
    allow_unauthenticated: bool = Field(
        default=False,
        description="Listen beyond loopback without a token. Only where everyone who can reach the port "
        "may read the agent's data.",
    )

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> HealthConfig:
        tokenless = self.token is None and not self.allow_unauthenticated
        if tokenless and not self.loopback(self.host):
            raise ValueError(
                f"health.host = {self.host!r} listens beyond loopback: set health.token_file (or "
                "health.token), or allow_unauthenticated = true where the network is trusted"
            )
        return self

    @staticmethod
    def loopback(host: str) -> bool:
        """Whether ``host`` (a listen address) is reachable only from this machine."""
        if host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
