"""Alerts on the simulator's faults: the sample scenario at 1 Hz through the real runtime, default config.

The built-in scenario (``plugins/simulator/sample_scenario.toml``: 30 min of normal operation, then a
spike, a closing valve, cavitation, a stuck sensor, a dropout, a PLC restart and bearing wear) is
sampled once a second straight from the machine model (no servers: the PLC restart is a gap in the
rows, a dropout empty cells), written as a CSV, trained on with the code of ``edge-agent train`` up to
2 minutes before the first fault (as ``edge-agent demo`` does), and replayed through the runtime with
the DEFAULT window and alert settings (every feature, default length and hop). Per fault: whether an
alert was raised between its start and one window length after its end, and how long after its start;
outside the faults, how many alerts were raised and the share of time in alert.

Run: ``python benchmarks/bench_sim.py``; ``BENCH_ROOT=/path/to/checkout`` measures another checkout.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(os.environ.get("BENCH_ROOT") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

from agent.config.load import load_config  # noqa: E402
from agent.learn.trainer import train_pipeline  # noqa: E402
from agent.ops import logs  # noqa: E402
from agent.runtime.core import Runtime  # noqa: E402
from plugins.simulator.machine import Machine  # noqa: E402
from plugins.simulator.scenario import load_scenario  # noqa: E402

T0 = 1_700_000_000.0

CONFIG = """
[agent]
id = "sim"
state_dir = "state"
log_level = "warning"
status_interval = "1000d"
[bus]
overflow = "block"
[[sources]]
type = "replay"
name = "pump"
path = "{data}"
at_end = "stop"
{tags}
[[pipelines]]
name = "pump"
tags = {tag_list}
{model}
[[sinks]]
type = "jsonl"
path = "alerts.jsonl"
kinds = ["alert"]
fsync = false
[sinks.outbox]
durable = false
"""


def write_csv(machine: Machine, names: list[str], start: float, end: float, path: Path) -> None:
    lines = ["timestamp," + ",".join(names)]
    for t in range(int(start), int(end)):
        if machine.plc_down(t):
            continue
        values = machine.sample(float(t))
        cells = ["" if math.isnan(values[n]) else f"{values[n]:.6g}" for n in names]
        lines.append(f"{T0 + t:.0f}," + ",".join(cells))
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    logs.configure("error", "json")
    scenario = load_scenario()
    machine = Machine(scenario)
    names = list(machine.names)
    first = min(f.at for f in scenario.faults)
    end = max(f.end for f in scenario.faults) + 300.0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_csv(machine, names, 0, first - 120, work / "train.csv")
        write_csv(machine, names, 0, end, work / "all.csv")
        tags = "\n".join(f'[[sources.tags]]\nname = "{n}"' for n in names)

        def config(data: str, model: str) -> Path:
            path = work / "edge.toml"
            path.write_text(CONFIG.format(data=data, tags=tags, tag_list=json.dumps(names), model=model))
            return path

        pipe = load_config(config(str(work / "train.csv"), "")).pipelines[0]
        train_pipeline(pipe, work / "train.csv", work / "model.onnx", None)
        cfg = load_config(config(str(work / "all.csv"), 'model = "model.onnx"'))
        asyncio.run(Runtime(cfg, str(work / "edge.toml")).run(asyncio.Event()))
        out = work / "alerts.jsonl"
        alerts = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    w = cfg.pipelines[0].window
    events = [(a["ts_ms"] / 1000 - T0, a["state"]) for a in alerts]
    raised = [t for t, s in events if s == "raised"]
    spans = [(f.at, f.end + w.length) for f in scenario.faults]
    rule = getattr(cfg.pipelines[0].alert, "rule", "consecutive")
    print(f"Window {w.length:g} s every {w.hop_s:g} s, rule {rule}; code from {ROOT}\n")
    print("| fault | at | detected | delay |")
    print("|---|---:|---|---:|")
    for f, (a, b) in zip(scenario.faults, spans, strict=True):
        inside = [t for t in raised if a <= t <= b]
        delay = f"{min(inside) - a:.0f} s" if inside else "-"
        print(f"| {f.type} | {f.at / 60:.0f} min | {'yes' if inside else 'no'} | {delay} |")
    false = [t for t in raised if first - 120 <= t and not any(a <= t <= b for a, b in spans)]
    print(f"\nAlerts raised outside every fault (after training): {len(false)}")
    print(f"Alerts raised during training data: {sum(1 for t in raised if t < first - 120)}")
    open_at, outside = None, 0.0
    for t, state in [*events, (end, "cleared")]:
        if state == "raised" and open_at is None:
            open_at = t
        elif state == "cleared" and open_at is not None:
            outside += sum(_overlap_outside(open_at, t, spans))
            open_at = None
    print(f"Time in alert outside the faults (after training): {outside:.0f} s of {end - first + 120:.0f} s")


def _overlap_outside(a: float, b: float, spans: list[tuple[float, float]]) -> list[float]:
    """Seconds of (a, b) outside every span, per second (spans may overlap)."""
    return [1.0 for t in range(int(a), int(b)) if not any(lo <= t <= hi for lo, hi in spans)]


if __name__ == "__main__":
    main()
