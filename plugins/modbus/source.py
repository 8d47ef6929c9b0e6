"""The Modbus source: one loop per device, devices grouped by endpoint onto shared connections.

Devices reached through the same endpoint (a serial line, a TCP gateway) share one ``Connection`` and
its serialised request stream; every device has its own drift-free schedule and its own backoff, so a
dead device never stalls the others (Telegraf #14671, Neuron #1602). ``run`` itself does not fail when
devices are down: the source's status goes DOWN while every device is down and UP when any recovers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agent.errors import PluginError
from agent.plugin import Emit, PluginContext, Source, State
from agent.records import Reading
from agent.supervise import describe
from plugins.modbus.config import ModbusSourceConfig
from plugins.modbus.connection import Connection
from plugins.modbus.decode import Codec
from plugins.modbus.device import DeviceLoop
from plugins.modbus.poller import DevicePoller, compile_tags


class ModbusSource(Source):
    """Reads the tags of every device of a ``[[sources]] type = "modbus"`` section."""

    config: ModbusSourceConfig

    def __init__(self, config: ModbusSourceConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self._down: dict[str, str] = {}
        self._devices = 0

    def _build(self) -> tuple[list[Connection], list[DevicePoller]]:
        cfg = self.config
        connections: dict[str, Connection] = {}
        pollers: list[DevicePoller] = []
        codecs: dict[tuple[Any, ...], Codec] = {}
        for device in cfg.devices:
            endpoint = cfg.endpoint(device)
            if endpoint not in connections:
                members = [d for d in cfg.devices if cfg.endpoint(d) == endpoint]
                timeout = max(d.timeout for d in members)
                connections[endpoint] = Connection(cfg, device, timeout, shared=len(members) > 1)
            tags = compile_tags(cfg, device, codecs)
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
        try:
            for poller in pollers:
                try:
                    readings.extend(await poller.poll())
                except PluginError as exc:
                    readings.extend(poller.all_bad(describe(exc)))
        finally:
            for connection in connections:
                connection.close()
        return readings
