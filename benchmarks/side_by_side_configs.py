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


WORKLOADS = {
    "W1": Workload("W1", 1, 100, 50, True, 0.1),
    "W2": Workload("W2", 20, 500, 500, False, 1.0),
    "W4": Workload("W4", 1, 100, 50, True, 0.1, pipeline=True),
}


def register(device: int, reg: int) -> int:
    """What register ``reg`` of device ``device`` holds (the servers and the checks agree on this)."""
    return (device * 7 + reg * 3 + 1) % 65536


@cache
def expected(work: Workload, tag: str) -> float | int:
    device, index = (int(part[1:]) for part in tag.split("."))
    if not work.float32:
        return register(device, index)
    raw = struct.pack(">HH", register(device, 2 * index), register(device, 2 * index + 1))
    return float(struct.unpack(">f", raw)[0])


def agent_toml(w: Workload, ports: list[int], broker: int, folder: Path) -> str:
    lines = [
        '[agent]\nid = "bench"\nstate_dir = "state"\nlog_level = "warning"\n',
        "[health]\nenabled = false\n",
        '[[sources]]\ntype = "modbus"\nname = "plc"\nhost = "127.0.0.1"\n',
    ]
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
    lines += tags
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


def make_model(path: Path, w: Workload, tags: list[str]) -> None:
    from tests.onnx_models import zscore_model

    names = [f"{tag}.{feature}" for tag in tags for feature in ("mean", "std")]
    center = [v for tag in tags for v in (float(expected(w, tag)), 0.0)]
    zscore_model(path, names, center, [1.0] * len(names), threshold=1e9)
