"""The ``edge-agent`` command.

Exit codes: 0 success; 1 a runtime failure (``once``/``check --connect``: a source that reads no good tag
or a sink that cannot be reached; ``record`` refused; ``train`` failed); 2 a configuration problem
(printed with file, key path and fix; never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal

from agent import __version__
from agent.errors import ConfigError
from agent.ops import logs


def _load(path: str) -> Any:
    from agent.config.load import load_config

    return load_config(path)


def security_warnings(cfg: Any) -> list[tuple[str, str]]:
    """(component name, warning) for every enabled source and sink running with weakened security."""
    return [
        (item.name or item.type, text)
        for item in [*cfg.sources, *cfg.sinks]
        if item.enabled
        for text in item.security_warnings()
    ]


def cmd_run(args: argparse.Namespace) -> int:
    from agent.plugin import State
    from agent.runtime.core import Runtime, run_until_stopped

    cfg = _load(args.config)
    logs.configure(cfg.agent.log_level, cfg.agent.log_format)
    log = logs.get("security")
    for name, text in security_warnings(cfg):
        log.warning("insecure setting", target=name, warning=text)
    runtime = Runtime(cfg, args.config)
    asyncio.run(run_until_stopped(runtime, asyncio.Event()))
    failed = [name for name, src in runtime.sources.items() if src.ctx.status.state is State.DOWN]
    return 1 if failed else 0


def cmd_check(args: argparse.Namespace) -> int:
    from agent.checks import connect_all, summary
    from agent.runtime.parts import load_models

    cfg = _load(args.config)
    print(summary(cfg, load_models(cfg, args.config), args.config))
    warnings = security_warnings(cfg)
    if warnings:
        print(f"\nsecurity warnings ({len(warnings)}):")
        print("\n".join(f"  {name}: {text}" for name, text in warnings))
    if args.connect:
        logs.configure("warning", "console")
        return asyncio.run(connect_all(cfg))
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    from agent.checks import read_all

    cfg = _load(args.config)
    logs.configure("warning", "console")
    return asyncio.run(read_all(cfg, args.json))


def cmd_plugins(args: argparse.Namespace) -> int:
    from agent.registry import DIST, installed

    kinds: tuple[Literal["source", "sink"], ...] = ("source", "sink")
    for kind in kinds:
        print(f"{kind}s:")
        for spec, dist in installed(kind):
            origin = "built-in" if dist == DIST else "entry point"
            print(f"  {spec.type:<10} {spec.summary}  [{origin}]")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from agent.config.load import config_model

    print(json.dumps(config_model().model_json_schema(), indent=2))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from agent.registry import registry

    specs = {**registry("source"), **registry("sink")}
    if args.plugin not in specs:
        print(f"no plugin {args.plugin!r}; see `edge-agent plugins`", file=sys.stderr)
        return 2
    print(specs[args.plugin].sample_text() or f"# {args.plugin} ships no sample config")
    return 0


CORE_COMMANDS = ("run", "check", "once", "plugins", "schema", "sample")


def build_parser(full: bool = True) -> argparse.ArgumentParser:
    """The command line; ``full=False`` leaves out the offline and plugin commands, whose modules import
    numpy, onnx and the training code: ``edge-agent run`` starts without them (issue 17: start-up)."""
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Streaming edge telemetry agent: PLCs in, features and anomaly alerts out.",
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, config: bool = True) -> Any:
        p = sub.add_parser(name, help=help, description=help)
        if config:
            p.add_argument("-c", "--config", required=True, help="the TOML config file")
        p.set_defaults(func=func)
        return p

    add(
        "run",
        cmd_run,
        "run the agent until SIGTERM/SIGINT (drains and flushes, then exits); SIGHUP reloads the config "
        "file: only what changed restarts, buffered data is kept, an invalid file is refused and the "
        "running config stays",
    )
    check = add(
        "check", cmd_check, "validate the config and models, print a summary; no network unless --connect"
    )
    check.add_argument("--connect", action="store_true", help="also connect to every source and sink once")
    once = add("once", cmd_once, "read every source once, print the readings, exit")
    once.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    add("plugins", cmd_plugins, "list built-in and installed plugins", config=False)
    add("schema", cmd_schema, "print the JSON Schema of the config file (for editors)", config=False)
    sample = add("sample", cmd_sample, "print a plugin's sample config", config=False)
    sample.add_argument("plugin", help="plugin type, e.g. modbus")
    if not full:
        return parser
    from agent.demo.command import add_demo_command
    from agent.learn.commands import add_commands
    from agent.registry import command_adders

    add_commands(sub)
    add_demo_command(sub)
    for add_plugin_commands in command_adders():
        add_plugin_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(full=not argv or argv[0] not in CORE_COMMANDS).parse_args(argv)
    try:
        code = int(args.func(args))
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edge-agent schema | head`
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
