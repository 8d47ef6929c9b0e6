"""One Modbus connection: a pymodbus client, one request at a time, errors translated at this boundary.

Reconnects have exactly one owner, and it is not pymodbus: clients are built with
``reconnect_delay=0`` (no library reconnect task) and ``retries=0`` (no library retry), and a fresh
client is created on each connect (a client that lived through a network black hole is not reused).
The device loops decide when to connect again, each with its own capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from agent.errors import TransientError
from plugins.modbus.config import ModbusDevice, ModbusSourceConfig
from plugins.modbus.planner import Request

EXCEPTION_REASONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge (busy with a long command)",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
WRONG_ANSWER = -1  # not a Modbus code: a well-formed answer that does not fit the request
# Answers that blame the request rather than the device: worth splitting a block to find the culprit.
TAG_FAULTS = frozenset({1, 2, 3, WRONG_ANSWER})
FUNCTION_CODES = {"coil": 1, "discrete_input": 2, "holding_register": 3, "input_register": 4}


class ExceptionAnswer(Exception):
    """The device answered with a Modbus exception response: it is alive but refuses the read."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.reason = EXCEPTION_REASONS.get(code, f"exception code {code}")
        super().__init__(self.reason)


class WrongAnswer(ExceptionAnswer):
    """A well-formed answer that does not fit the request: another function code, or another count.

    Treated like an "illegal data address" refusal (issue 11 item 8): the tags of the request are BAD,
    a block is split to find the tag that causes it, and that tag is read alone from then on. Before,
    a wrong function code was taken as good data, and a wrong count marked the whole device down for good.
    """

    def __init__(self, reason: str) -> None:
        Exception.__init__(self, reason)
        self.code = WRONG_ANSWER
        self.reason = reason


class DeviceTimeout(TransientError):
    """No answer within the device's timeout."""


class Connection:
    """A serialised request stream to one endpoint, shared by the devices reached through it.

    Args:
        config: the source config (transport and serial settings).
        device: any device on this endpoint (gives host and port).
        timeout: the longest timeout of the devices on this endpoint; pymodbus waits this long for each
            answer (its own bounded wait, so the hot path pays for one timer, not two). Connects are
            bounded by the connecting device's own timeout.
        shared: several devices use this endpoint (a gateway or a serial line).
    """

    def __init__(
        self, config: ModbusSourceConfig, device: ModbusDevice, timeout: float, shared: bool = False
    ) -> None:
        self.config = config
        self.shared = shared
        self.endpoint = config.endpoint(device)
        self.host = device.host or config.host or ""
        self.port = device.port or config.port
        self.timeout = timeout
        self._client: Any = None
        self._lock = asyncio.Lock()
        self.requests = 0

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    def _new_client(self) -> Any:
        cfg = self.config
        common: dict[str, Any] = {
            "reconnect_delay": 0,
            "retries": 0,
            "timeout": self.timeout,
            "name": self.endpoint,
        }
        if cfg.transport == "rtu":
            return AsyncModbusSerialClient(
                cfg.serial_port or "",
                framer=FramerType.RTU,
                baudrate=cfg.baudrate,
                bytesize=cfg.bytesize,
                parity=cfg.parity,
                stopbits=cfg.stopbits,
                **common,
            )
        framer = FramerType.RTU if cfg.transport == "rtu_over_tcp" else FramerType.SOCKET
        return AsyncModbusTcpClient(self.host, port=self.port, framer=framer, **common)

    async def _connect(self, wait: float) -> None:
        self.close()
        client = self._new_client()
        try:
            async with asyncio.timeout(wait):
                ok = await client.connect()
        except TimeoutError:
            ok = False
        if not ok:
            client.close()
            where = (
                f"serial port {self.config.serial_port}"
                if self.config.transport == "rtu"
                else (f"{self.host}:{self.port}")
            )
            hint = (
                "missing, busy or not permitted"
                if self.config.transport == "rtu"
                else "refused or unreachable"
            )
            raise TransientError(f"cannot connect to {where} ({hint})")
        self._client = client

    def close(self) -> None:
        """Drop the client; the next read connects again."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def read(self, unit: int, request: Request, wait: float) -> list[int] | list[bool]:
        """Execute one planned read, connecting first (within ``wait`` seconds) when needed.

        Returns:
            Exactly ``request.count`` registers (ints) or bits (bools).

        Raises:
            ExceptionAnswer: the device refused the read with an exception code.
            WrongAnswer: the answer has another function code, or fewer (more) registers than asked.
            DeviceTimeout: no answer in time (a direct TCP connection is then closed: connected but silent).
            TransientError: no connection, or an answer pymodbus could not decode.
        """
        async with self._lock:
            if not self.connected:
                await self._connect(wait)
            try:
                response = await self._call(unit, request)
            except ConnectionException as exc:
                self.close()
                raise TransientError(f"connection to {self.endpoint} lost") from exc
            except ModbusIOException as exc:
                # what pymodbus raises when its wait for the answer ran out (retries=0: one wait)
                self._after_silence()
                raise DeviceTimeout(f"no answer from unit {unit} within {self.timeout:g} s") from exc
            except ModbusException as exc:
                self._after_silence()
                raise TransientError(f"unreadable answer from unit {unit}: {exc}") from exc
            finally:
                self.requests += 1
                if self.config.request_pause:
                    await asyncio.sleep(self.config.request_pause)
        if response.isError():
            raise ExceptionAnswer(int(getattr(response, "exception_code", 0)))
        expected = FUNCTION_CODES[request.table]
        if response.function_code != expected:
            raise WrongAnswer(f"answered function {response.function_code} to a function {expected} read")
        values = response.bits if request.is_bits else response.registers
        if len(values) < request.count or (not request.is_bits and len(values) != request.count):
            raise WrongAnswer(
                f"answered {len(values)} {'bits' if request.is_bits else 'registers'} "
                f"to a read of {request.count} at {request.address}"
            )
        return values[: request.count] if request.is_bits else values

    def _call(self, unit: int, request: Request) -> Any:
        client, address, count = self._client, request.address, request.count
        if request.table == "holding_register":
            return client.read_holding_registers(address, count=count, device_id=unit)
        if request.table == "input_register":
            return client.read_input_registers(address, count=count, device_id=unit)
        if request.table == "coil":
            return client.read_coils(address, count=count, device_id=unit)
        return client.read_discrete_inputs(address, count=count, device_id=unit)

    def _after_silence(self) -> None:
        # A silent direct TCP peer is usually a dead half-open connection: start afresh. A serial line or
        # a gateway serving other units stays open, or one dead unit would cut off the healthy ones.
        if self.config.transport != "rtu" and not self.shared:
            self.close()
