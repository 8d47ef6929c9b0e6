"""The Modbus source: one loop per device, devices grouped by endpoint onto shared connections.

Devices reached through the same endpoint (a serial line, a TCP gateway) share one ``Connection`` and
its serialised request stream; every device has its own drift-free schedule and its own backoff, so a
dead device never stalls the others (Telegraf #14671, Neuron #1602). ``run`` itself does not fail when
devices are down: the source's status goes DOWN while every device is down and UP when any recovers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from agent.errors import PluginError
from agent.plugin import Emit, PluginContext, Source, State
from agent.records import NOT_FINITE, Reading
from agent.supervise import describe
from plugins.modbus.byteorder import CHECKED_TYPES, judge
from plugins.modbus.config import ModbusSourceConfig
from plugins.modbus.connection import Connection, ExceptionAnswer
from plugins.modbus.decode import Codec
from plugins.modbus.device import DeviceLoop
from plugins.modbus.planner import Request
from plugins.modbus.poller import DevicePoller, compile_tags, tags_by_device


class ModbusSource(Source):
    """Reads the tags of every device of a ``[[sources]] type = "modbus"`` section."""

    config: ModbusSourceConfig

    def __init__(self, config: ModbusSourceConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self._down: dict[str, str] = {}
        self._devices = 0
        self._notes: list[str] = []

    def _build(self) -> tuple[list[Connection], list[DevicePoller]]:
        cfg = self.config
        connections: dict[str, Connection] = {}
        pollers: list[DevicePoller] = []
        codecs: dict[tuple[Any, ...], Codec] = {}
        by_device = tags_by_device(cfg)
        for device in cfg.devices:
            endpoint = cfg.endpoint(device)
            if endpoint not in connections:
                members = [d for d in cfg.devices if cfg.endpoint(d) == endpoint]
                timeout = max(d.timeout for d in members)
                connections[endpoint] = Connection(cfg, device, timeout, shared=len(members) > 1)
            tags = compile_tags(cfg, device, codecs, by_device[device.name])
            if tags:
                pollers.append(DevicePoller(device, tags, connections[endpoint], self.ctx.log))
        return list(connections.values()), pollers

    async def run(self, emit: Emit) -> None:
        """Poll every device until cancelled; device failures are handled per device, never raised."""
        connections, pollers = self._build()
        loops = [
            DeviceLoop(p, self.ctx.status, self.ctx.log, self.config.backoff_max, self._on_state)
            for p in pollers
        ]
        self._down, self._devices = {}, len(loops)
        try:
            async with asyncio.TaskGroup() as group:
                by_endpoint: dict[str, list[DeviceLoop]] = {}
                for loop in loops:
                    by_endpoint.setdefault(loop.poller.connection.endpoint, []).append(loop)
                for members in by_endpoint.values():
                    for index, loop in enumerate(members):
                        # spread the devices of one connection over their interval
                        offset = loop.interval * index / len(members)
                        group.create_task(
                            loop.run(emit, offset), name=f"modbus:{self.config.name}:{loop.name}"
                        )
        finally:
            for connection in connections:
                connection.close()

    def _on_state(self, device: str, up: bool, error: str | None) -> None:
        status = self.ctx.status
        if up:
            self._down.pop(device, None)
            self.ctx.mark_up()
            return
        self._down[device] = error or "down"
        if len(self._down) == self._devices:
            status.set(State.DOWN, f"all devices down; {device}: {error}")

    async def read_once(self) -> list[Reading]:
        """Read every tag of every device once; a device that fails gives BAD readings with the reason."""
        connections, pollers = self._build()
        readings: list[Reading] = []
        self._notes = []
        try:
            for poller in pollers:
                try:
                    found = await poller.poll()
                    readings.extend(found)
                    self._notes.extend(await _byte_order_notes(poller, found))
                except PluginError as exc:
                    readings.extend(poller.all_bad(describe(exc)))
        finally:
            for connection in connections:
                connection.close()
        return readings

    def diagnose(self) -> list[str]:
        """The byte-order assistant's notes on the last ``read_once`` (see ``plugins.modbus.byteorder``)."""
        return list(self._notes)


async def _byte_order_notes(poller: DevicePoller, readings: Sequence[Reading]) -> list[str]:
    """A note per 32/64-bit tag whose value looks wrongly decoded, with what every order would give.

    A good value is re-encoded (no second read); a value the device sent as NaN or infinity was made BAD,
    so its registers are read once more.
    """
    notes = []
    slots = {s.name: s for s in poller.slots}
    for reading in readings:
        codec = poller.codecs[reading.tag]
        if codec.dtype not in CHECKED_TYPES:
            continue
        if reading.quality == "good" and isinstance(reading.value, int | float):
            raw = (reading.value - codec.offset) / codec.scale
            registers = codec.encode(round(raw) if codec.dtype.startswith(("int", "uint")) else raw)
        elif (reading.reason or "").startswith(NOT_FINITE):
            slot = slots[reading.tag]
            try:
                got = await poller.connection.read(
                    poller.device.unit,
                    Request(slot.table, slot.address, slot.count, (slot,)),
                    poller.device.timeout,
                )
            except (PluginError, ExceptionAnswer):
                continue
            registers = [int(r) for r in got]
        else:
            continue
        verdict = judge(codec.dtype, codec.order, registers)
        if verdict.suspicious:
            words = " ".join(f"0x{r:04X}" for r in registers)
            head = f"{reading.tag}: {codec.dtype} {codec.order} gives {verdict.problems[codec.order]}; registers {words}"
            fix = (
                f'looks right: order = "{verdict.best}"'
                if verdict.best
                else "no order gives a plausible value"
            )
            others = [o for o in verdict.plausible if o != verdict.best]
            fix += f" (also plausible: {', '.join(others)})" if others else ""
            notes.append(
                f"{head}; {fix}\n" + "\n".join("    " + line for line in verdict.describe().splitlines())
            )
    return notes
