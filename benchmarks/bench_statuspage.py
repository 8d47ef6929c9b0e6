"""What the status page costs the agent: CPU with 1,000 tags while two browsers poll it, vs nobody watching.

Runs the real agent (``edge-agent run``) as a subprocess: a replay source of 1,000 tags at one row a
second in real time (1,000 readings/s), 10 pipelines of 100 tags with ONNX models, a stdout sink to
/dev/null. Its CPU time is read from /proc in three phases of the same run: idle, two clients polling
exactly as the page does (``/api/status`` every 2 s, ``/api/series?since=...`` every 5 s, ``/api/models``
once), idle again. The clients run in this process, so their own CPU is not counted.

    python benchmarks/bench_statuspage.py [--quick] [--tags 1000] [--seconds 60]

Last run (2-core machine shared with other work, Python 3.11, --seconds 60): nobody watching 0.60 then
0.48 % of one core, two pages polling 0.87 %: the page costs 0.33 % of one core (ratio 1.6 over a very
cheap idle agent); an /api/status body of 117 kB for 1,000 tags; feeding the buffers 0.11 us per reading
(0.011 % of a core at 1,000 readings/s). A --quick run gave 0.38 % for the page.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TICK = os.sysconf("SC_CLK_TCK")


def write_config(folder: Path, tags: int, per_pipeline: int, port: int) -> Path:
    from agent.stream.features import feature_names
    from tests.onnx_models import zscore_model

    names = [f"t{i:04d}" for i in range(tags)]
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(120, tags))
    lines = ["timestamp," + ",".join(names)]
    lines += [f"{1_700_000_000 + k}," + ",".join(f"{v:.4f}" for v in row) for k, row in enumerate(rows)]
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    parts = [
        f'[agent]\nid = "bench"\nstate_dir = "state"\nlog_level = "warning"\n[health]\nport = {port}',
        '[[sources]]\ntype = "replay"\nname = "plc"\npath = "data.csv"\nspeed = 1\nat_end = "loop"',
    ]
    parts += [f'[[sources.tags]]\nname = "{n}"\nunit = "bar"' for n in names]
    features = ["mean", "std"]
    for p in range(tags // per_pipeline):
        group = names[p * per_pipeline : (p + 1) * per_pipeline]
        fnames = feature_names(group, features)
        zscore_model(folder / f"m{p}.onnx", fnames, [0.0] * len(fnames), [1.0] * len(fnames), threshold=1e9)
        parts.append(
            f'[[pipelines]]\nname = "p{p}"\ntags = {json.dumps(group)}\nfeatures = {json.dumps(features)}\n'
            f'model = "m{p}.onnx"\n[pipelines.window]\nlength = "10s"\nhop = "5s"\nperiod = "1s"'
        )
    parts.append('[[sinks]]\ntype = "stdout"\npretty = false\nkinds = ["alert"]')
    path = folder / "bench.toml"
    path.write_text("\n\n".join(parts) + "\n")
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: {resp.status} {body[:200]!r}")
        return body
    finally:
        conn.close()


class PageClient(threading.Thread):
    """Polls like agent/ops/web/app.js: status every 2 s, series every 5 s, models once."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(name="page-client", daemon=True)
        self.port, self.stop = port, stop
        self.requests = 0
        self.status_bytes = 0

    def run(self) -> None:
        since = "-inf"
        get(self.port, "/api/models")
        next_series = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            self.status_bytes = len(get(self.port, "/api/status"))
            self.requests += 1
            if now >= next_series:
                body = json.loads(get(self.port, f"/api/series?since={since}"))
                ends = [p["points"][-1][0] for p in body["pipelines"] if p["points"]]
                since = str(max(ends)) if ends else since
                self.requests += 1
                next_series = now + 5.0
            self.stop.wait(2.0)


def feed_cost_us(tags: int) -> float:
    """Microseconds per reading that feeding the page's buffers adds to the data path (in this process)."""
    from agent.ops.status_api import StatusFeed
    from agent.records import Reading

    feed = StatusFeed()
    batch = [Reading(f"t{i:04d}", 1.0, float(i)) for i in range(tags)]
    rounds = 200
    start = time.perf_counter()
    for _ in range(rounds):
        feed.readings(batch)
    return 1e6 * (time.perf_counter() - start) / (rounds * tags)


def measure(pid: int, seconds: float) -> float:
    """Share of one core the agent used over ``seconds``."""
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)


def wait_up(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"agent exited with {proc.returncode}")
        try:
            get(port, "/healthz")
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("agent did not come up")


def main() -> None:
    from tests.conftest import free_port

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 s phases")
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--per-pipeline", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    seconds = 20.0 if args.quick else args.seconds
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), args.tags, args.per_pipeline, port)
        cmd = [sys.executable, "-m", "agent.cli", "run", "-c", str(config)]
        with open(os.devnull, "wb") as null:
            proc = subprocess.Popen(cmd, cwd=tmp, stdout=null, stderr=null)
        try:
            wait_up(port, proc)
            time.sleep(15)  # windows filling, models warm
            idle1 = measure(proc.pid, seconds)
            stop = threading.Event()
            clients = [PageClient(port, stop) for _ in range(args.clients)]
            for c in clients:
                c.start()
            polled = measure(proc.pid, seconds)
            stop.set()
            for c in clients:
                c.join()
            idle2 = measure(proc.pid, seconds)
        finally:
            proc.terminate()
            proc.wait(30)
    idle = (idle1 + idle2) / 2
    feed_us = feed_cost_us(args.tags)
    rows = [
        (
            "tags / pipelines / readings per s",
            f"{args.tags} / {args.tags // args.per_pipeline} / {args.tags}",
        ),
        ("phase length s", f"{seconds:g}"),
        ("agent CPU, nobody watching (% of one core)", f"{100 * idle1:.2f} then {100 * idle2:.2f}"),
        (f"agent CPU, {args.clients} pages polling (% of one core)", f"{100 * polled:.2f}"),
        ("extra for the page (% of one core)", f"{100 * (polled - idle):.2f}"),
        ("ratio polled / idle", f"{polled / idle:.3f}" if idle else "n/a"),
        ("requests answered", f"{sum(c.requests for c in clients)}"),
        ("/api/status body (bytes)", f"{clients[0].status_bytes:,}"),
        ("feeding the buffers, us per reading (always on)", f"{feed_us:.3f}"),
        ("  = % of one core at these readings/s", f"{100 * feed_us * args.tags / 1e6:.3f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
