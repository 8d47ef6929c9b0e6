"""``edge-agent demo``: zero setup, from a simulated pump to explained alerts in about a minute.

Steps: start the simulator in-process, fast-forwarded; find an MQTT broker (``agent.demo.broker``); write
an agent config into the state folder (``agent.demo.config``); record the warm-up with
``agent.learn.record``; train with ``agent.learn.trainer``; run the real runtime on the simulator's faults
with a pretty stdout sink for alerts and an MQTT sink.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import structlog

from agent.config.base import parse_duration
from agent.demo.broker import find_broker, free_port
from agent.demo.config import PREFIX, demo_config, simulator
from agent.errors import ModelError
from agent.ops import logs


def add_demo_command(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="zero-setup demo: simulated pump -> learn normal -> explained alerts (and MQTT)",
        description="Start the pump simulator, learn normal from a fast-forwarded warm-up, then run the agent "
        "on the simulator's faults and print each alert raised and cleared with its explanation. Publishes "
        "to the MQTT broker at --broker when one answers, else to a local mosquitto it starts, else to none.",
    )
    p.add_argument(
        "--broker", default="127.0.0.1:1883", help="MQTT broker HOST:PORT (default 127.0.0.1:1883)"
    )
    p.add_argument(
        "--speed", type=float, default=60.0, help="fast-forward factor (default 60: a minute a second)"
    )
    p.add_argument(
        "--warmup",
        type=parse_duration,
        help="scenario time to learn normal from (default: until 2 minutes before the first fault)",
    )
    p.add_argument(
        "--duration",
        type=parse_duration,
        help="stop at this scenario time (default: 5 minutes after the last fault ends)",
    )
    p.add_argument(
        "--scenario", metavar="FILE", help="simulator scenario TOML (default: the built-in sample)"
    )
    p.add_argument(
        "--state-dir", metavar="DIR", help="where config, recording and model go (default: a temp dir)"
    )
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    load_scenario = simulator().load_scenario

    scenario = load_scenario(args.scenario)
    if args.speed <= 0:
        print("demo: --speed must be positive")
        return 2
    first = min((f.at for f in scenario.faults), default=None)
    warmup = args.warmup
    if warmup is None:
        warmup = max(first - 120.0, 0.0) if first is not None else 1800.0
    if first is not None and warmup > first:
        print(f"# warning: the warm-up runs past the first fault (at {first:g} s): normal will include it")
    end = args.duration
    if end is None and scenario.faults:
        end = max(f.end for f in scenario.faults) + 300.0
    state = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="edge-agent-demo-"))
    state.mkdir(parents=True, exist_ok=True)
    logs.configure("info", "console")
    # Warnings, and the recoveries that end them: a user who saw "connection lost" sees it come back.
    structlog.configure(processors=[_warnings_and_recoveries, *structlog.get_config()["processors"]])
    # The OPC UA source logs a lost connection once, in plain words; asyncua's own traceback of the same
    # event (a PLC restart in the scenario) would only alarm a first-time user.
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    return asyncio.run(_demo(args, scenario, warmup, end, state.resolve()))


def _warnings_and_recoveries(logger: Any, method: str, event: Any) -> Any:
    if method in ("debug", "info") and "recovered" not in str(event.get("event", "")):
        raise structlog.DropEvent
    return event


async def _demo(
    args: argparse.Namespace, scenario: Any, warmup: float, end: float | None, state: Path
) -> int:
    from agent.learn.progress import stop_on_signals

    interrupted = asyncio.Event()  # Ctrl-C or SIGTERM, in any phase
    with stop_on_signals(interrupted):
        return await _run_demo(args, scenario, warmup, end, state, interrupted)


async def _run_demo(
    args: argparse.Namespace,
    scenario: Any,
    warmup: float,
    end: float | None,
    state: Path,
    interrupted: asyncio.Event,
) -> int:
    run_simulator = simulator().run_simulator

    broker = await find_broker(args.broker, state)
    try:
        opcua_port, modbus_port = free_port(), free_port()
        async with run_simulator(
            scenario, opcua_port=opcua_port, modbus_port=modbus_port, speed=args.speed
        ) as sim:
            config = state / "edge-agent.toml"
            config.write_text(demo_config(scenario, opcua_port, modbus_port, args.speed, broker))
            print(f"# simulator: {scenario.name} at {args.speed:g}x; agent config: {config}")
            if broker is not None:
                print(f"# live topics:  mosquitto_sub -h {broker.host} -p {broker.port} -t '{PREFIX}/#' -v")
            return await _learn_then_run(sim, config, warmup, end, state, args.speed, interrupted)
    finally:
        if broker is not None:
            broker.stop()


async def _stop_at(
    sim: Any, t: float | None, speed: float, interrupted: asyncio.Event, stop: asyncio.Event
) -> None:
    """Set ``stop`` once scenario time reaches ``t`` (it is wall time x speed; None: never) or on a signal."""
    delay = None if t is None else max(0.0, (t - sim.scenario_time()) / speed) + 0.01
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(interrupted.wait(), delay)
    stop.set()


async def _learn_then_run(
    sim: Any,
    config: Path,
    warmup: float,
    end: float | None,
    state: Path,
    speed: float,
    interrupted: asyncio.Event,
) -> int:
    from agent.config.load import load_config
    from agent.learn.commands import summary
    from agent.learn.progress import human
    from agent.learn.record import record
    from agent.learn.trainer import train_pipeline
    from agent.runtime.core import Runtime

    cfg = load_config(config)
    pipe = cfg.pipelines[0]
    stop = asyncio.Event()
    print(f"# learning normal: recording scenario time up to {human(warmup)} (~{warmup / speed:.0f} s)")
    async with asyncio.TaskGroup() as tg:
        timer = tg.create_task(_stop_at(sim, warmup, speed, interrupted, stop), name="demo-warmup-timer")
        rec = await record(cfg, pipe, state / "normal.csv", float("inf"), stop)
        timer.cancel()
    if interrupted.is_set() or rec.path is None:
        print("# demo stopped during the warm-up")
        return 0
    try:
        result, found = await asyncio.to_thread(
            train_pipeline, pipe, rec.path, state / "model.onnx", state / "model.md"
        )
    except ModelError as exc:
        print(f"# demo: training failed: {exc}")
        return 1
    if interrupted.is_set():
        print("# demo stopped during training")
        return 0
    print(f"# recorded {rec.rows} rows spanning {human(rec.span)} -> {rec.path}")
    print("\n".join("# " + line for line in summary(pipe, result, found).splitlines()[:-1]))
    until = f"until scenario time {human(end)}" if end is not None else "until Ctrl-C"
    print(f"# watching the pump for faults {until}; alerts follow", flush=True)
    runtime = Runtime(cfg, str(config))
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        timer = tg.create_task(_stop_at(sim, end, speed, interrupted, stop), name="demo-end-timer")
        await runtime.run(stop)
        timer.cancel()
    stats = runtime.pipelines[0].stats
    print(
        f"# demo finished at scenario time {human(sim.scenario_time())}: {stats.scored} windows scored, "
        f"{stats.alerts_raised} alerts raised, {stats.alerts_cleared} cleared; model card {state / 'model.md'}"
    )
    return 0
