"""Built-in plugins. The registry is this plain list; third parties use the ``edge_agent.plugins``
entry-point group (see ``agent.plugin.registry``). Only the modules named in ``impl`` import protocol
libraries, and only when a config uses them."""

from __future__ import annotations

from agent.plugin import PluginSpec
from plugins.modbus import SPEC as MODBUS
from plugins.mqtt import SPEC as MQTT
from plugins.opcua import SPEC as OPCUA
from plugins.replay import SPEC as REPLAY
from plugins.stdout import JSONL, STDOUT

BUILTIN: list[PluginSpec] = [REPLAY, STDOUT, JSONL, OPCUA, MODBUS, MQTT]
