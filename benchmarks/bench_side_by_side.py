"""Side by side, one run: edge-agent against the bare-library script of the same workload (issue 17).

    python benchmarks/bench_side_by_side.py                 # W1 W2 W4, 3 runs of 20 s each
    python benchmarks/bench_side_by_side.py --work W1 --runs 3 --seconds 10

Workloads (the PLC servers run in their own process, never counted):
    W1  one Modbus device, 100 holding registers read as 50 float32 tags, every 100 ms
    W2  20 Modbus devices x 500 uint16 tags at 1 Hz (10,000 tags)
    W4  W1 plus a pipeline: 10 s windows every 1 s, mean and std of the 50 tags, an ONNX model, alerts

Each gateway (``bare``: pymodbus + paho in one asyncio script, one QoS 1 message per poll; ``agent``:
``edge-agent run``) publishes to its own mosquitto; a QoS 1 subscriber in this process checks every
value against what the server holds (none wrong) and every topic's ``seq`` for holes (none missing).
Printed per workload and gateway: CPU-ms of the gateway process per 1,000 readings delivered to the
subscriber, min / median / max of the runs, RSS (MiB), start-up to the first delivered message, and the
load average (1 min) beside each run.

Node-RED is not run yet: ``node`` is present here, but node-red-contrib-modbus (current releases) pulls
``@openp4nr/modbus-serial`` from dl.cloudsmith.io, outside the npm registry this machine may reach, so
the Modbus node cannot be installed; the table says so in a Node-RED row (issue 17 leaves this open).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.side_by_side_configs import WORKLOADS, Workload, agent_toml, expected, register  # noqa: E402

NODE_RED_NOTE = "node-red-contrib-modbus needs a package outside the npm registry (dl.cloudsmith.io)"


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


async def serve(ports: list[int], registers: int) -> None:
    """The PLCs: one pymodbus server per port, register r of device i holding ``expected``'s value."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    servers = []
    for i, port in enumerate(ports):
        values = [register(i, r) for r in range(registers)]
        device = SimDevice(id=1, simdata=[SimData(0, values=values, datatype=DataType.REGISTERS)])
        server = ModbusTcpServer(device, address=("127.0.0.1", port))
        await server.serve_forever(background=True)
        servers.append(server)
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def bare(work: str, ports: list[int], broker: int) -> None:
    """The bare script: poll with pymodbus, publish one QoS 1 JSON message per device and poll with paho."""
    import paho.mqtt.client as mqtt
    from pymodbus.client import AsyncModbusTcpClient

    w = WORKLOADS[work]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bare-{os.getpid()}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", broker)
    client.loop_start()
    f32 = AsyncModbusTcpClient.DATATYPE.FLOAT32

    async def device(i: int, port: int) -> None:
        modbus = AsyncModbusTcpClient("127.0.0.1", port=port)
        assert await modbus.connect()
        seq, next_at = 0, time.monotonic()
        while True:
            regs: list[int] = []
            for start in range(0, w.registers, 125):
                count = min(125, w.registers - start)
                regs += (await modbus.read_holding_registers(start, count=count, device_id=1)).registers
            now = time.time()
            if w.float32:
                values = [
                    AsyncModbusTcpClient.convert_from_registers(regs[2 * t : 2 * t + 2], f32)
                    for t in range(w.tags)
                ]
            else:
                values = regs[: w.tags]
            seq += 1
            body = {
                "source": f"d{i}",
                "seq": seq,
                "readings": [
                    {"tag": f"d{i}.t{t}", "ts": now, "value": v, "quality": "good"}
                    for t, v in enumerate(values)
                ],
            }
            client.publish(f"bench/bare/readings/d{i}", json.dumps(body), qos=1)
            next_at += w.interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async with asyncio.TaskGroup() as tasks:
        for i, port in enumerate(ports):
            tasks.create_task(device(i, port), name=f"bare-{i}")


