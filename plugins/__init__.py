"""Built-in plugins: this plain list, registered as ``builtin = "plugins:BUILTIN"`` in the
``edge_agent.plugins`` entry-point group (see ``agent.registry.registry``), the same door third parties use.
Only the modules named in ``impl`` import protocol libraries, and only when a config uses them.

Plugins import ``agent`` (its contracts); ``agent`` reaches plugins only through entry points."""

from __future__ import annotations

from agent.registry import PluginSpec
from plugins.modbus import SPEC as MODBUS
from plugins.mqtt import SPEC as MQTT
from plugins.opcua import SPEC as OPCUA
from plugins.replay import SPEC as REPLAY
from plugins.sparkplug import SPEC as SPARKPLUG
from plugins.stdout import JSONL, STDOUT

BUILTIN: list[PluginSpec] = [REPLAY, STDOUT, JSONL, OPCUA, MODBUS, MQTT, SPARKPLUG]
