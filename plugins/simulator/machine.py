"""Physics of the simulated pump: pure functions of scenario time, no clock, no I/O.

``Machine(scenario).sample(t)`` gives every signal's value at scenario time ``t`` (seconds); the same
scenario, seed and ``t`` always give the same values, so tests compare what a client reads with it.

The model, per instant:

* load ``r`` (speed as a fraction of full) follows a load cycle: two sinusoids between ``load_min`` and
  ``load_max``;
* valve opening ``g`` is 1 unless a ``valve_closing`` fault ramps it down;
* flow = ``flow_m3h * r * g`` (affinity law: flow ~ speed), minus 15% per unit of cavitation;
* pressure = ``static + head * r² * (1 + 0.6 (1 - g))`` (head ~ speed²; a closing valve raises it);
* hydraulic load ``h`` = relative flow x relative pressure rise; current = ``idle + (full - idle)
  (0.2 r + 0.8 h)`` (current follows load);
* bearing temperature = ambient + ``bearing_rise * r`` passed through a first-order lag of time constant
  ``bearing_tau``, plus the wear heat through the same lag. Both are sums of sinusoids and ramps, whose
  lagged forms are closed-form, so the value at ``t`` needs no history (the machine has been running
  for ever at ``t = 0``);
* vibration RMS = ``vib * (0.4 + 0.6 r²) * (1 + 2 wear)`` plus 2.5 ``vib`` per unit of cavitation.

Noise is Gaussian per signal, drawn from a counter-based generator keyed by (seed, signal, tick) with
``update_hz`` ticks per second, so it is reproducible at any ``t`` without state. Sensor faults apply
last: a stuck sensor repeats its value from the fault start, a spike multiplies, a dropout gives NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from plugins.simulator.scenario import (
    BearingWear,
    Cavitation,
    Dropout,
    Fault,
    PlcRestart,
    Scenario,
    Spike,
    StuckSensor,
    ValveClosing,
)

_MASK = (1 << 64) - 1
_HARMONICS = ((0.8, 1.0, 0.0), (0.2, 3.7, 1.3))  # (weight, frequency x the cycle's, phase) of the load


def _mix(x: int) -> int:
    """splitmix64 finaliser: a well-spread 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def gauss(seed: int, stream: int, tick: int) -> float:
    """A standard normal draw that depends only on its three keys (Box-Muller on two hashes)."""
    key = _mix(_mix(_mix(seed & _MASK) ^ stream) ^ (tick & _MASK))
    u1 = ((key >> 11) + 0.5) / 2.0**53
    u2 = ((_mix(key) >> 11) + 0.5) / 2.0**53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def _lagged_ramp(s: float, tau: float) -> float:
    """First-order lag (time constant ``tau``) of a unit-slope ramp starting at ``s = 0``."""
    return 0.0 if s <= 0 else s - tau * (1.0 - math.exp(-s / tau))


@dataclass(frozen=True)
class FaultEvent:
    """A fault starting or ending at scenario time ``t``."""

    t: float
    edge: Literal["start", "end"]
    fault: Fault

    def describe(self) -> str:
        verb = "inject" if self.edge == "start" else "end"
        return f"{verb} {self.fault.type}: {self.fault.describe()}"