@dataclass
class Tally:
    """What the subscriber saw: readings, wrong values, seq holes, first message time."""

    readings: int = 0
    wrong: int = 0
    missing: int = 0
    first: float | None = None
    seqs: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Checker:
    def __init__(self, port: int, work: Workload) -> None:
        import paho.mqtt.client as mqtt

        self.tally = Tally()
        self.work = work
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"check-{port}")
        self.client.on_message = self._message
        self.client.on_connect = lambda c, *_: c.subscribe("bench/#", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        if "/readings/" not in msg.topic:
            return
        body = json.loads(msg.payload)
        wrong = sum(1 for r in body["readings"] if r["value"] != expected(self.work, r["tag"]))
        with self.tally.lock:
            t = self.tally
            if t.first is None:
                t.first = time.monotonic()
            last = t.seqs.get(msg.topic)
            if last is not None and body["seq"] > last + 1:
                t.missing += body["seq"] - last - 1
            t.seqs[msg.topic] = max(body["seq"], last or 0)
            t.readings += len(body["readings"])
            t.wrong += wrong

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def cpu_s(pid: int) -> float:
    """CPU seconds of every live thread of ``pid``, in nanoseconds from schedstat (``stat`` ticks are 10 ms)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_ports(1)[0]
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc, port


def gateway_command(kind: str, w: Workload, ports: list[int], broker: int, folder: Path) -> list[str] | None:
    if kind == "bare":
        return [
            sys.executable,
            __file__,
            "--bare",
            w.name,
            "--ports",
            ",".join(map(str, ports)),
            "--broker",
            str(broker),
        ]
    if kind == "agent":
        config = folder / "agent.toml"
        config.write_text(agent_toml(w, ports, broker, folder))
        return [str(Path(sys.executable).parent / "edge-agent"), "run", "-c", str(config)]
    return None


def measure(kind: str, w: Workload, ports: list[int], seconds: float, folder: Path) -> dict[str, float] | str:
    broker_proc, broker = mosquitto(folder)
    checker = Checker(broker, w)
    command = gateway_command(kind, w, ports, broker, folder)
    if command is None:
        return "skipped"
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
    try:
        deadline = started + 60
        while checker.tally.first is None:
            if time.monotonic() > deadline or proc.poll() is not None:
                return f"no message within 60 s (exit {proc.poll()})"
            time.sleep(0.01)
        startup = checker.tally.first - started
        time.sleep(3.0)  # warm: connections, first windows
        cpu0, n0 = cpu_s(proc.pid), checker.tally.readings
        time.sleep(seconds)
        cpu1, n1 = cpu_s(proc.pid), checker.tally.readings
        rss = rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        checker.close()
        broker_proc.terminate()
        broker_proc.wait()
    delivered = n1 - n0
    return {
        "cpu_ms_per_1000": 1e6 * (cpu1 - cpu0) / max(delivered, 1),
        "rss": rss,
        "startup": startup,
        "delivered": delivered,
        "wrong": checker.tally.wrong,
        "missing": checker.tally.missing,
        "load": os.getloadavg()[0],
    }


def spread(values: list[float], fmt: str) -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", nargs="*", default=["W1", "W2", "W4"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--gateways", nargs="*", default=["bare", "agent"])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    parser.add_argument("--broker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve([int(p) for p in args.ports.split(",")], args.serve))
        return
    if args.bare:
        asyncio.run(bare(args.bare, [int(p) for p in args.ports.split(",")], args.broker))
        return
    print(
        "| workload | gateway | CPU-ms / 1,000 readings (min/med/max) | RSS MiB | start-up s | load (1 min) per run | checked |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.work:
        w = WORKLOADS[name]
        ports = free_ports(w.devices)
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(w.registers), "--ports", ",".join(map(str, ports))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == b"READY"
        try:
            for kind in args.gateways:
                runs = []
                for _ in range(args.runs):
                    with tempfile.TemporaryDirectory() as folder:
                        runs.append(measure(kind, w, ports, args.seconds, Path(folder)))
                ok = [r for r in runs if isinstance(r, dict)]
                if not ok:
                    print(f"| {name} | {kind} | {runs[0]} | | | | |")
                    continue
                print(
                    f"| {name} | {kind} | {spread([r['cpu_ms_per_1000'] for r in ok], '{:.1f}')} "
                    f"| {spread([r['rss'] for r in ok], '{:.0f}')} | {spread([r['startup'] for r in ok], '{:.2f}')} "
                    f"| {', '.join(format(r['load'], '.2f') for r in ok)} "
                    f"| {sum(int(r['delivered']) for r in ok)} delivered, {sum(int(r['wrong']) for r in ok)} wrong, "
                    f"{sum(int(r['missing']) for r in ok)} missing |",
                    flush=True,
                )
            print(f"| {name} | Node-RED | skipped: {NODE_RED_NOTE} | | | | |")
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(10)


if __name__ == "__main__":
    main()
