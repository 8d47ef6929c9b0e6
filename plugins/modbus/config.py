"""Configuration of the Modbus source: one connection setting, several devices, many tags.

Pydantic only; importing this module never imports pymodbus, so ``edge-agent check`` stays light.
Addresses are converted once here (``TagConfig.protocol_address``) so the rest of the plugin only ever
sees 0-based protocol addresses.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import Field, model_validator

from agent.config.base import Duration, Model, SourceConfig, TagConfig
from plugins.modbus.decode import (
    ALL_TYPES,
    FLOAT_TYPES,
    INT_TYPES,
    ORDERS,
    REGISTER_TYPES,
    register_count,
    resolve_order,
)

Table = Literal["coil", "discrete_input", "input_register", "holding_register"]
DataType = Literal[
    "bool", "bit", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"
]
BIT_TABLES = ("coil", "discrete_input")
ALL_ORDERS = tuple(o for width in ORDERS.values() for o in width)
# Leading digit of Modicon-style numbers (40001 = first holding register) for each table.
MODICON_PREFIX = {"coil": 0, "discrete_input": 1, "input_register": 3, "holding_register": 4}


class ModbusTag(TagConfig):
    """One value read from one device: where it is, and how its registers are decoded."""

    device: str | None = Field(
        default=None, description="Name of the device it is read from; may be left out when there is one."
    )
    table: Table = Field(
        default="holding_register",
        description="coil, discrete_input (single bits) or input_register, holding_register (16-bit words).",
    )
    address: int = Field(
        ge=0,
        le=465_536,
        description="Address of the first register or bit, in the source's `address_base` convention.",
    )
    type: DataType = Field(
        default="uint16",
        description="bool (coil/discrete input), bit (one bit of a register, with `bit`), int16, uint16, "
        "int32, uint32, int64, uint64, float32, float64, string (with `length`).",
    )
    order: str | None = Field(
        default=None,
        description="Byte/word order: AB, BA (16-bit); ABCD, BADC, CDAB, DCBA (32-bit); ABCDEFGH, BADCFEHG, "
        "GHEFCDAB, HGFEDCBA (64-bit). Defaults to the device's `order`.",
    )
    bit: int | None = Field(
        default=None, ge=0, le=15, description="Bit number for type bit; 0 = least significant."
    )
    length: int | None = Field(default=None, ge=1, le=240, description="Characters (bytes) of a string tag.")
    scale: float = Field(
        default=1.0, description="Multiplier applied to numeric values: raw * scale + offset."
    )
    offset: float = Field(default=0.0, description="Added to numeric values after scaling.")

    @model_validator(mode="after")
    def _check(self) -> ModbusTag:
        bits_table = self.table in BIT_TABLES
        if bits_table and self.type != "bool":
            raise ValueError(
                f"type {self.type!r} is read from registers, but a {self.table} table holds single bits: "
                f"use type = 'bool', or table = 'holding_register' / 'input_register'"
            )
        if not bits_table and self.type == "bool":
            raise ValueError(
                f"type 'bool' is for coil and discrete_input tables; for one bit of a {self.table} "
                "use type = 'bit' with bit = N"
            )
        if (self.bit is None) != (self.type != "bit"):
            raise ValueError(
                "type 'bit' needs `bit = N` (0-15)" if self.type == "bit" else "`bit` needs type = 'bit'"
            )
        if (self.length is None) != (self.type != "string"):
            raise ValueError(
                "type 'string' needs `length` (characters)"
                if self.type == "string"
                else "`length` needs type = 'string'"
            )
        numeric = self.type in INT_TYPES or self.type in FLOAT_TYPES
        if not numeric and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError(f"scale and offset apply to numbers, not to type {self.type!r}")
        if self.order is not None:
            if self.type not in REGISTER_TYPES:
                raise ValueError(f"`order` does not apply to type {self.type!r}")
            if self.order not in ALL_ORDERS:
                raise ValueError(f"unknown order {self.order!r}; use one of {', '.join(ALL_ORDERS)}")
            resolve_order(self.type, self.order)
        return self

    @property
    def count(self) -> int:
        """Registers (or bits) this tag occupies."""
        return register_count(self.type, self.length or 0)

    def protocol_address(self, base: int) -> int:
        """The 0-based address sent on the wire, from the configured address and the address base.

        With base 0 the address is sent as is. With base 1 it is a 1-based number as printed in many
        manuals: ``1`` is protocol address 0, and Modicon numbers whose leading digit names the table are
        accepted (``40001`` or ``400001`` = holding register 0, ``30001`` = input register 0,
        ``10001`` = discrete input 0); a leading digit naming another table is an error.

        Raises:
            ValueError: the number does not fit the table or the 0-65535 range.
        """
        number = self.address
        if base == 1:
            if number == 0:
                raise ValueError("address 0 does not exist with address_base = 1 (numbering starts at 1)")
            prefix, rest = (
                (number // 100_000, number % 100_000)
                if number >= 100_000
                else (
                    number // 10_000,
                    number % 10_000,
                )
            )
            if number >= 10_000:
                if prefix != MODICON_PREFIX[self.table]:
                    raise ValueError(
                        f"address {number} is a Modicon number of another table (prefix {prefix}), but "
                        f"the tag's table is {self.table} (prefix {MODICON_PREFIX[self.table]}); "
                        "fix the table or the address"
                    )
                number = rest
                if number == 0:
                    raise ValueError(
                        f"address {self.address}: Modicon numbers start at 1 after the table digit"
                    )
            number -= 1
        if number + self.count > 65_536:
            raise ValueError(f"address {self.address} plus {self.count} registers runs past 65535")
        return number


class ModbusDevice(Model):
    """One Modbus unit (slave): its id, its timing and its request limits."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", description="Name used by tags and in logs.")
    unit: int = Field(default=1, ge=0, le=255, description="Unit (slave) id; 1-247 on serial lines.")
    host: str | None = Field(default=None, description="Overrides the source's host (tcp, rtu_over_tcp).")
    port: int | None = Field(default=None, ge=1, le=65535, description="Overrides the source's TCP port.")
    interval: Duration = Field(
        default=1.0, gt=0, description="Poll interval; polls stay on a drift-free grid."
    )
    timeout: Duration = Field(
        default=1.0,
        gt=0,
        description="Wait for a connect or an answer; devices sharing an endpoint use the longest of theirs.",
    )
    order: str = Field(
        default="ABCD",
        description="Default order of this device's tags, 32-bit vocabulary: ABCD, BADC, CDAB, DCBA; 16- and "
        "64-bit tags use the matching byte swap / word order (CDAB -> AB and GHEFCDAB).",
    )
    max_registers: int = Field(default=125, ge=1, le=125, description="Most registers read in one request.")
    max_bits: int = Field(
        default=2000, ge=1, le=2000, description="Most coils/discrete inputs in one request."
    )
    max_gap: int = Field(
        default=10,
        ge=0,
        le=124,
        description="Most unused registers bridged to merge two reads (16 x this many bits on bit tables).",
    )

    @model_validator(mode="after")
    def _check(self) -> ModbusDevice:
        if self.order not in ORDERS[4]:
            raise ValueError(f"device order {self.order!r} must be one of {', '.join(ORDERS[4])}")
        return self


