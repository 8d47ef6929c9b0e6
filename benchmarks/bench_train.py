"""Benchmark the learn-normal trainer, its ONNX model and the simulator against the bare libraries.

Each row compares our code with the same work done by the bare library in the same run:

* fit: ``agent.learn.fit.fit`` (robust scaling, PCA, 5-fold out-of-fold limits) vs a bare numpy PCA
  (covariance + ``eigh``) of the same matrix;
* score: the exported model run by onnxruntime vs a bare onnxruntime graph doing one ``MatMul`` of the
  same shape (the floor of any ONNX call), at batch 1 and 256;
* Modbus read: reading every simulator signal from ``run_simulator`` vs the same registers from a bare
  pymodbus server with a static ``SimDevice``;
* OPC UA read: reading every simulator variable vs the same number of variables on a bare asyncua server.

Usage: ``python benchmarks/bench_train.py [--quick]``. Figures are medians; ratios > 1 mean we are slower.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.learn import export as onnx_export
from agent.learn.fit import fit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``fn`` over ``repeat`` runs (after one warm-up)."""
    fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


async def atimed(fn: Callable[[], object], repeat: int) -> float:
    await fn()  # type: ignore[misc]
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()  # type: ignore[misc]
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def bench_fit(n: int, f: int, repeat: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)) @ rng.normal(size=(4, f)) + 0.1 * rng.normal(size=(n, f))
    names = [f"t{i}.mean" for i in range(f)]

    def bare() -> object:
        xc = x - x.mean(axis=0)
        return np.linalg.eigh(xc.T @ xc / (n - 1))

    return timed(lambda: fit(x, names), repeat), timed(bare, repeat)


def bench_score(f: int, batch: int, repeat: int) -> tuple[float, float, float]:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 4)) @ rng.normal(size=(4, f)) + 0.1 * rng.normal(size=(2000, f))
    model = fit(x, [f"t{i}.mean" for i in range(f)])
    with tempfile.TemporaryDirectory() as tmp:
        path = onnx_export.export(model, Path(tmp) / "m.onnx")
        ours = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    weights = numpy_helper.from_array(rng.normal(size=(f, f)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["out"])],
        "bare",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", f])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", f])],
        initializer=[weights],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    bare = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"features": x[:batch].astype(np.float32)}
    return (
        timed(lambda: ours.run(None, feed), repeat),
        timed(lambda: bare.run(None, feed), repeat),
        timed(lambda: model.score(x[:batch]), repeat),
    )


async def bench_servers(repeat: int) -> dict[str, tuple[float, float]]:
    from asyncua import Client, Server, ua
    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    from plugins.simulator import load_scenario
    from plugins.simulator.mapping import opcua_endpoint, signal_map
    from plugins.simulator.servers import run_simulator

    scenario = load_scenario()
    n = len(scenario.signals)
    out: dict[str, tuple[float, float]] = {}

    async def modbus_read(port: int) -> float:
        client = AsyncModbusTcpClient("127.0.0.1", port=port)
        await client.connect()
        try:
            return await atimed(lambda: client.read_holding_registers(0, count=2 * n, device_id=1), repeat)
        finally:
            client.close()

    async def opcua_read(endpoint: str, nodes: list[str]) -> float:
        async with Client(endpoint) as client:
            handles = [client.get_node(node) for node in nodes]
            return await atimed(lambda: client.read_values(handles), repeat)

    port_o, port_m = free_port(), free_port()
    async with run_simulator(scenario, opcua_port=port_o, modbus_port=port_m):
        sim_modbus = await modbus_read(port_m)
        nodes = [w["opcua_node_id"] for w in signal_map(scenario).values()]
        sim_opcua = await opcua_read(opcua_endpoint("127.0.0.1", port_o), nodes)

    bare_port = free_port()
    device = SimDevice(id=0, simdata=[SimData(address=0, values=[1.0] * n, datatype=DataType.FLOAT32)])
    server = ModbusTcpServer(device, address=("127.0.0.1", bare_port))
    await server.serve_forever(background=True)
    try:
        out["Modbus read, all signals"] = (sim_modbus, await modbus_read(bare_port))
    finally:
        await server.shutdown()

    opc = Server()
    await opc.init()
    bare_port = free_port()
    opc.set_endpoint(f"opc.tcp://127.0.0.1:{bare_port}/bare")
    idx = await opc.register_namespace("urn:bare")
    bare_nodes = []
    for i in range(n):
        var = await opc.nodes.objects.add_variable(ua.NodeId(ua.String(f"v{i}"), ua.Int16(idx)), f"v{i}", 1.0)
        bare_nodes.append(var.nodeid.to_string())
    await opc.start()
    try:
        out["OPC UA read, all signals"] = (
            sim_opcua,
            await opcua_read(f"opc.tcp://127.0.0.1:{bare_port}/bare", bare_nodes),
        )
    finally:
        await opc.stop()
    return out


