"""The scenario file of ``edge-agent simulate``: the machine, the signals it serves, the faults it injects.

A scenario is TOML validated by pydantic with unknown keys refused (``agent.config.base.Model``). Every
time in it (``at``, ``duration``, ``ramp``) is *scenario time*: seconds since the simulator started,
multiplied by the fast-forward ``speed``. The physics that turns a scenario into values lives in
``plugins.simulator.machine``.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from agent.config.base import TAG_NAME, Duration, Model
from agent.errors import ConfigError, ConfigIssue

Quantity = Literal["speed", "motor_current", "vibration_rms", "bearing_temp", "pressure", "flow"]

# unit, default noise (one standard deviation, in that unit), description
QUANTITIES: dict[str, tuple[str, float, str]] = {
    "speed": ("rpm", 2.0, "pump shaft speed, follows the load cycle"),
    "motor_current": ("A", 0.3, "motor current, follows the hydraulic load"),
    "vibration_rms": ("mm/s", 0.05, "bearing housing vibration velocity RMS, grows with speed and wear"),
    "bearing_temp": ("degC", 0.1, "drive-end bearing temperature, lags the load (first order)"),
    "pressure": ("bar", 0.03, "discharge pressure, grows with speed squared and with a closing valve"),
    "flow": ("m3/h", 0.8, "flow, proportional to speed and to the valve opening"),
}


class MachineConfig(Model):
    """Physical constants of the simulated pump; the defaults describe a 22 kW centrifugal pump."""

    speed_rpm: float = Field(default=1480.0, gt=0, description="Speed at full load.")
    flow_m3h: float = Field(default=120.0, gt=0, description="Flow at full speed with the valve open.")
    head_bar: float = Field(default=4.0, gt=0, description="Pressure rise at full speed with the valve open.")
    static_bar: float = Field(default=1.0, ge=0, description="Pressure at zero speed (suction side).")
    current_idle_a: float = Field(default=8.0, ge=0, description="Motor current with no hydraulic load.")
    current_full_a: float = Field(default=42.0, gt=0, description="Motor current at full load.")
    ambient_c: float = Field(default=25.0, description="Ambient temperature.")
    bearing_rise_c: float = Field(default=30.0, ge=0, description="Bearing temperature rise at full load.")
    bearing_tau: Duration = Field(
        default=600.0, gt=0, description="Time constant of the bearing temperature."
    )
    vibration_mm_s: float = Field(default=1.8, gt=0, description="Vibration RMS at full speed, new bearings.")
    cycle: Duration = Field(default=1200.0, gt=0, description="Period of the load cycle.")
    load_min: float = Field(
        default=0.55, gt=0, le=1, description="Lowest speed in the cycle, fraction of full."
    )
    load_max: float = Field(
        default=1.0, gt=0, le=1.2, description="Highest speed in the cycle, fraction of full."
    )

    @model_validator(mode="after")
    def _load_order(self) -> MachineConfig:
        if self.load_min > self.load_max:
            raise ValueError("load_min must not exceed load_max")
        return self


class SignalConfig(Model):
    """One served signal: an OPC UA variable and a float32 pair of Modbus holding registers."""

    quantity: Quantity = Field(description="Physical quantity: " + ", ".join(QUANTITIES) + ".")
    name: str | None = Field(
        default=None, pattern=TAG_NAME, description="Signal name; default: the quantity."
    )
    noise: float | None = Field(
        default=None, ge=0, description="Noise standard deviation; default per quantity."
    )

    @property
    def key(self) -> str:
        return self.name or self.quantity

    @property
    def unit(self) -> str:
        return QUANTITIES[self.quantity][0]

    @property
    def noise_std(self) -> float:
        return QUANTITIES[self.quantity][1] if self.noise is None else self.noise


class _Fault(Model):
    at: Duration = Field(description="Scenario time the fault starts.")
    duration: Duration = Field(default=60.0, ge=0, description="How long it lasts.")

    @property
    def end(self) -> float:
        return self.at + self.duration

    def active(self, t: float) -> bool:
        return self.at <= t < self.end

    def describe(self) -> str:
        return self.type  # type: ignore[attr-defined]  # every subclass declares its Literal type


class BearingWear(_Fault):
    """Wear grows linearly over ``duration`` and then stays: vibration and bearing temperature rise."""

    type: Literal["bearing_wear"]
    severity: float = Field(default=1.0, gt=0, description="1.0 triples vibration and adds wear_heat_c.")
    wear_heat_c: float = Field(default=12.0, ge=0, description="Bearing temperature added at severity 1.")

    def describe(self) -> str:
        return f"bearing wear drift to severity {self.severity} over {self.duration:g}s (permanent)"


class ValveClosing(_Fault):
    """A discharge valve closes over ``ramp`` to ``closed_to`` and reopens at the end."""

    type: Literal["valve_closing"]
    ramp: Duration = Field(default=30.0, ge=0, description="Time to close.")
    closed_to: float = Field(default=0.4, gt=0, le=1, description="Opening once closed (1 = fully open).")

    def describe(self) -> str:
        return f"valve closing to {self.closed_to:.0%} open over {self.ramp:g}s, for {self.duration:g}s"


class Cavitation(_Fault):
    """Vapour bubbles: flow drops, pressure and current get noisy, vibration jumps."""

    type: Literal["cavitation"]
    severity: float = Field(default=1.0, gt=0, description="1.0: flow -15%, vibration +2.5x its nominal.")

    def describe(self) -> str:
        return f"cavitation at severity {self.severity} for {self.duration:g}s"


class StuckSensor(_Fault):
    """One signal freezes at the value it had when the fault started."""

    type: Literal["stuck_sensor"]
    signal: str = Field(description="Name of the signal that freezes.")

    def describe(self) -> str:
        return f"sensor {self.signal} stuck for {self.duration:g}s"


class Spike(_Fault):
    """One signal is multiplied by ``factor`` for ``duration`` (default one second)."""

    type: Literal["spike"]
    signal: str = Field(description="Name of the signal that spikes.")
    factor: float = Field(default=2.0, description="Multiplier applied to the value.")
    duration: Duration = Field(default=1.0, ge=0, description="How long the spike lasts.")

    def describe(self) -> str:
        return f"spike x{self.factor:g} on {self.signal} for {self.duration:g}s"


class Dropout(_Fault):
    """Signals stop answering: OPC UA reads give BadNoCommunication, Modbus reads exception 0x0B."""

    type: Literal["dropout"]
    signals: list[str] = Field(default_factory=list, description="Signals that drop out; empty: all.")

    def describe(self) -> str:
        return f"dropout of {', '.join(self.signals) or 'all signals'} for {self.duration:g}s"


class PlcRestart(_Fault):
    """Both servers close their ports and connections for ``duration``, then come back fresh."""

    type: Literal["plc_restart"]
    duration: Duration = Field(default=10.0, ge=0, description="How long the servers are away.")

    def describe(self) -> str:
        return f"PLC restart: servers away for {self.duration:g}s"


Fault = Annotated[
    BearingWear | ValveClosing | Cavitation | StuckSensor | Spike | Dropout | PlcRestart,
    Field(discriminator="type"),
]


def _default_signals() -> list[SignalConfig]:
    return [SignalConfig(quantity=q) for q in QUANTITIES]


class Scenario(Model):
    """A whole scenario file."""

    name: str = Field(default="pump1", pattern=TAG_NAME, description="Machine name; the OPC UA object name.")
    description: str = Field(default="", description="Free text printed at start.")
    seed: int = Field(default=1, description="Seed of the noise; same seed, same values at the same time.")
    update_hz: float = Field(default=10.0, gt=0, le=100, description="How often served values change.")
    modbus_base_address: int = Field(
        default=0,
        ge=0,
        le=65000,
        description="Holding register of the first signal; each takes two (float32).",
    )
    machine: MachineConfig = Field(default_factory=MachineConfig, description="Physical constants.")
    signals: list[SignalConfig] = Field(
        default_factory=_default_signals, min_length=1, description="Served signals, in register order."
    )
    faults: list[Fault] = Field(default_factory=list, description="Scheduled faults.")

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        names = [s.key for s in self.signals]
        if len(set(names)) != len(names):
            raise ValueError(f"signal names must be unique: {names}")
        for i, fault in enumerate(self.faults):
            refs = [fault.signal] if isinstance(fault, StuckSensor | Spike) else []
            refs += fault.signals if isinstance(fault, Dropout) else []
            for ref in refs:
                if ref not in names:
                    raise ValueError(f"faults[{i}] names signal {ref!r}; the signals are {', '.join(names)}")
        return self


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Validate scenario TOML text; every problem is reported with its key path.

    Raises:
        ConfigError: the TOML does not parse or does not validate.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigIssue("", f"not valid TOML: {exc}")]) from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        issues = [
            ConfigIssue(".".join(str(p) for p in err["loc"]), err["msg"])
            for err in exc.errors(include_url=False)
        ]
        raise ConfigError(source, issues) from exc


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Load a scenario file, or the built-in ``sample_scenario.toml`` when ``path`` is None."""
    if path is None:
        text = resources.files("plugins.simulator").joinpath("sample_scenario.toml").read_text("utf-8")
        return parse_scenario(text, "sample_scenario.toml")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [ConfigIssue("", f"cannot read the scenario: {exc.strerror}")]) from exc
    return parse_scenario(text, str(path))
