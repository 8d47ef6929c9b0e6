"""Modbus source: TCP, RTU and RTU over TCP; every data type and byte order; optimal request plans.

Only ``config`` is imported here, so validating a config never imports pymodbus.
"""

from __future__ import annotations

from agent.registry import PluginSpec
from plugins.modbus.config import ModbusSourceConfig

SPEC = PluginSpec(
    type="modbus",
    kind="source",
    config=ModbusSourceConfig,
    impl="plugins.modbus.source:ModbusSource",
    summary="Modbus TCP / RTU / RTU-over-TCP devices: bits and registers of every type and byte order.",
    sample="plugins.modbus:sample.toml",
)
