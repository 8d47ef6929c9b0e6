"""Messages/s through the durable outbox + MQTT sink against raw paho, same payloads, same broker, same run.

Usage: ``python benchmarks/bench_mqtt.py [--quick] [--messages N]``

Starts its own mosquitto (``tests.mosquitto``) on a free port. For each QoS it publishes N feature
messages (~400 bytes of JSON each):

* raw paho: ``json.dumps`` + ``client.publish`` for every message, then wait for every on_publish
  (PUBACK at QoS 1), with the same in-flight window as the sink (1000);
* edge-agent: ``outbox.append`` in steps of 200 (as the runner does), the supervised delivery loop takes
  batches of 200, publishes them, waits for the PUBACKs and acks them in the SQLite outbox (fsync=append).

Then the outbox alone: append rate per fsync policy, and replay rate of a backlog after a reopen, unpaced
and paced at the default ``replay_rate`` (2,000/s), beside raw paho publishing the same messages at the
same pace (a thread that sends 20 every 10 ms): what pacing costs the agent above what paho itself costs.
Raw paho runs its own network thread (``loop_start``), as a plain paho script does; the agent drives paho
from its event loop (no thread, issue 17), so the paced case also has a second bare baseline, "raw paho on
the loop": the same client and pace with paho driven by an asyncio loop as aiomqtt does.
CPU is process CPU time (all threads) over wall time; RSS is the resident set at the end of each case.

Rounds alternate raw paho and the agent; ratios are taken per round (the same minute of the machine) and
printed as min / median / max with the load average (``benchmarks/spread.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt

from agent.delivery.deliver import deliver
from agent.delivery.envelope import dumps, wire
from agent.delivery.memory_store import MemoryOutbox
from agent.delivery.sqlite_store import SqliteOutbox
from agent.plugin import ComponentStatus, PluginContext, State
from agent.records import Envelope, Kind, Message
from agent.supervise import Backoff, supervise
from benchmarks.spread import load, spread
from plugins.mqtt.config import MqttSinkConfig
from plugins.mqtt.sink import MqttSink
from tests.mosquitto import Mosquitto, eventually

STEP = 200


def message(n: int) -> Message:
    payload = {
        "pipeline": "press7",
        "window": {"start_ms": 1_700_000_000_000 + 1000 * n, "end_ms": 1_700_000_010_000 + 1000 * n},
        "coverage": 1.0,
        "status": "scored",
        "reason": None,
        "features": {f"tag{i}.{f}": 0.123456 * (i + n) for i in range(4) for f in ("mean", "rms", "p2p")},
        "score": 0.4213,
        "model": "press7-v3",
    }
    return Message(Kind.FEATURES, "press7", 1_700_000_010.0 + n, payload)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Meter:
    def __enter__(self) -> Meter:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.rss = rss_mb()


def raw_client(port: int, client_id: str, on_publish: Any) -> mqtt.Client:
    """A started paho client with the sink's in-flight window (1000)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def raw_paho(port: int, messages: list[Message], qos: int) -> Meter:
    done = threading.Event()
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1
        if acked == len(messages):
            done.set()

    client = raw_client(port, "bench-raw", on_publish)
    topic = "bench/raw/features/press7"
    with Meter() as meter:
        for n, m in enumerate(messages):
            client.publish(topic, dumps(wire(Envelope(n, n + 1, m), "bench")).encode(), qos)
        assert done.wait(120), f"raw paho: {acked} of {len(messages)} acknowledged"
    client.disconnect()
    client.loop_stop()
    return meter


def raw_paho_paced(port: int, messages: list[Message], rate: float, seconds: float) -> tuple[float, Meter]:
    """QoS 1 with raw paho at ``rate`` messages/s for ``seconds``: 20 messages every 20/rate seconds."""
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1

    client = raw_client(port, "bench-raw-paced", on_publish)
    topic, step = "bench/raw/features/press7", 20
    payloads = [dumps(wire(Envelope(n, n + 1, m), "bench")).encode() for n, m in enumerate(messages)]
    with Meter() as meter:
        start, sent = time.perf_counter(), 0
        while time.perf_counter() - start < seconds and sent + step <= len(payloads):
            for payload in payloads[sent : sent + step]:
                client.publish(topic, payload, 1)
            sent += step
            time.sleep(max(0.0, start + sent / rate - time.perf_counter()))
    client.disconnect()
    client.loop_stop()
    return acked / meter.wall, meter