class Machine:
    """The pump of a scenario; ``sample(t)`` is pure."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.names = [s.key for s in scenario.signals]
        self._faults = scenario.faults

    # --- load and its lagged form -----------------------------------------------------------------
    def _load(self, t: float) -> float:
        m = self.scenario.machine
        mid, amp = (m.load_max + m.load_min) / 2, (m.load_max - m.load_min) / 2
        w = 2 * math.pi / m.cycle
        return mid + amp * sum(a * math.sin(k * w * t + p) for a, k, p in _HARMONICS)

    def _lagged_load(self, t: float) -> float:
        m = self.scenario.machine
        mid, amp = (m.load_max + m.load_min) / 2, (m.load_max - m.load_min) / 2
        w, tau = 2 * math.pi / m.cycle, m.bearing_tau
        total = mid
        for a, k, p in _HARMONICS:
            wt = k * w * tau
            total += amp * a * math.sin(k * w * t + p - math.atan(wt)) / math.sqrt(1 + wt * wt)
        return total

    # --- fault state -------------------------------------------------------------------------------
    def wear(self, t: float) -> float:
        """Bearing wear level at ``t`` (0 = new; severity once a wear fault has run its course)."""
        total = 0.0
        for f in self._faults:
            if isinstance(f, BearingWear) and t >= f.at:
                total += f.severity * (min(1.0, (t - f.at) / f.duration) if f.duration > 0 else 1.0)
        return total

    def _wear_heat(self, t: float) -> float:
        tau = self.scenario.machine.bearing_tau
        total = 0.0
        for f in self._faults:
            if isinstance(f, BearingWear) and t > f.at:
                gain = f.severity * f.wear_heat_c
                if f.duration <= 0:
                    total += gain * (1.0 - math.exp(-(t - f.at) / tau))
                else:
                    ramp = _lagged_ramp(t - f.at, tau) - _lagged_ramp(t - f.end, tau)
                    total += gain * ramp / f.duration
        return total

    def valve(self, t: float) -> float:
        """Valve opening at ``t``, 1 = fully open."""
        g = 1.0
        for f in self._faults:
            if isinstance(f, ValveClosing) and f.active(t):
                progress = min(1.0, (t - f.at) / f.ramp) if f.ramp > 0 else 1.0
                g = min(g, 1.0 - (1.0 - f.closed_to) * progress)
        return g

    def cavitation(self, t: float) -> float:
        return sum(f.severity for f in self._faults if isinstance(f, Cavitation) and f.active(t))

    def plc_down(self, t: float) -> bool:
        """Whether a ``plc_restart`` fault keeps the servers away at ``t``."""
        return any(isinstance(f, PlcRestart) and f.active(t) for f in self._faults)

    def events(self, t0: float, t1: float) -> list[FaultEvent]:
        """Fault starts and ends in ``(t0, t1]``, in time order (the simulator logs them)."""
        found = [FaultEvent(f.at, "start", f) for f in self._faults if t0 < f.at <= t1]
        found += [FaultEvent(f.end, "end", f) for f in self._faults if t0 < f.end <= t1]
        return sorted(found, key=lambda e: (e.t, e.edge != "end"))

    # --- values ------------------------------------------------------------------------------------
    def physical(self, t: float) -> dict[str, float]:
        """True value of every quantity plus sensor noise, before sensor faults."""
        m = self.scenario.machine
        r, g, cav, wear = self._load(t), self.valve(t), self.cavitation(t), self.wear(t)
        flow_rel = r * g * max(0.0, 1.0 - 0.15 * cav)
        rise_rel = r * r * (1.0 + 0.6 * (1.0 - g))
        quantities = {
            "speed": m.speed_rpm * r,
            "flow": m.flow_m3h * flow_rel,
            "pressure": m.static_bar + m.head_bar * rise_rel,
            "motor_current": m.current_idle_a
            + (m.current_full_a - m.current_idle_a) * (0.2 * r + 0.8 * flow_rel * rise_rel),
            "bearing_temp": m.ambient_c + m.bearing_rise_c * self._lagged_load(t) + self._wear_heat(t),
            "vibration_rms": m.vibration_mm_s * ((0.4 + 0.6 * r * r) * (1.0 + 2.0 * wear) + 2.5 * cav),
        }
        noisy = {"vibration_rms": 4.0, "pressure": 5.0, "motor_current": 3.0, "flow": 3.0}
        tick = math.floor(t * self.scenario.update_hz)
        out: dict[str, float] = {}
        for i, sig in enumerate(self.scenario.signals):
            std = sig.noise_std * (1.0 + noisy.get(sig.quantity, 0.0) * cav)
            out[sig.key] = quantities[sig.quantity] + std * gauss(self.scenario.seed, i, tick)
        return out

    def sample(self, t: float) -> dict[str, float]:
        """Every signal's value at scenario time ``t``; NaN for a signal in dropout."""
        values = self.physical(t)
        for f in self._faults:
            if not f.active(t):
                continue
            if isinstance(f, StuckSensor):
                values[f.signal] = self.physical(f.at)[f.signal]
            elif isinstance(f, Spike):
                values[f.signal] *= f.factor
            elif isinstance(f, Dropout):
                for name in f.signals or self.names:
                    values[name] = math.nan
        return values
