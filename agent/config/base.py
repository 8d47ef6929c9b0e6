"""Building blocks every config model uses: the strict base model, durations, sizes and secrets.

Plugins import from here (never from ``agent.config``, which assembles the whole file), so a plugin's
config module stays importable without pulling in the runtime.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

TAG_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"


def _no_dotdot(value: str) -> str:
    # Source and sink names become file names in the state directory (outbox-<name>.sqlite): no ``..``.
    if ".." in value:
        raise ValueError(
            f"a name may not contain '..' (got {value!r}); use letters, digits, '_', '.' and '-'"
        )
    return value


ComponentName = Annotated[str, AfterValidator(_no_dotdot)]
"""A source or sink name: ``[A-Za-z0-9_.-]``, not starting with a dot, no ``..``."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d)")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``"500ms"``, ``"10s"``, ``"5m"``, ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '500ms', '10s', '5m', '1h30m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos and text[pos : match.start()].strip():
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if not text or pos != len(text):
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(
                    f"bad duration {value!r}: write a number of seconds or a string like "
                    "'500ms', '10s', '5m', '2h' or '1h30m'"
                ) from None
    else:
        raise ValueError("a duration is a number of seconds or a string like '500ms', '10s', '5m', '1h30m'")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative (got {value!r})")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds as float; accepts ``10``, ``"10s"``, ``"500ms"``, ``"5m"``, ``"1h30m"``."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1,
    "b": 1,
    "kb": 10**3,
    "kib": 2**10,
    "mb": 10**6,
    "mib": 2**20,
    "gb": 10**9,
    "gib": 2**30,
}


def parse_size(value: Any) -> int:
    """Bytes from a number or a string such as ``"512MB"``, ``"1GiB"``, ``"64kb"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (match := _SIZE.match(value)):
        unit = match.group(2).lower() if match.group(2) else None
        return int(float(match.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"bad size {value!r}: write a number of bytes or a string like '64MB', '1GiB'")


ByteSize = Annotated[int, BeforeValidator(parse_size)]


class Model(BaseModel):
    """Strict base for every config section: unknown keys are errors, values are validated on assignment.

    Every field typed ``SecretStr`` (or ``SecretStr | None``) also accepts ``<field>_file``: a path whose
    content (trailing newline stripped) becomes the secret. That is how systemd credentials
    (``$CREDENTIALS_DIRECTORY/...``) and container secrets (``/run/secrets/...``) reach the agent.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
    _secret_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._secret_fields = tuple(
            name
            for name, info in cls.model_fields.items()
            if info.annotation is SecretStr or "SecretStr" in repr(info.annotation)
        )

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not cls._secret_fields:
            return data
        for name in cls._secret_fields:
            key = f"{name}_file"
            if key not in data:
                continue
            data = dict(data)
            path = Path(str(data.pop(key)))
            if name in data:
                raise ValueError(f"give either '{name}' or '{key}', not both")
            try:
                data[name] = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"{key}: cannot read secret file {str(path)!r}: {exc.strerror}") from None
        return data


class TagConfig(Model):
    """A tag: one named signal read from a source. Plugins subclass it with their address fields."""

    name: str = Field(pattern=TAG_NAME, description="Unique name of the tag across the whole config.")
    unit: str | None = Field(default=None, description="Engineering unit, carried into payloads.")
    description: str | None = Field(default=None, description="Free text for people.")


class SourceConfig(Model):
    """Fields every source has. Subclasses pin ``type`` to a Literal and narrow ``tags``."""

    type: str
    name: ComponentName = Field(
        pattern=TAG_NAME, description="Unique name of the source; appears in logs and topics."
    )
    enabled: bool = Field(default=True, description="A disabled source is validated but not started.")
    tags: Sequence[TagConfig] = Field(default_factory=list, description="The tags this source reads.")
    max_clock_skew: Duration | None = Field(
        default=None,
        description=(
            "Readings stamped further than this from the agent's clock (a PLC clock that jumped) are "
            "handled by clock_skew_policy, so they cannot move the window grid; logged once per episode. "
            "Unset: off (sources stamping with the read time, recordings)."
        ),
    )
    clock_skew_policy: Literal["restamp", "drop"] = Field(
        default="restamp",
        description="restamp: keep the value, stamp it with the arrival time, quality uncertain. drop: leave it out.",
    )

    def security_warnings(self) -> list[str]:
        """Settings of this section that weaken security, each in words a person can act on.

        ``edge-agent check`` prints them and ``edge-agent run`` logs each once at start. Plugins override
        this; the default has nothing to say.
        """
        return []


class OutboxConfig(Model):
    """How a sink's outbox holds messages until the sink has delivered them (see ``agent.delivery.outbox``)."""

    durable: bool = Field(
        default=True,
        description="Keep the outbox on disk (SQLite in WAL mode, in the state directory) across restarts.",
    )
    max_bytes: ByteSize = Field(
        default=256 * 2**20,
        ge=1024,
        description="Cap on the outbox payload bytes; past it, the drop policy applies.",
    )
    policy: Literal["drop_oldest_by_priority"] = Field(
        default="drop_oldest_by_priority",
        description="What to drop at the cap: oldest readings, then oldest features, then status; alerts last.",
    )
    fsync: Literal["append", "always", "never"] = Field(
        default="append",
        description=(
            "When the durable outbox forces data to the disk. 'append': every append (a power loss loses no "
            "accepted message; acks commit with the next append, so one lost to a power loss or a kill -9 "
            "means a duplicate, visible by seq). 'always': appends and acks, each ack at once. 'never': the "
            "OS decides (survives kill -9 of the agent, not a power loss)."
        ),
    )
    batch: int = Field(default=200, ge=1, le=10_000, description="Most messages handed to the sink at once.")
    replay_rate: float = Field(
        default=2000.0,
        gt=0,
        description="Most backlog messages per second replayed after an outage or a restart; live ones pass.",
    )


class SinkConfig(Model):
    """Fields every sink has. Subclasses pin ``type`` to a Literal."""

    type: str
    name: ComponentName = Field(
        default="",
        pattern=r"^([A-Za-z0-9_][A-Za-z0-9_.\-]*)?$",
        description="Unique name of the sink (letters, digits, '_', '.', '-'); defaults to its type.",
    )
    enabled: bool = Field(default=True, description="A disabled sink is validated but not started.")
    kinds: list[str] = Field(
        default_factory=lambda: ["alert", "status", "features"],
        description="Which message kinds this sink receives: alert, status, features, readings.",
    )
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="Delivery buffer of this sink.")

    def security_warnings(self) -> list[str]:
        """Settings of this section that weaken security, each in words a person can act on.

        ``edge-agent check`` prints them and ``edge-agent run`` logs each once at start. Plugins override
        this; the default has nothing to say.
        """
        return []


def tag_catalog(sources: Sequence[SourceConfig]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{source: {tag: {"unit", "type"}}}`` of the configured tags; ``type`` is the tag's data type
    when its plugin has one (Modbus ``int16``...), else None (learnt from the first value)."""
    return {
        src.name: {
            t.name: {
                "unit": t.unit,
                "type": getattr(t, "type", None) if isinstance(getattr(t, "type", None), str) else None,
            }
            for t in src.tags
        }
        for src in sources
    }


def tag_units(sources: Sequence[SourceConfig]) -> dict[str, str]:
    """Engineering unit of every configured tag that has one, by tag name (from ``tag_catalog``)."""
    return {tag: d["unit"] for tags in tag_catalog(sources).values() for tag, d in tags.items() if d["unit"]}
