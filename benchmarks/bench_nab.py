"""Alert quality on NAB realKnownCause: replay each series through the real agent and score its alerts.

For each series: detect the sampling period from the data (median step); train a model with the code of
``edge-agent train`` on the first 15% of the series; replay the whole series through the real runtime
(replay source -> time windows -> features -> ONNX model -> alert state -> jsonl sink); score the raised
alerts after the training part against ``labels/combined_windows.json``:

* detected: label windows with a raised alert inside them;
* false/day: raised alerts outside every label window, per day of scored data;
* delay: mean time from a label window's start to its first raised alert.

Label windows that start inside the training part cannot be scored and are counted apart. ONE config
for all series: only the period, measured from each series, scales the windows (``LENGTH`` samples
every ``HOP`` samples). NAB timestamps are naive local times; they are read as UTC, labels too.

A second table puts the runtime's cost next to the bare library: onnxruntime scoring the same feature
rows in one batch, measured in the same run.

Run: ``python benchmarks/bench_nab.py [--data ../shared/data/nab] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(
    os.environ.get("BENCH_ROOT") or Path(__file__).resolve().parent.parent
)  # another checkout: before/after
sys.path.insert(0, str(ROOT))

from agent.config.load import load_config  # noqa: E402
from agent.learn.trainer import train_pipeline, training_windows  # noqa: E402
from agent.ops import logs  # noqa: E402
from agent.runtime.core import Runtime  # noqa: E402

TRAIN_SHARE = 0.15
LENGTH, HOP = 12, 1  # window length and hop, in samples of the series' own period
FEATURES = ["mean", "std", "min", "max", "slope"]

CONFIG = """
[agent]
id = "nab"
state_dir = "state"
log_level = "warning"
status_interval = "1000d"

[bus]
overflow = "block"      # a replay must not drop readings

[[sources]]
type = "replay"
name = "series"
path = "{data}"
at_end = "stop"
[[sources.tags]]
name = "value"

[[pipelines]]
name = "nab"
tags = ["value"]
features = {features}
{model}
[pipelines.window]
period = {period}
length = {length}
hop = {hop}

