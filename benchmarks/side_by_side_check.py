"""The instruments of ``bench_side_by_side.py``: the checking subscriber, CPU and RSS of a process, a broker."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.ports import free_ports
from benchmarks.side_by_side_configs import Workload, check


@dataclass
class Tally:
    """What the subscriber saw: readings, wrong values, holes (in ``seq`` and in W3's ticks), first message."""

    readings: int = 0
    wrong: int = 0
    missing: int = 0
    first: float | None = None
    seqs: dict[str, int] = field(default_factory=dict)
    ticks: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Checker:
    """A QoS 1 subscriber to one gateway's broker that checks every reading it is sent."""

    def __init__(self, port: int, work: Workload) -> None:
        import paho.mqtt.client as mqtt

        self.tally = Tally()
        self.work = work
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"check-{port}")
        self.client.on_message = self._message
        self.client.on_connect = lambda c, *_: c.subscribe("bench/#", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        if "/readings/" not in msg.topic:
            return
        body = json.loads(msg.payload)
        with self.tally.lock:
            t = self.tally
            if t.first is None:
                t.first = time.monotonic()
            last = t.seqs.get(msg.topic)
            if last is not None and body["seq"] > last + 1:
                t.missing += body["seq"] - last - 1
            t.seqs[msg.topic] = max(body["seq"], last or 0)
            t.readings += len(body["readings"])
            for r in body["readings"]:
                tick = check(self.work, r["tag"], r["value"])
                if tick is None:
                    t.wrong += 1
                elif self.work.opcua:  # every change of every item, none skipped
                    seen = t.ticks.get(r["tag"])
                    if seen is not None and tick > seen + 1:
                        t.missing += tick - seen - 1
                    t.ticks[r["tag"]] = max(tick, seen or 0)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def cpu_s(pid: int) -> float:
    """CPU seconds of every live thread of ``pid``, in nanoseconds from schedstat (``stat`` ticks are 10 ms)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_ports(1)[0]
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc, port
