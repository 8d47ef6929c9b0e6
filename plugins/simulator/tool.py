"""What the simulator offers other packages (``edge-agent demo``) through the ``edge_agent.tools`` entry point.

``agent`` never imports ``plugins``; the demo asks ``agent.registry.tool("simulator")`` for this module.
Importing it imports neither protocol library: ``run_simulator`` imports them when called.
"""

from __future__ import annotations

from typing import Any

from plugins.simulator.mapping import opcua_endpoint, signal_map, sources_toml
from plugins.simulator.scenario import Scenario, load_scenario, parse_scenario

__all__ = [
    "Scenario",
    "load_scenario",
    "opcua_endpoint",
    "parse_scenario",
    "run_simulator",
    "signal_map",
    "sources_toml",
]


def run_simulator(scenario: Scenario, **kwargs: Any) -> Any:
    """``plugins.simulator.servers.run_simulator``: an async context manager serving the scenario."""
    from plugins.simulator.servers import run_simulator as run

    return run(scenario, **kwargs)
