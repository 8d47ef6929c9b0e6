"""The agent config the demo writes: simulator sources, one pipeline over the pump, stdout and MQTT sinks.

The pipeline reads the OPC UA tags because they carry the simulator's timestamps (scenario time, which
fast-forwards); Modbus has no timestamps, so its readings are stamped with the wall clock and only go to
MQTT as raw readings. Windows are sized in scenario time from the speed: a grid period of one simulator
update (``speed / update_hz`` seconds, at least 1 s), windows of 10 periods every 2 periods.
"""

from __future__ import annotations

from typing import Any

from agent.demo.broker import Broker
from agent.registry import tool

PREFIX = "edge-agent-demo"
AGENT_ID = "demo"


def simulator() -> Any:
    """The simulator plugin's tool module, through the ``edge_agent.tools`` entry point."""
    return tool("simulator")


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def demo_config(scenario: Any, opcua_port: int, modbus_port: int, speed: float, broker: Broker | None) -> str:
    """The agent config of the demo: simulator sources, one pipeline over the pump, stdout and MQTT sinks."""
    sim = simulator()
    opcua_endpoint, signal_map, sources_toml = sim.opcua_endpoint, sim.signal_map, sim.sources_toml

    period = max(speed / scenario.update_hz, 1.0)
    signals = signal_map(scenario)
    lines = _agent_and_opcua(scenario, opcua_endpoint("127.0.0.1", opcua_port))
    for name, where in signals.items():
        lines += ["[[sources.tags]]", f"name = {_q(name)}", f"node = {_q(where['opcua_nsu_node_id'])}"]
        lines += [f"unit = {_q(where['unit'])}", ""]
    modbus = sources_toml(scenario, opcua_port=opcua_port, modbus_port=modbus_port).split("[[sources]]")
    lines += ["[[sources]]" + modbus[2], ""]
    lines += _pipeline_and_stdout(scenario.name, list(signals), period)
    if broker is not None:
        lines += _mqtt_sink(broker)
    return "\n".join(lines)


def _agent_and_opcua(scenario: Any, endpoint: str) -> list[str]:
    return [
        "# Written by `edge-agent demo`.",
        "[agent]",
        f'id = "{AGENT_ID}"',
        'state_dir = "state"',
        'log_level = "warning"',
        'shutdown_timeout = "3s"',
        "",
        "[[sources]]",
        'type = "opcua"',
        f'name = "{scenario.name}_opcua"',
        f"endpoint = {_q(endpoint)}",
        'mode = "subscription"',
        "publishing_interval = 0.25",
        f"sampling_interval = {0.5 / scenario.update_hz!r}",
        "queue_size = 20",
        'trigger = "status_value_timestamp"   # a stuck sensor still reports, with new timestamps',
        "",
    ]


def _pipeline_and_stdout(name: str, signals: list[str], period: float) -> list[str]:
    tags = ", ".join(_q(n) for n in signals)
    return [
        "[[pipelines]]",
        f'name = "{name}"',
        f"tags = [{tags}]",
        'features = ["mean", "std"]',
        'model = "model.onnx"',
        "[pipelines.window]",
        f"period = {period!r}",
        f"length = {10 * period!r}",
        f"hop = {2 * period!r}",
        "[pipelines.alert]",
        "raise_after = 2",
        "clear_after = 3",
        "top = 3",
        "",
        "[[sinks]]",
        'type = "stdout"',
        'name = "alerts"',
        "pretty = true",
        'kinds = ["alert"]',
        "",
    ]


def _mqtt_sink(broker: Broker) -> list[str]:
    return [
        "[[sinks]]",
        'type = "mqtt"',
        'name = "broker"',
        f"host = {_q(broker.host)}",
        f"port = {broker.port}",
        f'prefix = "{PREFIX}"',
        'kinds = ["alert", "status", "features", "readings"]',
        "[sinks.outbox]",
        "durable = false",
        "",
    ]
