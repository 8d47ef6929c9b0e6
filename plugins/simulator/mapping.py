"""Where each simulated signal is served, and the agent ``[[sources]]`` that read them.

Pure functions of the scenario and the ports; nothing here imports a protocol library.

OPC UA: namespace ``urn:edge-agent:simulator`` (index 2 on the simulator's server), one object named after
the machine, one Double variable per signal with the string node id ``<machine>.<signal>``, e.g.
``ns=2;s=pump1.bearing_temp``. Modbus TCP: any unit id, holding registers, one float32 per signal in
ABCD (big-endian) order at ``modbus_base_address + 2 * order`` (protocol addresses, 0-based).
"""

from __future__ import annotations

from typing import Any

from plugins.simulator.scenario import Scenario

NAMESPACE = "urn:edge-agent:simulator"
NAMESPACE_INDEX = 2  # 0 is OPC UA's own namespace, 1 the server's; ours is the first registered
OPCUA_PATH = "/edge-agent/simulator"


def opcua_endpoint(host: str, port: int) -> str:
    return f"opc.tcp://{host}:{port}{OPCUA_PATH}"


def signal_map(scenario: Scenario) -> dict[str, dict[str, Any]]:
    """Signal name -> where it is served and how it is encoded.

    Each entry has ``opcua_node_id`` (``ns=2;s=...``), ``opcua_nsu_node_id`` (the namespace-URI form),
    ``modbus_address`` (0-based holding register), ``modbus_table``, ``type`` (float32), ``order`` (ABCD),
    ``index`` (position in register order), ``unit`` and ``quantity``.
    """
    out: dict[str, dict[str, Any]] = {}
    for i, sig in enumerate(scenario.signals):
        node = f"{scenario.name}.{sig.key}"
        out[sig.key] = {
            "opcua_node_id": f"ns={NAMESPACE_INDEX};s={node}",
            "opcua_nsu_node_id": f"nsu={NAMESPACE};s={node}",
            "modbus_address": scenario.modbus_base_address + 2 * i,
            "modbus_table": "holding_register",
            "type": "float32",
            "order": "ABCD",
            "index": i,
            "unit": sig.unit,
            "quantity": sig.quantity,
        }
    return out


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sources_toml(
    scenario: Scenario,
    *,
    host: str = "127.0.0.1",
    opcua_port: int = 4840,
    modbus_port: int = 5020,
    interval: float = 1.0,
) -> str:
    """Agent ``[[sources]]`` sections reading every signal once over OPC UA and once over Modbus.

    Tag names are ``<signal>`` for OPC UA and ``<signal>_mb`` for Modbus, so both can be enabled at once.
    """
    signals = signal_map(scenario)
    lines = [
        f"# Sources for the simulator scenario {scenario.name!r}: the same signals over both protocols.",
        "[[sources]]",
        'type = "opcua"',
        f'name = "{scenario.name}_opcua"',
        f"endpoint = {_q(opcua_endpoint(host, opcua_port))}",
        'mode = "subscription"',
        f"publishing_interval = {interval!r}",
        "",
    ]
    for name, where in signals.items():
        lines += [
            "[[sources.tags]]",
            f"name = {_q(name)}",
            f"node = {_q(where['opcua_nsu_node_id'])}",
            f"unit = {_q(where['unit'])}",
            "",
        ]
    lines += [
        "[[sources]]",
        'type = "modbus"',
        f'name = "{scenario.name}_modbus"',
        f"host = {_q(host)}",
        f"port = {modbus_port}",
        "",
        "[[sources.devices]]",
        f'name = "{scenario.name}"',
        "unit = 1",
        f"interval = {interval!r}",
        'order = "ABCD"',
        "",
    ]
    for name, where in signals.items():
        lines += [
            "[[sources.tags]]",
            f"name = {_q(name + '_mb')}",
            'table = "holding_register"',
            f"address = {where['modbus_address']}",
            'type = "float32"',
            f"unit = {_q(where['unit'])}",
            "",
        ]
    return "\n".join(lines)
