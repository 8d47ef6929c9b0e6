"""Side by side, one run: edge-agent against the bare-library script and Node-RED on the same workload (issue 17).

    python benchmarks/bench_side_by_side.py                 # W1-W4, 3 runs of 20 s per gateway
    python benchmarks/bench_side_by_side.py --work W1 --runs 3 --seconds 10 --gateways bare agent

Workloads (the PLC servers run in their own process, never counted; the OPC UA one is built once per run):
    W1  one Modbus device, 100 holding registers read as 50 float32 tags, every 100 ms
    W2  20 Modbus devices x 500 uint16 tags at 1 Hz (10,000 tags)
    W3  1,000 OPC UA monitored items, each changed at 1 Hz (publishing and sampling 500 ms, queue 1)
    W4  W1 plus a pipeline: 10 s windows every 1 s, mean and std of the 50 tags, an ONNX model, alerts
        (the bare script does the same with numpy and onnxruntime, so its RSS is the bare import of them)

Gateways: ``bare`` (pymodbus or asyncua + paho in one asyncio script, one QoS 1 message per poll or per
publish response, ``side_by_side_gateways``), ``agent`` (``edge-agent run`` with its defaults) and
``node-red`` (Node-RED 4.1 with node-red-contrib-modbus / -opcua, installed on demand by npm when ``node``
is on the PATH, skipped with the reason otherwise; its flows are shipped in ``benchmarks/node_red/``, see
``side_by_side_node_red``). Each publishes to its own mosquitto; a QoS 1 subscriber in this process checks
every value against what the server holds (none wrong) and every topic's ``seq`` and, for W3, every item's
change count for holes (none missing). Printed per workload and gateway: CPU-ms of the gateway process
(all its threads, from schedstat) per 1,000 readings delivered to the subscriber over ``--seconds`` after a
5 s warm-up, min / median / max of the runs, RSS (MiB) at the end, start-up from spawn to the first
delivered message, and the load average (1 min) beside each run. The agent's bytecode is compiled first,
as pip does at install (this machine sets PYTHONDONTWRITEBYTECODE). ``--agent-option "readings_interval =
1.0"`` runs the agent with a line added to its ``[agent]`` table, named in its row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import side_by_side_gateways as gateways  # noqa: E402
from benchmarks import side_by_side_node_red as node_red  # noqa: E402
from benchmarks.ports import free_ports  # noqa: E402
from benchmarks.side_by_side_check import Checker, cpu_s, mosquitto, rss_mib  # noqa: E402
from benchmarks.side_by_side_configs import WORKLOADS, Workload, agent_toml, make_model  # noqa: E402

AGENT_OPTIONS: tuple[str, ...] = ()  # --agent-option: extra lines of the agent's [agent] table


def snapshot(checker: Checker, pid: int) -> tuple[float, int, int, int]:
    """The gateway's CPU seconds and the subscriber's readings, missing and wrong, read together."""
    with checker.tally.lock:
        return cpu_s(pid), checker.tally.readings, checker.tally.missing, checker.tally.wrong


def gateway_command(
    kind: str, w: Workload, ports: list[int], broker: int, ns: int, folder: Path
) -> list[str]:
    """The command line of one gateway; ``ns`` is W3's namespace index (the Node-RED flow names nodes by it)."""
    if kind == "bare":
        if w.pipeline:
            make_model(folder / "model.onnx", w, [f"d0.t{t}" for t in range(w.tags)])
        here = [sys.executable, __file__, "--bare", w.name, "--ports", ",".join(map(str, ports))]
        return [*here, "--broker", str(broker)]
    if kind == "agent":
        config = folder / "agent.toml"
        config.write_text(agent_toml(w, ports, broker, folder, AGENT_OPTIONS))
        return [str(Path(sys.executable).parent / "edge-agent"), "run", "-c", str(config)]
    return node_red.command(w, ports, broker, ns, folder)


