"""The machine simulator behind ``edge-agent simulate`` and ``edge-agent demo``.

Not a source or sink: it is the *other side*, a pump served over a real OPC UA server and a real Modbus
TCP server so the agent has something realistic to read. Modules:

* ``scenario``: the scenario file (pydantic, strict) with the machine, the signals and the faults;
* ``machine``: the physics, a pure function of scenario time;
* ``mapping``: where each signal is served and the matching agent ``[[sources]]``;
* ``servers``: ``run_simulator``, the two live servers (imports asyncua and pymodbus);
* ``cli``: the ``simulate`` command.

Importing this package imports neither protocol library.
"""

from __future__ import annotations

from plugins.simulator.scenario import Scenario, load_scenario, parse_scenario

__all__ = ["Scenario", "load_scenario", "parse_scenario"]
