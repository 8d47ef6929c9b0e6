"""``edge-agent simulate``: serve a simulated pump over OPC UA and Modbus TCP until stopped.

Registered by ``agent.cli`` through ``add_commands``; asyncua and pymodbus are imported only when the
command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from agent.config.base import parse_duration


def add_commands(sub: Any) -> None:
    """Add ``simulate`` to the ``edge-agent`` sub-command parser."""
    p = sub.add_parser(
        "simulate",
        help="serve a simulated pump over OPC UA and Modbus TCP, with scheduled faults",
        description="Serve a simulated pump (speed, motor current, vibration, bearing temperature, pressure, "
        "flow) over a real OPC UA server and a real Modbus TCP server, injecting the scenario's faults. "
        "Stops on Ctrl-C or SIGTERM, or after --duration.",
    )
    p.add_argument("--scenario", metavar="FILE", help="scenario TOML; default: the built-in sample")
    p.add_argument("--speed", type=float, default=1.0, help="fast-forward factor (60: an hour a minute)")
    p.add_argument("--host", default="127.0.0.1", help="address both servers listen on (default 127.0.0.1)")
    p.add_argument("--opcua-port", type=int, default=4840, help="OPC UA port (default 4840)")
    p.add_argument("--modbus-port", type=int, default=5020, help="Modbus TCP port (default 5020)")
    p.add_argument("--duration", type=parse_duration, help="stop after this much scenario time, e.g. 2h")
    p.add_argument(
        "--print-sources", action="store_true", help="print the agent [[sources]] for the simulator and exit"
    )
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run the simulator; returns the exit code (0 when stopped by a signal or at --duration)."""
    from plugins.simulator.mapping import signal_map, sources_toml
    from plugins.simulator.scenario import load_scenario

    scenario = load_scenario(args.scenario)  # ConfigError -> exit 2 in agent.cli
    if args.speed <= 0:
        print("--speed must be positive", file=sys.stderr)
        return 2
    toml = sources_toml(scenario, host=args.host, opcua_port=args.opcua_port, modbus_port=args.modbus_port)
    if args.print_sources:
        print(toml)
        return 0
    print(f"# {scenario.name}: {scenario.description}".rstrip(": "))
    print(f"# {'signal':<16} {'unit':<6} {'OPC UA node':<34} Modbus holding register (float32 ABCD)")
    for name, where in signal_map(scenario).items():
        print(f"# {name:<16} {where['unit']:<6} {where['opcua_node_id']:<34} {where['modbus_address']}")
    print("# Agent [[sources]] reading these: edge-agent simulate --print-sources")
    sys.stdout.flush()
    # The simulator's OPC UA server offers user/password logins on its None endpoint on purpose (a lab
    # PLC); asyncua warns at every start that the password may travel in plaintext, which alarms users.
    logging.getLogger("asyncua.server.server").setLevel(logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: run_simulator has closed both servers
        asyncio.run(_simulate(args, scenario))
    return 0


async def _simulate(args: argparse.Namespace, scenario: Any) -> None:
    from plugins.simulator.servers import run_simulator

    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main is not None:
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            loop.add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        async with run_simulator(
            scenario,
            host=args.host,
            opcua_port=args.opcua_port,
            modbus_port=args.modbus_port,
            speed=args.speed,
            duration=args.duration,
        ) as sim:
            await sim.finished.wait()
    except asyncio.CancelledError:
        print("# simulator stopped", file=sys.stderr)
    finally:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGTERM)