async def raw_paho_paced_on_loop(
    port: int, messages: list[Message], rate: float, seconds: float
) -> tuple[float, Meter]:
    """``raw_paho_paced`` with paho driven by this asyncio loop: the socket watched with add_reader /
    add_writer, ``loop_misc`` every second, no network thread (the way aiomqtt drives paho)."""
    loop = asyncio.get_running_loop()
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw-loop")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.on_socket_register_write = lambda c, _, sock: loop.add_writer(sock, c.loop_write)
    client.on_socket_unregister_write = lambda c, _, sock: loop.remove_writer(sock)
    client.on_socket_close = lambda c, _, sock: loop.remove_reader(sock)
    client.connect("127.0.0.1", port)  # blocking, but loopback and before the measurement
    loop.add_reader(client.socket(), client.loop_read)
    misc: list[asyncio.TimerHandle] = []

    def tick() -> None:
        if client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            misc[:] = [loop.call_later(1.0, tick)]

    tick()
    await eventually(client.is_connected, what="the CONNACK")
    topic, step = "bench/raw/features/press7", 20
    payloads = [dumps(wire(Envelope(n, n + 1, m), "bench")).encode() for n, m in enumerate(messages)]
    with Meter() as meter:
        start, sent = time.perf_counter(), 0
        while time.perf_counter() - start < seconds and sent + step <= len(payloads):
            for payload in payloads[sent : sent + step]:
                client.publish(topic, payload, 1)
            sent += step
            await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
    client.disconnect()
    await eventually(lambda: client.socket() is None, what="the DISCONNECT written")
    for handle in misc:
        handle.cancel()
    return acked / meter.wall, meter


def make_sink(port: int, folder: Path, qos: int) -> MqttSink:
    cfg = MqttSinkConfig(type="mqtt", host="127.0.0.1", port=port, prefix="bench", qos={"features": qos})
    ctx = PluginContext("mqtt", "bench", folder, ComponentStatus("mqtt", "sink"))
    ctx.log = _quiet
    return MqttSink(cfg, ctx)


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


_quiet = _Quiet()


async def delivered(box: SqliteOutbox, n: int, what: str) -> None:
    """Until ``n`` acks are committed. ``settled`` hands over acks still waiting for a ride (they commit
    with the next append or take, ``agent.delivery.sqlite_store``), so the end is seen within 10 ms."""
    deadline = time.monotonic() + 300
    while box.stats.acked < n:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await box.settled()
        await asyncio.sleep(0.01)


async def through_agent(port: int, messages: list[Message], qos: int, folder: Path) -> Meter:
    sink = make_sink(port, folder, qos)
    outbox = SqliteOutbox(folder / f"outbox-q{qos}.sqlite", 2**30, log=_quiet, encode=sink.encode)
    task = asyncio.create_task(
        supervise(lambda: deliver(sink, outbox, STEP), sink.ctx.status, _quiet, Backoff(0.05, 0.5)),
        name="deliver",
    )
    await eventually(lambda: sink.ctx.status.state is State.UP, what="a connection")
    with Meter() as meter:
        for i in range(0, len(messages), STEP):
            outbox.append(messages[i : i + STEP])
            await asyncio.sleep(0)
        await delivered(outbox, len(messages), "every ack")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    outbox.close()
    return meter


async def append_rate(messages: list[Message], folder: Path, fsync: str | None, per_call: int) -> float:
    """Appends per second until committed (the SQLite outbox commits on its writer thread)."""
    box = (
        MemoryOutbox(2**30)
        if fsync is None
        else SqliteOutbox(folder / f"a-{fsync}-{per_call}.sqlite", 2**30, fsync=fsync)
    )
    with Meter() as meter:
        for i in range(0, len(messages), per_call):
            box.append(messages[i : i + per_call])
            if per_call == 1:
                await box.settled()  # one message per commit, as a caller that waits for each would
        await box.settled()
    box.close()
    return len(messages) / meter.wall


