"""Serve a simulated machine over a real OPC UA server and a real Modbus TCP server at once.

``run_simulator(scenario, ...)`` is an async context manager: on entry both servers listen and already
serve the values at scenario time 0; a named task then refreshes them ``update_hz`` times a second on a
drift-free grid; on exit everything is closed. Faults are logged once as they start and end, and a
``plc_restart`` fault closes both servers (ports and connections) and brings fresh ones back after it.

Scenario time is ``(clock() - start) * speed``; ``clock`` is injectable so tests hold time still. OPC UA
values carry the scenario instant as source timestamp (``start + scenario time``), so a fast-forwarded
run records hours of data with hours of timestamps.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from asyncua import Server, ua
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.errors import FatalError
from plugins.simulator.machine import Machine
from plugins.simulator.mapping import NAMESPACE, OPCUA_PATH
from plugins.simulator.scenario import Scenario

Clock = Callable[[], float]


class Simulator:
    """Both servers of one machine and the loop that keeps their values current."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        host: str = "127.0.0.1",
        opcua_port: int = 4840,
        modbus_port: int = 5020,
        speed: float = 1.0,
        duration: float | None = None,
        clock: Clock = time.time,
        log: Any = None,
    ) -> None:
        self.scenario = scenario
        self.machine = Machine(scenario)
        self.host, self.opcua_port, self.modbus_port = host, opcua_port, modbus_port
        self.speed, self.duration, self.clock = speed, duration, clock
        self.log = log or structlog.get_logger().bind(component="simulator")
        self.start_wall = clock()
        self.values: dict[str, float] = {}
        self.t = 0.0  # scenario time of the served values
        self.up = False
        self.namespace_index = -1
        self._opcua: Server | None = None
        self._nodes: dict[str, ua.NodeId] = {}
        self._modbus: ModbusTcpServer | None = None
        self._registers: list[int] = [0] * (2 * len(scenario.signals))
        self._dropped: set[int] = set()  # signal indexes answering no value
        self._last_event_t = -math.inf
        self.finished = asyncio.Event()  # set once scenario time reaches ``duration``

    def scenario_time(self) -> float:
        return (self.clock() - self.start_wall) * self.speed

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start both servers serving the values at the current scenario time."""
        self.t = self.scenario_time()
        self._update_values(self.t)
        await self._start_servers()
        await self._publish_opcua()

    async def stop(self) -> None:
        await self._stop_servers()

    async def run(self) -> None:
        """Refresh values until cancelled, or until scenario time reaches ``duration``."""
        loop = asyncio.get_running_loop()
        period = 1.0 / self.scenario.update_hz
        next_at = loop.time()
        while True:
            await self.tick()
            if self.duration is not None and self.t >= self.duration:
                self.log.info("scenario finished", scenario_s=round(self.t, 1))
                self.finished.set()
                return
            next_at += period
            if next_at < loop.time():  # overran (paused laptop, busy CPU): skip, do not pile up
                next_at = loop.time()
            await asyncio.sleep(next_at - loop.time())

    async def tick(self) -> None:
        """One update: log fault edges, follow PLC restarts, serve the values at the current time."""
        t = self.scenario_time()
        for event in self.machine.events(self._last_event_t, t):
            self.log.warning(
                "fault " + ("injected" if event.edge == "start" else "ended"),
                fault=event.fault.type,
                scenario_s=round(event.t, 1),
                detail=event.fault.describe(),
            )
        self._last_event_t = t
        self.t = t
        self._update_values(t)
        down = self.machine.plc_down(t)
        if down and self.up:
            await self._stop_servers()
            self.log.warning("PLC restart: servers closed", scenario_s=round(t, 1))
        elif not down and not self.up:
            try:
                await self._start_servers()
            except FatalError as exc:  # port still held by the old socket: try again next tick
                self.log.warning("PLC restart: cannot reopen the servers yet", error=str(exc))
                return
            self.log.info("PLC restart: servers back", scenario_s=round(t, 1))
        if self.up:
            await self._publish_opcua()

    # --- values ------------------------------------------------------------------------------------
    def _update_values(self, t: float) -> None:
        self.values = self.machine.sample(t)
        regs: list[int] = []
        dropped: set[int] = set()
        for i, name in enumerate(self.machine.names):
            value = self.values[name]
            if math.isnan(value):
                dropped.add(i)
                value = 0.0
            regs.extend(struct.unpack(">HH", struct.pack(">f", value)))
        self._registers, self._dropped = regs, dropped

    async def _publish_opcua(self) -> None:
        server = self._opcua
        if server is None:
            return
        # asyncua types timestamps as its own DateTime, a datetime subclass; a plain aware datetime is what it sends.
        stamp = cast(ua.DateTime, datetime.fromtimestamp(self.start_wall + self.t, UTC))
        now = cast(ua.DateTime, datetime.now(UTC))
        for name, node in self._nodes.items():
            value = self.values[name]
            if math.isnan(value):
                dv = ua.DataValue(
                    ua.Variant(None, ua.VariantType.Null),
                    StatusCode=ua.StatusCode(ua.UInt32(ua.StatusCodes.BadNoCommunication)),
                    SourceTimestamp=stamp,
                    ServerTimestamp=now,
                )
            else:
                dv = ua.DataValue(
                    ua.Variant(value, ua.VariantType.Double),
                    SourceTimestamp=stamp,
                    ServerTimestamp=now,
                )
            await server.write_attribute_value(node, dv)

    async def _modbus_action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Called by pymodbus on every request: copy in the live values, or refuse a dropped signal."""
        first = (address - self.scenario.modbus_base_address) // 2
        last = (address + count - 1 - self.scenario.modbus_base_address) // 2
        if any(first <= i <= last for i in self._dropped):
            return ExcCodes.GATEWAY_NO_RESPONSE
        offset = self.scenario.modbus_base_address - start_address
        current_registers[offset : offset + len(self._registers)] = self._registers
        return None

    # --- servers -----------------------------------------------------------------------------------
    async def _start_servers(self) -> None:
        try:
            await self._start_opcua()
            await self._start_modbus()
        except OSError as exc:
            await self._stop_servers()
            raise FatalError(
                f"simulator cannot listen on {self.host} (OPC UA port {self.opcua_port}, Modbus port "
                f"{self.modbus_port}): {exc.strerror or exc}; choose free ports with --opcua-port/--modbus-port"
            ) from exc
        self.up = True

    async def _start_opcua(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.opcua_port}{OPCUA_PATH}")
        server.set_server_name(f"edge-agent simulator ({self.scenario.name})")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NAMESPACE)
        obj = await server.nodes.objects.add_object(
            ua.NodeId(ua.String(self.scenario.name), ua.Int16(idx)), ua.QualifiedName(self.scenario.name, idx)
        )
        self._nodes = {}
        for sig in self.scenario.signals:
            node = await obj.add_variable(
                ua.NodeId(ua.String(f"{self.scenario.name}.{sig.key}"), ua.Int16(idx)),
                ua.QualifiedName(sig.key, idx),
                ua.Variant(0.0, ua.VariantType.Double),
            )
            self._nodes[sig.key] = node.nodeid
        self._opcua, self.namespace_index = server, idx
        try:
            await server.start()
        except BaseException:
            self._opcua = None
            await server.iserver.stop()  # start() failed after the internal server began
            raise

    async def _start_modbus(self) -> None:
        n = len(self.scenario.signals)
        device = SimDevice(
            id=0,  # answer every unit id
            simdata=[
                SimData(
                    address=self.scenario.modbus_base_address,
                    values=[0.0] * n,
                    datatype=DataType.FLOAT32,
                    readonly=True,
                )
            ],
            action=self._modbus_action,
        )
        server = ModbusTcpServer(device, address=(self.host, self.modbus_port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus reports a failed bind this way
            raise OSError(f"Modbus server cannot listen: {exc}") from exc
        self._modbus = server

    async def _stop_servers(self) -> None:
        self.up = False
        opcua, self._opcua = self._opcua, None
        modbus, self._modbus = self._modbus, None
        if modbus is not None:
            await modbus.shutdown()
        if opcua is not None:
            await opcua.stop()


@asynccontextmanager
async def run_simulator(scenario: Scenario, **options: Any) -> AsyncIterator[Simulator]:
    """Run the simulator for the body of an ``async with``.

    Args:
        scenario: the machine and its faults.
        options: keyword arguments of ``Simulator``: ``host``, ``opcua_port``, ``modbus_port`` (where the two
            servers listen), ``speed`` (scenario seconds per wall second), ``duration`` (stop refreshing
            once scenario time reaches it; servers stay up until exit), ``clock`` (tests pass a fake one
            to hold time still) and ``log``.

    Raises:
        FatalError: a port is taken.
    """
    sim = Simulator(scenario, **options)
    await sim.start()
    sim.log.info(
        "simulator serving",
        scenario=scenario.name,
        opcua=f"opc.tcp://{sim.host}:{sim.opcua_port}{OPCUA_PATH}",
        modbus=f"{sim.host}:{sim.modbus_port}",
        speed=sim.speed,
    )
    updater = asyncio.create_task(sim.run(), name=f"simulator-{scenario.name}-update")
    try:
        yield sim
    finally:
        updater.cancel()
        await asyncio.wait([updater])
        await sim.stop()
        if not updater.cancelled() and updater.exception() is not None:
            raise updater.exception()  # type: ignore[misc]  # checked not None on the line above