[[sinks]]
type = "jsonl"
path = "alerts.jsonl"
kinds = ["alert"]
fsync = false
[sinks.outbox]
durable = false
"""


def parse_ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@dataclass
class Result:
    name: str
    period: float
    rows: int
    windows: int
    untestable: int
    detected: int
    false_alerts: int
    days: float
    delays: list[float]
    to_point: list[float]  # first alert minus the labelled anomaly instant (negative: before it)
    run_s: float
    bare_s: float
    scored: int


def load_series(path: Path) -> list[float]:
    with open(path, newline="") as handle:
        return [parse_ts(r["timestamp"]) for r in csv.DictReader(handle)]


def evaluate(series: Path, labels: list[list[str]], points: list[str], work: Path) -> Result:
    ts = load_series(series)
    period = float(np.median(np.diff(ts)))
    split = int(len(ts) * TRAIN_SHARE)
    train_end = ts[split - 1]
    train_csv = work / "train.csv"
    lines = series.read_text().splitlines()
    train_csv.write_text("\n".join(lines[: split + 1]) + "\n")
    shape = {"period": period, "length": LENGTH * period, "hop": HOP * period}
    config = work / "edge.toml"

    def write(model: str) -> None:
        config.write_text(CONFIG.format(data=series, features=json.dumps(FEATURES), model=model, **shape))

    write("")
    pipe = load_config(config).pipelines[0]
    train_pipeline(pipe, train_csv, work / "model.onnx", None)
    write('model = "model.onnx"')
    cfg = load_config(config)
    runtime = Runtime(cfg, str(config))
    started = time.perf_counter()
    asyncio.run(runtime.run(asyncio.Event()))
    run_s = time.perf_counter() - started
    alerts = [json.loads(line) for line in (work / "alerts.jsonl").read_text().splitlines()]
    raised = [a["ts_ms"] / 1000 for a in alerts if a["state"] == "raised" and a["ts_ms"] / 1000 > train_end]
    spans = [(parse_ts(a), parse_ts(b)) for a, b in labels]
    scored = [(a, b) for a, b in spans if a > train_end]
    marks = [parse_ts(p) for p in points]
    detected, delays, to_point = 0, [], []
    for a, b in scored:
        inside = [t for t in raised if a <= t <= b]
        if inside:
            detected += 1
            delays.append(min(inside) - a)
            to_point += [min(inside) - m for m in marks if a <= m <= b]
    false_alerts = sum(1 for t in raised if not any(a <= t <= b for a, b in spans))
    bare_s, n = _bare_scoring(pipe, series, work / "model.onnx")
    return Result(
        series.stem,
        period,
        len(ts),
        len(scored),
        len(spans) - len(scored),
        detected,
        false_alerts,
        (ts[-1] - train_end) / 86400,
        delays,
        to_point,
        run_s,
        bare_s,
        n,
    )


def _bare_scoring(pipe: object, series: Path, model: Path) -> tuple[float, int]:
    """Seconds onnxruntime alone takes to score the series' feature rows in one batch."""
    import onnxruntime as ort

    found = asyncio.run(training_windows(pipe, series))  # type: ignore[arg-type]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = found.x.astype(np.float32)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        session.run(None, {name: x})
        best = min(best, time.perf_counter() - started)
    return best, int(x.shape[0])


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "nab")
    parser.add_argument("--quick", action="store_true", help="only the three shortest series")
    args = parser.parse_args()
    logs.configure("error", "json")
    windows = json.loads((args.data / "labels" / "combined_windows.json").read_text())
    points = json.loads((args.data / "labels" / "combined_labels.json").read_text())
    files = sorted((args.data / "data" / "realKnownCause").glob("*.csv"))
    if args.quick:
        files = sorted(files, key=lambda p: p.stat().st_size)[:3]
    results = []
    for path in files:
        with tempfile.TemporaryDirectory() as tmp:
            key = f"realKnownCause/{path.name}"
            results.append(evaluate(path, windows[key], points[key], Path(tmp)))
        print(f"  done {path.name}", file=sys.stderr)
    print(
        f"\nOne config: {len(FEATURES)} features ({', '.join(FEATURES)}) over windows of {LENGTH} samples "
        f"every {HOP}; model trained on the first {TRAIN_SHARE:.0%}; the default alert rule of the code measured.\n"
    )
    print(
        "| series | period | label windows scored | detected | false alerts / day | mean delay "
        "from window start | first alert vs labelled instant |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    tot_w = tot_d = tot_f = 0
    tot_days = 0.0
    all_delays: list[float] = []
    all_points: list[float] = []
    for r in results:
        extra = f" (+{r.untestable} in training part)" if r.untestable else ""
        delay = hours(statistics.mean(r.delays)) if r.delays else "-"
        point = hours(statistics.mean(r.to_point)) if r.to_point else "-"
        print(
            f"| {r.name} | {r.period / 60:g} min | {r.windows}{extra} | {r.detected} | "
            f"{r.false_alerts / r.days:.2f} | {delay} | {point} |"
        )
        tot_w, tot_d, tot_f, tot_days = (
            tot_w + r.windows,
            tot_d + r.detected,
            tot_f + r.false_alerts,
            tot_days + r.days,
        )
        all_delays += r.delays
        all_points += r.to_point
    mean_delay = hours(statistics.mean(all_delays)) if all_delays else "-"
    mean_point = hours(statistics.mean(all_points)) if all_points else "-"
    print(
        f"| **all** | | {tot_w} | {tot_d} ({tot_d / max(tot_w, 1):.0%}) | {tot_f / tot_days:.2f} | {mean_delay} | {mean_point} |"
    )
    print("\n| series | rows | runtime replay | rows/s | bare ORT batch score | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.name} | {r.rows} | {r.run_s:.2f} s | {r.rows / r.run_s:,.0f} | "
            f"{r.bare_s * 1000:.2f} ms ({r.scored} rows) | {r.run_s / r.bare_s:,.0f} |"
        )


if __name__ == "__main__":
    main()