async def replay(
    port: int, messages: list[Message], folder: Path, rate: float, seconds: float | None, round_: int = 0
) -> tuple[float, Meter]:
    path = folder / f"replay-{rate}-{round_}.sqlite"
    box = SqliteOutbox(path, 2**30, log=_quiet)
    for i in range(0, len(messages), 1000):
        box.append(messages[i : i + 1000])
    box.close()
    box = SqliteOutbox(path, 2**30, replay_rate=rate, log=_quiet)  # a restart: all of it is backlog
    sink = make_sink(port, folder, 1)
    task = asyncio.create_task(
        supervise(lambda: deliver(sink, box, STEP), sink.ctx.status, _quiet, Backoff(0.05, 0.5)),
        name="replay",
    )
    with Meter() as meter:
        if seconds is None:
            await delivered(box, len(messages), "the whole backlog")
        else:
            await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    sent = box.stats.acked
    box.close()
    return sent / meter.wall, meter


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer messages and rounds: under a minute")
    parser.add_argument("--messages", type=int, default=None)
    args = parser.parse_args()
    n = args.messages or (10_000 if args.quick else 50_000)
    rounds = 3
    messages = [message(i) for i in range(n)]
    folder = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    broker = Mosquitto(folder / "mosquitto")
    broker.start()
    try:
        size = len(dumps(wire(Envelope(0, 1, messages[0]), "bench")))
        print(f"# {n} feature messages of {size} bytes, {rounds} rounds, {load()}")
        print(f"{'case':44} {'msg/s (median)':>15} {'ratio to raw paho, min / median / max':>38}")
        for qos in (0, 1):
            raw: list[Meter] = []
            ours: list[Meter] = []
            for r in range(rounds):
                raw.append(await asyncio.to_thread(raw_paho, broker.port, messages, qos))
                ours.append(await through_agent(broker.port, messages, qos, folder / f"q{qos}r{r}"))
            ratios = [b.wall / a.wall for a, b in zip(ours, raw, strict=True)]
            cpu = [(a.cpu / n) / (b.cpu / n) for a, b in zip(ours, raw, strict=True)]
            print(f"{f'QoS {qos} raw paho':44} {statistics.median(n / m.wall for m in raw):15.0f}")
            print(
                f"{f'QoS {qos} outbox (SQLite, fsync=append) + sink':44} "
                f"{statistics.median(n / m.wall for m in ours):15.0f} {'rate ' + spread(ratios):>38}"
            )
            print(f"{'':44} {'':15} {'CPU per message ' + spread(cpu):>38}")
        base = await append_rate(messages, folder, None, STEP)
        print(f"{'append, memory outbox, 200/call':44} {base:15.0f} {1.0:38.2f}")
        for fsync in ("never", "append", "always"):
            for per_call in (STEP, 1):
                if per_call == 1 and fsync == "never":
                    continue
                count = messages if per_call == STEP else messages[: min(n, 2000)]
                rate = await append_rate(count, folder, fsync, per_call)
                print(
                    f"{f'append, SQLite fsync={fsync}, {per_call}/call':44} {rate:15.0f} {rate / base:38.2f}"
                )
        unpaced, meter = await replay(broker.port, messages, folder, 1e9, None)
        print(
            f"{'replay after restart, unpaced':44} {unpaced:15.0f}   CPU {100 * meter.cpu / meter.wall:.0f} %"
        )
        seconds = 3.0 if args.quick else 5.0
        paced_ours, paced_raw, paced_loop = [], [], []
        for r in range(rounds):
            paced_raw.append(await asyncio.to_thread(raw_paho_paced, broker.port, messages, 2000.0, seconds))
            paced_loop.append(await raw_paho_paced_on_loop(broker.port, messages, 2000.0, seconds))
            paced_ours.append(await replay(broker.port, messages, folder, 2000.0, seconds, r))
        for name, runs in (
            ("raw paho, QoS 1 at 2000/s", paced_raw),
            ("raw paho on the loop, QoS 1 at 2000/s", paced_loop),
            ("replay after restart, replay_rate=2000", paced_ours),
        ):
            shares = [100 * m.cpu / m.wall for _, m in runs]
            print(
                f"{name:44} {statistics.median(r for r, _ in runs):15.0f}   "
                f"CPU % of a core {spread(shares, '{:.1f}')}"
            )
    finally:
        broker.kill()


if __name__ == "__main__":
    asyncio.run(main())