class ModbusSourceConfig(SourceConfig):
    """A Modbus connection (TCP, RTU serial line, or RTU framing over TCP) with its devices and tags."""

    type: Literal["modbus"]
    transport: Literal["tcp", "rtu", "rtu_over_tcp"] = Field(
        default="tcp",
        description="tcp (Modbus TCP), rtu (serial line), rtu_over_tcp (serial server/gateway).",
    )
    host: str | None = Field(default=None, description="Host of tcp and rtu_over_tcp devices.")
    port: int = Field(default=502, ge=1, le=65535, description="TCP port of tcp and rtu_over_tcp devices.")
    serial_port: str | None = Field(default=None, description="Serial device for rtu, e.g. /dev/ttyUSB0.")
    baudrate: int = Field(default=19200, gt=0, description="Serial speed in bit/s.")
    parity: Literal["N", "E", "O"] = Field(
        default="E", description="Serial parity: N, E (Modbus default), O."
    )
    stopbits: Literal[1, 2] = Field(default=1, description="Serial stop bits.")
    bytesize: Literal[7, 8] = Field(default=8, description="Serial data bits.")
    request_pause: Duration = Field(
        default=0.0,
        ge=0,
        description="Silence kept after each response before the next request on the same connection "
        "(slow serial devices and gateways).",
    )
    address_base: Literal[0, 1] = Field(
        default=0,
        description="0: addresses are protocol addresses (0-65535). 1: 1-based numbers as in manuals, "
        "Modicon 40001 / 400001 style accepted.",
    )
    backoff_max: Duration = Field(
        default=30.0, gt=0, description="Longest wait between retries of a dead device."
    )
    devices: list[ModbusDevice] = Field(min_length=1, description="The units read through this connection.")
    tags: list[ModbusTag] = Field(default_factory=list, description="The tags read from the devices.")

    @model_validator(mode="after")
    def _check(self) -> ModbusSourceConfig:
        names = [d.name for d in self.devices]
        if dup := sorted(n for n, k in Counter(names).items() if k > 1):
            raise ValueError(f"device names must be unique; repeated: {', '.join(dup)}")
        tag_names = [t.name for t in self.tags]
        if dup := sorted(n for n, k in Counter(tag_names).items() if k > 1):
            raise ValueError(f"tag names must be unique; repeated: {', '.join(dup)}")
        if self.transport == "rtu":
            if not self.serial_port:
                raise ValueError("transport 'rtu' needs serial_port (e.g. '/dev/ttyUSB0')")
            if any(d.host or d.port for d in self.devices):
                raise ValueError("devices on an rtu serial line share serial_port; remove their host/port")
        else:
            if missing := [d.name for d in self.devices if not (d.host or self.host)]:
                raise ValueError(
                    f"transport {self.transport!r} needs host (on the source or on {', '.join(missing)})"
                )
        by_name = {d.name: d for d in self.devices}
        for index, tag in enumerate(self.tags):
            if tag.device is None:
                if len(self.devices) > 1:
                    raise ValueError(f"tags[{index}] ({tag.name}): say which device it is on (device = ...)")
            elif tag.device not in names:
                raise ValueError(
                    f"tags[{index}] ({tag.name}) refers to device {tag.device!r}, but this source defines "
                    f"devices: {', '.join(names)}"
                )
            device = by_name[tag.device] if tag.device is not None else self.devices[0]
            try:
                tag.protocol_address(self.address_base)
                if tag.type in REGISTER_TYPES:
                    resolve_order(tag.type, tag.order or device.order)
            except ValueError as exc:
                raise ValueError(f"tags[{index}] ({tag.name}): {exc}") from None
            limit = device.max_registers
            if tag.type in REGISTER_TYPES and tag.count > limit:
                raise ValueError(
                    f"tags[{index}] ({tag.name}) needs {tag.count} registers, more than device "
                    f"{device.name!r} reads at once (max_registers = {limit})"
                )
        return self

    def device_of(self, tag: ModbusTag) -> ModbusDevice:
        """The device a tag is read from."""
        if tag.device is None:
            return self.devices[0]
        return {d.name: d for d in self.devices}[tag.device]

    def endpoint(self, device: ModbusDevice) -> str:
        """Where a device is reached: devices with the same endpoint share one connection."""
        if self.transport == "rtu":
            return f"rtu:{self.serial_port}"
        return f"{self.transport}:{device.host or self.host}:{device.port or self.port}"


__all__ = ["ALL_TYPES", "ModbusDevice", "ModbusSourceConfig", "ModbusTag"]
