"""The PLC servers and the bare-library gateways of ``bench_side_by_side.py``, each run as its own process.

Servers (never counted): ``serve_modbus`` holds ``register``'s values; ``serve_opcua`` sets variable
``Line1.V<i>`` to ``opcua_value(tick, i)`` once a second. Bare gateways (counted): what a competent user
writes with the libraries alone, one QoS 1 JSON message per poll (Modbus) or per publish response (OPC UA);
W4's adds the same windows, features and ONNX model as the agent's pipeline (``BarePipeline``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import time
from typing import Any

from benchmarks.side_by_side_configs import OPC_PUBLISH_S, WORKLOADS, opcua_value, register


async def _wait_stdin() -> None:
    """Serve until the harness closes our stdin."""
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def serve_modbus(ports: list[int], registers: int) -> None:
    """The PLCs: one pymodbus server per port, register r of device i holding ``register(i, r)``."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    for i, port in enumerate(ports):
        values = [register(i, r) for r in range(registers)]
        device = SimDevice(id=1, simdata=[SimData(0, values=values, datatype=DataType.REGISTERS)])
        server = ModbusTcpServer(device, address=("127.0.0.1", port))
        await server.serve_forever(background=True)
    print("READY", flush=True)
    await _wait_stdin()


async def serve_opcua(port: int, items: int) -> None:
    """One asyncua server (built once per run: it is slow to start), every variable changed at 1 Hz."""
    from asyncua import ua

    from tests.opcua_server import start

    plant = await start(port, items)
    print("READY", plant.ns, flush=True)
    stop = asyncio.create_task(_wait_stdin(), name="opcua-stdin")
    loop = asyncio.get_running_loop()
    tick, next_at = 0, loop.time()
    while not stop.done():
        tick += 1
        stamp = dt.datetime.now(dt.UTC)
        for i, node in enumerate(plant.nodes):
            variant = ua.Variant(opcua_value(tick, i), ua.VariantType.Double)
            dv = ua.DataValue(variant, SourceTimestamp=stamp, ServerTimestamp=stamp)
            await plant.server.write_attribute_value(node, dv)
        next_at += 1.0
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    await plant.server.stop()


def _paho(broker: int) -> Any:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bare-{os.getpid()}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", broker)
    client.loop_start()
    return client


class BarePipeline:
    """W4's job with the libraries alone: a numpy ring of the last 10 s of each tag, every 1 s its mean and
    std scored by an onnxruntime session on the harness's model (``model.onnx`` in the working directory),
    published as one QoS 1 message. The same windows, features and model as the agent's W4 config."""

    def __init__(self, tags: int, rows: int) -> None:
        import numpy as np
        import onnxruntime as ort

        self.np = np
        self.ring = np.full((rows, tags), np.nan)
        self.row = 0
        self.session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
        self.next_at = time.monotonic() + 1.0

    def add(self, values: list[float], now: float, client: Any, seq: int) -> None:
        np = self.np
        self.ring[self.row % len(self.ring)] = values
        self.row += 1
        if time.monotonic() < self.next_at:
            return
        self.next_at += 1.0
        features = np.column_stack((np.nanmean(self.ring, 0), np.nanstd(self.ring, 0))).reshape(1, -1)
        score, contributions = self.session.run(None, {"features": features.astype(np.float32)})
        top = [int(i) for i in np.argsort(contributions[0])[-3:]]
        body = {"pipeline": "line", "seq": seq, "ts": now, "score": float(score[0]), "top": top}
        client.publish("bench/bare/features/line", json.dumps(body), qos=1)


async def bare_modbus(work: str, ports: list[int], broker: int) -> None:
    """Poll with pymodbus, publish one QoS 1 JSON message per device and poll with paho (W4: and score)."""
    from pymodbus.client import AsyncModbusTcpClient

    w = WORKLOADS[work]
    client = _paho(broker)
    f32 = AsyncModbusTcpClient.DATATYPE.FLOAT32
    pipeline = BarePipeline(w.tags, round(10 / w.interval)) if w.pipeline else None

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
            if pipeline is not None:
                pipeline.add(values, now, client, seq)
            next_at += w.interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async with asyncio.TaskGroup() as tasks:
        for i, port in enumerate(ports):
            tasks.create_task(device(i, port), name=f"bare-{i}")


async def bare_opcua(work: str, port: int, broker: int) -> None:
    """Subscribe with asyncua's handler API; the changes of one publish response leave as one message."""
    from asyncua import Client, ua

    from tests.opcua_server import NS_URI

    w = WORKLOADS[work]
    mqtt = _paho(broker)
    loop = asyncio.get_running_loop()
    pending: list[dict[str, Any]] = []
    seq = 0

    def flush() -> None:
        nonlocal seq
        seq += 1
        body = {"source": "opc", "seq": seq, "readings": pending[:]}
        pending.clear()
        mqtt.publish("bench/bare/readings/opc", json.dumps(body), qos=1)

    class Handler:
        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            if not pending:
                loop.call_soon(flush)  # after the rest of this publish response
            value = data.monitored_item.Value
            tag = f"v{node.nodeid.Identifier[len('Line1.V') :]}"
            stamp = value.SourceTimestamp
            ts = (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)).timestamp()
            pending.append({"tag": tag, "ts": ts, "value": val, "quality": "good"})

    client = Client(f"opc.tcp://127.0.0.1:{port}/", timeout=60, watchdog_intervall=60)  # as the agent
    async with client:
        ns = await client.get_namespace_index(NS_URI)
        sub = await client.create_subscription(OPC_PUBLISH_S * 1000, Handler())
        nodes = [client.get_node(ua.NodeId(f"Line1.V{i}", ns)) for i in range(w.tags)]
        for start in range(0, len(nodes), 500):
            await sub.subscribe_data_change(
                nodes[start : start + 500], queuesize=1, sampling_interval=OPC_PUBLISH_S * 1000
            )
        await asyncio.Event().wait()
