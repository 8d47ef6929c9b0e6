"""The workloads of ``bench_side_by_side.py``: shapes, the values the servers hold, the agent's config."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class Workload:
    name: str
    devices: int
    registers: int  # per device
    tags: int  # per device
    float32: bool
    interval: float
    pipeline: bool = False
    opcua: bool = False  # tags are OPC UA monitored items v<i>, not Modbus registers


WORKLOADS = {
    "W1": Workload("W1", 1, 100, 50, True, 0.1),
    "W2": Workload("W2", 20, 500, 500, False, 1.0),
    "W3": Workload("W3", 1, 0, 1000, False, 1.0, opcua=True),
    "W4": Workload("W4", 1, 100, 50, True, 0.1, pipeline=True),
}
OPC_PUBLISH_S = 0.5  # publishing and sampling interval of every W3 gateway; queue size 1 per item


def register(device: int, reg: int) -> int:
    """What register ``reg`` of device ``device`` holds (the servers and the checks agree on this)."""
    return (device * 7 + reg * 3 + 1) % 65536


def opcua_value(tick: int, item: int) -> float:
    """What W3's variable ``item`` holds at the server's ``tick``-th change (exact in a Double)."""
    return float(tick * 10_000 + item)


def check(work: Workload, tag: str, value: float) -> int | None:
    """The W3 tick ``value`` belongs to (``None``: wrong value); 0 for a right Modbus value."""
    if work.opcua:
        tick, item = divmod(int(value), 10_000)
        return tick if value == opcua_value(tick, item) and tag == f"v{item}" else None
    return 0 if value == expected(work, tag) else None


@cache
def expected(work: Workload, tag: str) -> float | int:
    device, index = (int(part[1:]) for part in tag.split("."))
    if not work.float32:
        return register(device, index)
    raw = struct.pack(">HH", register(device, 2 * index), register(device, 2 * index + 1))
    return float(struct.unpack(">f", raw)[0])


def agent_toml(
    w: Workload, ports: list[int], broker: int, folder: Path, options: tuple[str, ...] = ()
) -> str:
    """The agent's config for ``w``; ``options`` are extra ``key = value`` lines of its ``[agent]`` table."""
    lines = [
        '[agent]\nid = "bench"\nstate_dir = "state"\nlog_level = "warning"\n'
        + "".join(f"{o}\n" for o in options),
        "[health]\nenabled = false\n",
    ]
    lines += _opcua_source(w, ports[0]) if w.opcua else _modbus_source(w, ports)
    if w.pipeline:
        names = [f"d0.t{t}" for t in range(w.tags)]
        model = folder / "model.onnx"
        make_model(model, w, names)
        lines.append(
            f'[[pipelines]]\nname = "line"\ntags = {names!r}\nfeatures = ["mean", "std"]\nmodel = "{model}"\n'
            '[pipelines.window]\nlength = "10s"\nhop = "1s"\n'
        )
    kinds = '["readings", "features", "alert"]' if w.pipeline else '["readings"]'
    lines.append(
        f'[[sinks]]\ntype = "mqtt"\nname = "mqtt"\nhost = "127.0.0.1"\nport = {broker}\nprefix = "bench"\n'
        f"kinds = {kinds}\n[sinks.qos]\nreadings = 1\n"
    )
    return "\n".join(lines)


def _opcua_source(w: Workload, port: int) -> list[str]:
    from tests.opcua_server import NS_URI

    lines = [
        f'[[sources]]\ntype = "opcua"\nname = "opc"\nendpoint = "opc.tcp://127.0.0.1:{port}/"\n'
        f'security_policy = "None"\nsecurity_mode = "None"\npublishing_interval = {OPC_PUBLISH_S}\n'
        f"queue_size = 1\nbatch_size = 500\nrequest_timeout = 60\n"
    ]
    for i in range(w.tags):
        lines.append(f'[[sources.tags]]\nname = "v{i}"\nnode = "nsu={NS_URI};s=Line1.V{i}"\n')
    return lines


def _modbus_source(w: Workload, ports: list[int]) -> list[str]:
    lines = ['[[sources]]\ntype = "modbus"\nname = "plc"\nhost = "127.0.0.1"\n']
    for i, port in enumerate(ports):
        lines.append(
            f'[[sources.devices]]\nname = "d{i}"\nport = {port}\ninterval = {w.interval}\ntimeout = "2s"\n'
        )
    tags = []
    for i in range(w.devices):
        for t in range(w.tags):
            kind = 'type = "float32"\norder = "ABCD"\n' if w.float32 else 'type = "uint16"\n'
            address = 2 * t if w.float32 else t
            tags.append(f'[[sources.tags]]\nname = "d{i}.t{t}"\ndevice = "d{i}"\naddress = {address}\n{kind}')
    return lines + tags


def make_model(path: Path, w: Workload, tags: list[str]) -> None:
    from tests.onnx_models import zscore_model

    names = [f"{tag}.{feature}" for tag in tags for feature in ("mean", "std")]
    center = [v for tag in tags for v in (float(expected(w, tag)), 0.0)]
    zscore_model(path, names, center, [1.0] * len(names), threshold=1e9)
