"""``edge-agent modbus-scan``: read a register block and suggest each value's type and byte order.

Added to the agent's subcommands through the ``edge_agent.commands`` entry point, like ``browse``. The
guesses come from ``plugins.modbus.byteorder.scan`` (pure); this module only reads and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from agent.errors import EdgeAgentError

MAX_BLOCK = 125  # registers in one Modbus read


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``modbus-scan`` to the agent's subcommands; it sets ``func(args) -> int``."""
    scan = sub.add_parser(
        "modbus-scan",
        help="read a block of registers and suggest types and byte orders (prints [[sources.tags]])",
        description="Reads COUNT registers from ADDRESS once and, for each stretch, shows the raw words and "
        "what they look like: a float32 in the only byte order (ABCD, BADC, CDAB, DCBA) that gives a "
        "plausible value, a 32-bit integer, or a 16-bit word. The guesses go to stderr, TOML tags to "
        "paste (names to fill in) to stdout. Check them against the values on the PLC's own display.",
    )
    scan.add_argument("target", metavar="HOST[:PORT]", help="the PLC or gateway, e.g. 192.168.10.20:502")
    scan.add_argument("--unit", type=int, default=1, help="unit (slave) id (default 1)")
    scan.add_argument(
        "--table",
        choices=("holding_register", "input_register"),
        default="holding_register",
        help="register table",
    )
    scan.add_argument("--address", type=int, default=0, help="first register, 0-based (default 0)")
    scan.add_argument(
        "--count", type=int, default=20, help=f"registers to read, at most {MAX_BLOCK} (default 20)"
    )
    scan.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (default 3)")
    scan.set_defaults(func=run_scan)


async def read_block(
    host: str, port: int, unit: int, table: str, address: int, count: int, wait: float
) -> list[int]:
    """One read of ``count`` registers, through the source's own connection class (errors translated)."""
    from plugins.modbus.config import ModbusSourceConfig
    from plugins.modbus.connection import Connection, ExceptionAnswer
    from plugins.modbus.planner import Request, Slot

    cfg = ModbusSourceConfig.model_validate({
        "type": "modbus", "name": "scan", "host": host, "port": port,
        "devices": [{"name": "scan", "unit": unit, "timeout": wait}],
        "tags": [{"name": "block", "table": table, "address": address}],
    })  # fmt: skip
    connection = Connection(cfg, cfg.devices[0], wait)
    request = Request(table, address, count, (Slot("block", table, address, count),))
    try:
        values = await connection.read(unit, request, wait)
    except ExceptionAnswer as exc:
        raise EdgeAgentError(
            f"unit {unit} refused registers {address}..{address + count - 1}: {exc.reason}"
        ) from exc
    finally:
        connection.close()
    return [int(v) for v in values]


def report(block: list[int], address: int, table: str) -> tuple[str, str]:
    """(the guesses for a person, the TOML tags) for a block read from ``address``."""
    from plugins.modbus.byteorder import scan

    lines = [f"{'address':>7}  {'registers':<11}  {'guess':<16} value"]
    tags = []
    for guess in scan(block):
        at = address + guess.offset
        words = " ".join(f"{w:04X}" for w in block[guess.offset : guess.offset + guess.count])
        kind = f"{guess.dtype} {guess.order}" if guess.count > 1 else guess.dtype
        value = f"{guess.value:.6g}" if isinstance(guess.value, float) else str(guess.value)
        lines.append(f"{at:>7}  {words:<11}  {kind:<16} {value}  ({guess.note})")
        if guess.value == 0 and guess.count == 1:
            continue  # an unused register: no tag suggested
        order = f'\norder = "{guess.order}"' if guess.count > 1 else ""
        tags.append(
            f'[[sources.tags]]\nname = "reg_{at}"\ntable = "{table}"\naddress = {at}\ntype = "{guess.dtype}"{order}'
            f"   # {value}"
        )
    return "\n".join(lines), "\n\n".join(tags)


def _target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not port:
        return text, 502
    if not port.isdigit():
        raise ValueError(f"bad port in {text!r}: use HOST or HOST:PORT")
    return host, int(port)


def run_scan(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= MAX_BLOCK:
        print(f"modbus-scan: --count must be 1..{MAX_BLOCK} (one Modbus read)", file=sys.stderr)
        return 2
    try:
        host, port = _target(args.target)
    except ValueError as exc:
        print(f"modbus-scan: {exc}", file=sys.stderr)
        return 2
    # pymodbus logs a failed connect itself; the error reaches the user below, in our words
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        block = asyncio.run(
            read_block(host, port, args.unit, args.table, args.address, args.count, args.timeout)
        )
    except EdgeAgentError as exc:
        print(f"modbus-scan: {exc}", file=sys.stderr)
        return 1
    guesses, tags = report(block, args.address, args.table)
    print(
        f"{args.count} registers from {args.table} {args.address} of unit {args.unit} at {host}:{port}",
        file=sys.stderr,
    )
    print(guesses, file=sys.stderr)
    print(tags)
    return 0