def measure(kind: str, w: Workload, server: Server, seconds: float, folder: Path) -> dict[str, float] | str:
    """One run of one gateway: start-up to the first message, then CPU over ``seconds`` after a warm-up."""
    broker_proc, broker = mosquitto(folder)
    checker = Checker(broker, w)
    command = gateway_command(kind, w, server.ports, broker, server.ns, folder)
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=folder)
    try:
        deadline = started + 120
        while checker.tally.first is None:
            if time.monotonic() > deadline or proc.poll() is not None:
                return f"no message within 120 s (exit {proc.poll()})"
            time.sleep(0.01)
        startup = checker.tally.first - started
        time.sleep(5.0)  # warm: connections, first windows, Node-RED's JIT and its start-up garbage
        cpu0, n0, m0, w0 = snapshot(checker, proc.pid)
        time.sleep(seconds)
        cpu1, n1, m1, w1 = snapshot(checker, proc.pid)
        rss = rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        checker.close()
        broker_proc.terminate()
        broker_proc.wait()
    if proc.returncode not in (0, -signal.SIGTERM, 143) and err:
        print(f"  {kind} exit {proc.returncode}: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
    delivered = n1 - n0
    return {
        "cpu_ms_per_1000": 1e6 * (cpu1 - cpu0) / max(delivered, 1),
        "rss": rss,
        "startup": startup,
        "delivered": delivered,
        "wrong": w1 - w0,
        "missing": m1 - m0,
        "load": os.getloadavg()[0],
    }


def spread(values: list[float], fmt: str) -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


@dataclass
class Server:
    """The PLC process of one workload: Modbus servers on ``ports``, or one OPC UA server (namespace ``ns``)."""

    proc: subprocess.Popen[bytes]
    ports: list[int]
    ns: int

    @classmethod
    def start(cls, w: Workload) -> Server:
        ports = free_ports(1 if w.opcua else w.devices)
        flag = ["--serve-opcua", str(w.tags)] if w.opcua else ["--serve", str(w.registers)]
        proc = subprocess.Popen(
            [sys.executable, __file__, *flag, "--ports", ",".join(map(str, ports))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().split()  # the OPC UA server takes a while to add its variables
        assert line and line[0] == b"READY", line
        return cls(proc, ports, int(line[1]) if len(line) > 1 else 0)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def row(name: str, kind: str, runs: list[dict[str, float] | str]) -> str:
    ok = [r for r in runs if isinstance(r, dict)]
    if not ok:
        return f"| {name} | {kind} | {runs[0]} | | | | |"
    return (
        f"| {name} | {kind} | {spread([r['cpu_ms_per_1000'] for r in ok], '{:.1f}')} "
        f"| {spread([r['rss'] for r in ok], '{:.0f}')} | {spread([r['startup'] for r in ok], '{:.2f}')} "
        f"| {', '.join(format(r['load'], '.2f') for r in ok)} "
        f"| {sum(int(r['delivered']) for r in ok)} delivered, {sum(int(r['wrong']) for r in ok)} wrong, "
        f"{sum(int(r['missing']) for r in ok)} missing{'' if len(ok) == len(runs) else f'; {len(runs) - len(ok)} failed'} |"
    )


def child(args: argparse.Namespace) -> bool:
    """Run as one of the harness's own processes (a server or the bare gateway); False when not one."""
    ports = [int(p) for p in args.ports.split(",")] if args.ports else []
    if args.serve is not None:
        asyncio.run(gateways.serve_modbus(ports, args.serve))
    elif args.serve_opcua is not None:
        asyncio.run(gateways.serve_opcua(ports[0], args.serve_opcua))
    elif args.bare and WORKLOADS[args.bare].opcua:
        asyncio.run(gateways.bare_opcua(args.bare, ports[0], args.broker))
    elif args.bare:
        asyncio.run(gateways.bare_modbus(args.bare, ports, args.broker))
    else:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", nargs="*", default=["W1", "W2", "W3", "W4"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--gateways", nargs="*", default=["bare", "agent", "node-red"])
    parser.add_argument(
        "--agent-option",
        action="append",
        default=[],
        help='a line of the agent\'s [agent] table, e.g. "readings_interval = 1.0"',
    )
    parser.add_argument(
        "--write-flows", type=Path, help="write the Node-RED flow of each workload here, then exit"
    )
    for hidden in ("--serve", "--serve-opcua", "--broker"):
        parser.add_argument(hidden, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if child(args):
        return
    global AGENT_OPTIONS
    AGENT_OPTIONS = tuple(args.agent_option)
    if args.write_flows:
        args.write_flows.mkdir(parents=True, exist_ok=True)
        for name in args.work:
            w = WORKLOADS[name]
            flow = node_red.flows(w, list(range(5020, 5020 + w.devices)), 1883, 2)
            (args.write_flows / f"{name}.json").write_text(json.dumps(flow, indent=2))
        return
    skip = node_red.installed() if "node-red" in args.gateways else None
    # Start-up as installed: pip compiles the bytecode at install, this tree may have none
    # (PYTHONDONTWRITEBYTECODE), and compiling at every start would be counted.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "agent"), str(ROOT / "plugins")], check=True
    )
    print(
        "| workload | gateway | CPU-ms / 1,000 readings (min/med/max) | RSS MiB | start-up s | load (1 min) per run | checked |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.work:
        w = WORKLOADS[name]
        server = Server.start(w)
        try:
            for kind in args.gateways:
                why = skip or (
                    "no windows, features or ONNX model in its flow: compare with W1" if w.pipeline else ""
                )
                if kind == "node-red" and why:
                    print(f"| {name} | node-red | skipped: {why} | | | | |", flush=True)
                    continue
                runs = []
                for _ in range(args.runs):
                    with tempfile.TemporaryDirectory() as folder:
                        runs.append(measure(kind, w, server, args.seconds, Path(folder)))
                label = f"{kind} ({', '.join(AGENT_OPTIONS)})" if kind == "agent" and AGENT_OPTIONS else kind
                print(row(name, label, runs), flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
