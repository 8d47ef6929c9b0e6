"""Cost of one /metrics scrape: ``agent.ops.metrics.render`` (prometheus-client) on a snapshot shaped like
a gateway with many tags, against prometheus-client's own ``generate_latest`` on a registry holding the same
samples as plain library gauges (the bare library, measured in the same run).

    python benchmarks/bench_metrics.py [--tags 1000] [--repeat 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from agent.ops.metrics import (
    MetricsSnapshot,
    PipelineMetrics,
    SinkMetrics,
    SourceMetrics,
    TagMetrics,
    render,
)


def snapshot(tags: int) -> MetricsSnapshot:
    return MetricsSnapshot(
        info={"agent": "bench", "version": "0", "config_hash": "x"},
        sources=[SourceMetrics(f"plc{i}", "up", 1000, 10.0) for i in range(10)],
        tags=[TagMetrics(f"t{i}", f"plc{i % 10}", 0.5) for i in range(tags)],
        sinks=[SinkMetrics("mqtt", "up", 3, 300, 1 << 20, {"readings": 1})],
        pipelines=[PipelineMetrics(f"p{i}") for i in range(10)],
    )


def bare_registry(tags: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    age = Gauge("edge_agent_tag_last_good_age_seconds", "age", ["tag", "source"], registry=registry)
    for i in range(tags):
        age.labels(f"t{i}", f"plc{i % 10}").set(0.5)
    return registry


def timed(fn: object, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]  # a zero-argument callable
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    snap, registry = snapshot(args.tags), bare_registry(args.tags)
    ours = timed(lambda: render(snap, 0.001), args.repeat)
    bare = timed(lambda: generate_latest(registry), args.repeat)
    for name, xs in (("edge-agent render", ours), ("bare prometheus-client", bare)):
        ms = sorted(x * 1000 for x in xs)
        print(f"{name:<24} min {ms[0]:.2f} ms  median {statistics.median(ms):.2f} ms  max {ms[-1]:.2f} ms")
    print(f"ratio (median, ours / bare): {statistics.median(ours) / statistics.median(bare):.2f}")


if __name__ == "__main__":
    main()