TRAIN_CONFIG = """
[agent]
id = "bench"
state_dir = "state"
[[sources]]
type = "replay"
name = "rec"
path = "data.csv"
{tags}
[[pipelines]]
name = "line"
tags = {names}
"""


def _child_train(folder: str) -> None:
    """In a fresh process: `edge-agent train` on folder/data.csv, default pipeline; print seconds."""
    from agent.cli import main as cli

    started = time.perf_counter()
    code = cli(
        ["train", "-c", f"{folder}/edge.toml", "--data", f"{folder}/data.csv", "--out", f"{folder}/m.onnx"]
    )
    print(json.dumps({"seconds": time.perf_counter() - started, "code": code}))


def _child_bare() -> None:
    """In a fresh process: import what training needs, fit nothing (the RSS floor)."""
    import numpy  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import pydantic  # noqa: F401

    print(json.dumps({"seconds": 0.0, "code": 0}))


def bench_train_recording(minutes: int = 30, tags: int = 8) -> tuple[float, float, float]:
    """(seconds, peak RSS MiB, bare-import peak RSS MiB) of `edge-agent train` on ``minutes`` of 1 Hz data."""
    import subprocess

    rng = np.random.default_rng(0)
    names = [f"t{i}" for i in range(tags)]
    with tempfile.TemporaryDirectory() as tmp:
        load = np.sin(np.arange(minutes * 60) / 120.0)
        data = load[:, None] * rng.normal(1.0, 0.2, tags) + rng.normal(0, 0.1, (minutes * 60, tags))
        lines = ["timestamp," + ",".join(names)]
        lines += [f"{1_700_000_000 + t}," + ",".join(f"{v:.5f}" for v in row) for t, row in enumerate(data)]
        Path(tmp, "data.csv").write_text("\n".join(lines) + "\n")
        block = "\n".join(f'[[sources.tags]]\nname = "{n}"' for n in names)
        Path(tmp, "edge.toml").write_text(TRAIN_CONFIG.format(tags=block, names=json.dumps(names)))

        def child(arg: str) -> tuple[float, float]:
            code = (
                "import json, resource, sys; sys.path.insert(0, sys.argv[1]); import bench_train as b; "
                f"b.{arg}; "
                "print(json.dumps({'rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))"
            )
            out = (
                subprocess.run(
                    [sys.executable, "-c", code, str(Path(__file__).parent)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()
            )
            seconds = json.loads(out[-2])["seconds"] if len(out) > 1 else 0.0
            return seconds, json.loads(out[-1])["rss"] / 1024

        seconds, rss = child(f"_child_train({tmp!r})")
        _, bare = child("_child_bare()")
    return seconds, rss, bare


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (CI smoke run)")
    parser.add_argument("--recording-only", action="store_true", help="only the 30 min x 8 tags training run")
    args = parser.parse_args()
    seconds, rss, bare_rss = bench_train_recording()
    print(
        f"edge-agent train, 30 min of 1 Hz data x 8 tags, default pipeline: {seconds:.2f} s, peak RSS "
        f"{rss:.0f} MiB (bare import of numpy, onnx, onnxruntime, pydantic: {bare_rss:.0f} MiB; "
        f"ratio {rss / bare_rss:.2f})"
    )
    if args.recording_only:
        return 0
    repeat = 5 if args.quick else 30
    n, f = (2000, 24) if args.quick else (20000, 48)
    rows: list[tuple[str, float, float, str]] = []
    ours, bare = bench_fit(n, f, max(3, repeat // 5))
    rows.append((f"fit {n} windows x {f} features", ours, bare, "numpy cov + eigh"))
    for batch in (1, 256):
        ours, bare, numpy_score = bench_score(f, batch, repeat * 20)
        rows.append((f"score batch {batch}, onnxruntime", ours, bare, "ORT single MatMul"))
        rows.append((f"score batch {batch}, numpy model", numpy_score, bare, "ORT single MatMul"))
    for label, (ours, bare) in asyncio.run(bench_servers(repeat * 4)).items():
        rows.append((label, ours, bare, "bare server, same values"))
    print(f"{'case':<36} {'ours':>12} {'bare':>12} {'ratio':>7}  bare library")
    for label, ours, bare, what in rows:
        print(f"{label:<36} {ours * 1e3:>9.3f} ms {bare * 1e3:>9.3f} ms {ours / bare:>7.2f}  {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
