"""Core throughput: synthetic readings for 1,000 tags -> windows -> features -> ONNX -> null sink.

Runs the real ``Runtime`` (bus, pipeline loop, executor scoring, outbox append, stdout sink writing to
/dev/null); only the source is replaced by a producer that puts ready-made batches on the bus, so the
figure is the agent's own cost per reading. Baselines measured in the same run: RSS of a bare import
of the dependencies, and raw onnxruntime on the same model and the same batch sizes.

    python benchmarks/bench_core.py [--quick] [--tags 1000] [--seconds 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BARE_IMPORT = (
    "import numpy, onnxruntime, pydantic, prometheus_client, structlog, resource; "
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


ONE_SESSION = (
    "import numpy, onnxruntime as ort, pydantic, prometheus_client, structlog, resource, sys; "
    "o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.enable_cpu_mem_arena = False; "
    "s = ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider']); "
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def bare_rss_kib(*script: str) -> int:
    code = script[0] if script else BARE_IMPORT
    out = subprocess.run(
        [sys.executable, "-c", code, *script[1:]], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def write_config(folder: Path, tags: int, per_pipeline: int, features: list[str]) -> Path:
    from agent.stream.features import feature_names
    from tests.onnx_models import zscore_model

    lines = [
        '[agent]\nid = "bench"\nstate_dir = "state"\nstatus_interval = "1h"\nlog_level = "warning"',
        '[bus]\ncapacity = 16000\noverflow = "block"',
    ]
    for p in range(tags // per_pipeline):
        names = [f"t{p * per_pipeline + i}" for i in range(per_pipeline)]
        fnames = feature_names(names, features)
        zscore_model(folder / f"m{p}.onnx", fnames, [0.0] * len(fnames), [1.0] * len(fnames), threshold=1e9)
        lines.append(
            f'[[pipelines]]\nname = "p{p}"\ntags = {json.dumps(names)}\nfeatures = {json.dumps(features)}\n'
            f'model = "m{p}.onnx"\n[pipelines.window]\nlength = "10s"\nperiod = "1s"'
        )
    lines.append('[[sinks]]\ntype = "stdout"\npretty = false\nkinds = ["alert", "features"]')
    # tags must exist in a source: a replay source that is never started (enabled = false)
    src = ['[[sources]]\ntype = "replay"\nname = "synthetic"\nenabled = false\npath = "none.csv"']
    src += [f'[[sources.tags]]\nname = "t{i}"' for i in range(tags)]
    path = folder / "bench.toml"
    path.write_text("\n\n".join(lines[:2] + src + lines[2:]) + "\n")
    return path


async def drive(config: Path, tags: int, seconds: int, rate_hz: float) -> dict[str, float]:
    from agent.config.load import load_config
    from agent.records import Reading
    from agent.runtime.core import Runtime

    cfg = load_config(config, {})
    runtime = Runtime(cfg, str(config))
    stop = asyncio.Event()
    rng = np.random.default_rng(0)
    names = [f"t{i}" for i in range(tags)]
    t0 = 1_700_000_000.0
    steps = int(seconds * rate_hz)
    values = rng.normal(size=(64, tags)).tolist()
    task = asyncio.create_task(runtime.run(stop), name="runtime")
    await runtime.ready.wait()
    start = time.perf_counter()
    cpu0 = time.process_time()
    for k in range(steps):
        ts = t0 + k / rate_hz
        row = values[k % 64]
        await runtime.bus.put("synthetic", [Reading(n, ts, row[i]) for i, n in enumerate(names)])
    stop.set()  # the runtime drains the bus through every stage and flushes the sink before returning
    await task
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    windows = sum(p.stats.scored for p in runtime.pipelines)
    return {
        "readings": steps * tags,
        "seconds": elapsed,
        "cpu_s": cpu,
        "windows": windows,
        "features_per_window": len(runtime.pipelines[0].names),
    }


def raw_onnx(config: Path, windows: int, features: int) -> float:
    """Seconds raw onnxruntime needs for the same number of rows, one row per call."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(config.parent / "m0.onnx"), opts, providers=["CPUExecutionProvider"])
    x = np.zeros((1, features), dtype=np.float32)
    start = time.perf_counter()
    for _ in range(windows):
        session.run(None, {"features": x})
    return time.perf_counter() - start


def child(config: str, tags: int, seconds: int, rate: float) -> None:
    """Runs in a fresh process so its peak RSS is the agent's, not the model builder's (onnx)."""
    real_stdout = sys.stdout
    with open(os.devnull, "w") as devnull:  # the stdout sink writes here: a null sink
        sys.stdout = devnull
        result = asyncio.run(drive(Path(config), tags, seconds, rate))
        sys.stdout = real_stdout
    result["peak_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--per-pipeline", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=600, help="event time to simulate")
    parser.add_argument("--rate", type=float, default=1.0, help="readings per tag per second of event time")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.tags, args.seconds, args.rate)
        return
    if args.quick:
        args.seconds = 120
    features = ["mean", "std", "min", "max", "rms", "slope", "last"]
    bare = bare_rss_kib()
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), args.tags, args.per_pipeline, features)
        cmd = [sys.executable, __file__, "--child", str(config), "--tags", str(args.tags)]
        cmd += ["--seconds", str(args.seconds), "--rate", str(args.rate)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        onnx_s = raw_onnx(config, result["windows"], result["features_per_window"])
        one_session = bare_rss_kib(ONE_SESSION, str(Path(tmp) / "m0.onnx"))
    peak = result["peak_kib"]
    readings_s = result["readings"] / result["seconds"]
    rows = [
        ("tags / pipelines", f"{args.tags} / {args.tags // args.per_pipeline}"),
        ("readings pushed", f"{result['readings']:,}"),
        ("readings/s (wall)", f"{readings_s:,.0f}"),
        ("readings/s per CPU-second", f"{result['readings'] / result['cpu_s']:,.0f}"),
        ("windows scored", f"{result['windows']:,} ({result['features_per_window']} features each)"),
        ("windows scored/s", f"{result['windows'] / result['seconds']:,.0f}"),
        (
            "us per window (all stages, amortised)",
            f"{1e6 * result['seconds'] / max(result['windows'], 1):,.0f}",
        ),
        ("raw onnxruntime us per row (same model)", f"{1e6 * onnx_s / max(result['windows'], 1):,.0f}"),
        ("peak RSS MiB", f"{peak / 1024:,.1f}"),
        ("bare import of dependencies RSS MiB", f"{bare / 1024:,.1f}"),
        ("RSS over bare import MiB", f"{(peak - bare) / 1024:,.1f}"),
        ("bare import + one raw onnxruntime session MiB", f"{one_session / 1024:,.1f}"),
        ("RSS over bare import + one session MiB", f"{(peak - one_session) / 1024:,.1f}"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
