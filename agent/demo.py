"""``edge-agent demo``: zero setup, from a simulated pump to explained alerts in about a minute.

Steps: start the simulator in-process, fast-forwarded; find an MQTT broker (the one at ``--broker`` when
it answers, else a ``mosquitto`` started on a free port with a temp config, else none); write an agent
config into the state folder; record the warm-up with ``agent.learn.record``; train with ``agent.learn``; run
the real runtime on the simulator's faults with a pretty stdout sink for alerts and an MQTT sink.

Why a local ``mosquitto`` and not an embedded pure-Python broker: mosquitto is what users deploy, so the
demo shows the real thing, and a Python broker would be one more dependency with its own bugs.

The pipeline reads the OPC UA tags because they carry the simulator's timestamps (scenario time, which
fast-forwards); Modbus has no timestamps, so its readings are stamped with the wall clock and only go to
MQTT as raw readings. Windows are sized in scenario time from the speed: a grid period of one simulator
update (``speed / update_hz`` seconds, at least 1 s), windows of 10 periods every 2 periods.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from agent.config.base import parse_duration
from agent.errors import ModelError
from agent.ops import logs

PREFIX = "edge-agent-demo"
AGENT_ID = "demo"


def simulator() -> Any:
    """The simulator plugin's tool module, through the ``edge_agent.tools`` entry point."""
    from agent.plugin import tool

    return tool("simulator")


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


@dataclass
class Broker:
    host: str
    port: int
    proc: subprocess.Popen[bytes] | None = None  # a mosquitto we started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _reachable(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    for path in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if found is None and Path(path).exists():
            found = path
    return found


def _start_mosquitto(binary: str, port: int, state: Path) -> subprocess.Popen[bytes]:
    """A mosquitto on 127.0.0.1:``port``, anonymous, no persistence, logging into ``state``."""
    conf = state / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    # As root, mosquitto switches to the user "mosquitto", which may not be able to write the log.
    lines += [f"log_dest file {state / 'mosquitto.log'}", *(["user root"] if os.geteuid() == 0 else [])]
    conf.write_text("\n".join(lines) + "\n")
    return subprocess.Popen(
        [binary, "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def find_broker(address: str, state: Path) -> Broker | None:
    """The broker at ``address`` if it accepts connections, else a started local mosquitto, else None."""
    host, _, port_text = address.rpartition(":")
    host, port = host or "127.0.0.1", int(port_text or 1883)
    if await _reachable(host, port):
        print(f"# MQTT: using the broker at {host}:{port}")
        return Broker(host, port)
    binary = _mosquitto_binary()
    if binary is None:
        print(f"# MQTT: no broker at {host}:{port} and no mosquitto binary: continuing without MQTT")
        print("#       (install mosquitto, or pass --broker HOST:PORT, to see the MQTT topics)")
        return None
    wanted, port = f"{host}:{port}", _free_port()
    proc = await asyncio.to_thread(_start_mosquitto, binary, port, state)
    broker = Broker("127.0.0.1", port, proc)
    deadline = time.monotonic() + 5
    while proc.poll() is None and time.monotonic() < deadline:
        if await _reachable("127.0.0.1", port):
            print(f"# MQTT: no broker at {wanted}; started {binary} on 127.0.0.1:{port}")
            return broker
        await asyncio.sleep(0.05)
    broker.stop()
    print(f"# MQTT: {binary} did not start (see {state / 'mosquitto.log'}): continuing without MQTT")
    return None


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def demo_config(scenario: Any, opcua_port: int, modbus_port: int, speed: float, broker: Broker | None) -> str:
    """The agent config of the demo: simulator sources, one pipeline over the pump, stdout and MQTT sinks."""
    sim = simulator()
    opcua_endpoint, signal_map, sources_toml = sim.opcua_endpoint, sim.signal_map, sim.sources_toml

    period = max(speed / scenario.update_hz, 1.0)
    signals = signal_map(scenario)
    lines = [
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
        f"endpoint = {_q(opcua_endpoint('127.0.0.1', opcua_port))}",
        'mode = "subscription"',
        "publishing_interval = 0.25",
        f"sampling_interval = {0.5 / scenario.update_hz!r}",
        "queue_size = 20",
        'trigger = "status_value_timestamp"   # a stuck sensor still reports, with new timestamps',
        "",
    ]
    for name, where in signals.items():
        lines += ["[[sources.tags]]", f"name = {_q(name)}", f"node = {_q(where['opcua_nsu_node_id'])}"]
        lines += [f"unit = {_q(where['unit'])}", ""]
    modbus = sources_toml(scenario, opcua_port=opcua_port, modbus_port=modbus_port).split("[[sources]]")
    lines += ["[[sources]]" + modbus[2], ""]
    tags = ", ".join(_q(n) for n in signals)
    lines += [
        "[[pipelines]]",
        f'name = "{scenario.name}"',
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
    if broker is not None:
        lines += [
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
    return "\n".join(lines)


async def _demo(
    args: argparse.Namespace, scenario: Any, warmup: float, end: float | None, state: Path
) -> int:
    from agent.learn.record import stop_on_signals

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
        opcua_port, modbus_port = _free_port(), _free_port()
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
    from agent.learn.record import human, record
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
