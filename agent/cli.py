"""The ``edge-agent`` command.

Exit codes: 0 success, 1 a runtime failure (a source unreachable in ``once``/``check --connect``),
2 a configuration problem (printed with file, key path and fix; never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal

from agent import __version__
from agent.errors import ConfigError, EdgeAgentError
from agent.ops import logs


def _load(path: str) -> Any:
    from agent.config.load import load_config

    return load_config(path)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.plugin import State
    from agent.runtime.core import Runtime, run_until_stopped

    cfg = _load(args.config)
    logs.configure(cfg.agent.log_level, cfg.agent.log_format)
    runtime = Runtime(cfg, args.config)
    asyncio.run(run_until_stopped(runtime, asyncio.Event()))
    failed = [name for name, src in runtime.sources.items() if src.ctx.status.state is State.DOWN]
    return 1 if failed else 0


def cmd_check(args: argparse.Namespace) -> int:
    from agent.runtime.parts import load_models
    from agent.stream.features import feature_names

    cfg = _load(args.config)
    slots = load_models(cfg, args.config)
    out = [f"{args.config}: OK  (agent {cfg.agent.id}, state in {cfg.agent.state_dir})", ""]
    out.append(f"sources ({len(cfg.sources)}):")
    for s in cfg.sources:
        names = ", ".join(t.name for t in s.tags[:6]) + (
            f", ... (+{len(s.tags) - 6})" if len(s.tags) > 6 else ""
        )
        out.append(
            f"  {s.name:<16} {s.type:<8} {len(s.tags):>5} tags  {names}{'' if s.enabled else '  [disabled]'}"
        )
    out.append(f"pipelines ({len(cfg.pipelines)}):")
    for p in cfg.pipelines:
        w = p.window
        span = (
            f"{w.length:g}s/{w.hop_s:g}s every {w.period:g}s"
            if w.kind == "time"
            else f"{w.size}/{w.step or w.size} rows"
        )
        n = len(feature_names(p.tags, p.features))
        model = f"model {slots[p.name].model.id}" if p.name in slots else "no model (features only)"
        out.append(
            f"  {p.name:<16} {len(p.tags)} tags x {len(p.features)} features = {n}  window {span}  {model}"
        )
    out.append(f"sinks ({len(cfg.sinks)}):")
    for k in cfg.sinks:
        store = "disk" if k.outbox.durable else "memory"
        out.append(f"  {k.name or k.type:<16} {k.type:<8} kinds {','.join(k.kinds)}  outbox {store}")
    print("\n".join(out))
    if args.connect:
        return asyncio.run(_connect_all(cfg))
    return 0


async def _connect_all(cfg: Any) -> int:
    from agent.plugin import build

    failures = 0
    kinds: tuple[tuple[Any, Literal["source", "sink"]], ...] = ((cfg.sources, "source"), (cfg.sinks, "sink"))
    for section, kind in kinds:
        for item in section:
            impl, ctx = build(kind, item, cfg.agent.id, cfg.agent.state_dir)
            name = ctx.name
            try:
                if kind == "source":
                    readings = await asyncio.wait_for(impl.read_once(), 30)
                    good = sum(1 for r in readings if r.quality == "good")
                    print(f"  connect {name}: OK, {good}/{len(readings)} tags good")
                else:
                    async with asyncio.timeout(30), impl:
                        pass
                    print(f"  connect {name}: OK")
            except (EdgeAgentError, OSError, TimeoutError) as exc:
                failures += 1
                print(f"  connect {name}: FAILED: {exc or type(exc).__name__}")
    return 1 if failures else 0


def cmd_once(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    logs.configure("warning", "console")
    return asyncio.run(_once(cfg, args.json))


async def _once(cfg: Any, as_json: bool) -> int:
    from agent.plugin import build

    failed = 0
    for src in cfg.sources:
        if not src.enabled:
            continue
        try:
            source, _ = build("source", src, cfg.agent.id, cfg.agent.state_dir)
            readings = await asyncio.wait_for(source.read_once(), 60)
        except (EdgeAgentError, OSError, TimeoutError) as exc:
            failed += 1
            print(f"{src.name}: FAILED: {exc or type(exc).__name__}", file=sys.stderr)
            continue
        for r in readings:
            if as_json:
                print(json.dumps({"source": src.name, **r.to_dict()}))
            else:
                why = f"  ({r.reason})" if r.reason else ""
                print(f"{src.name:<14} {r.tag:<28} {r.value!s:>14}  {r.quality}{why}")
    return 1 if failed else 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from agent.plugin import DIST, installed

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
    from agent.plugin import registry

    specs = {**registry("source"), **registry("sink")}
    if args.plugin not in specs:
        print(f"no plugin {args.plugin!r}; see `edge-agent plugins`", file=sys.stderr)
        return 2
    print(specs[args.plugin].sample_text() or f"# {args.plugin} ships no sample config")
    return 0


def build_parser() -> argparse.ArgumentParser:
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

    add("run", cmd_run, "run the agent until SIGTERM/SIGINT")
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
    from agent.demo import add_demo_command
    from agent.learn.commands import add_commands
    from agent.plugin import command_adders

    add_commands(sub)
    add_demo_command(sub)
    for add_plugin_commands in command_adders():
        add_plugin_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
