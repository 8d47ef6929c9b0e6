"""Cost of encoding a readings message, per reading, in one run (issue 17).

    python benchmarks/bench_encode.py [--readings 500] [--rounds 200]

Four ways to get a per-source batch of readings onto the wire, same JSON out:
    old path      ``Reading.to_dict`` per reading, stdlib ``json`` for the outbox, ``json.loads`` at take,
                  stdlib ``json`` again in the MQTT encoder (what 0.1 did)
    stdlib once   dicts built at encode time, stdlib ``json`` once
    orjson once   ``agent.records.WireEncoder``: dicts built inside the call, orjson once (what runs now)
    columnar      orjson of parallel arrays (tags, ts, values, quality): a smaller, different schema,
                  measured to show what a schema change would still buy
Printed: ns per reading (median of 9 interleaved repeats), the ratio to the old path, bytes per reading.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.records import Kind, Message, Reading, WireEncoder


def batch(n: int) -> Message:
    readings = [Reading(f"plc.t{i}", 1_796_000_000.0 + i / 1000, 20.0 + i * 0.37) for i in range(n)]
    return Message(Kind.READINGS, "plc", 1_796_000_000.0, {"source": "plc", "readings": readings})


def old_path(message: Message) -> bytes:
    payload = {"source": "plc", "readings": [r.to_dict() for r in message.payload["readings"]]}
    stored = json.dumps(payload, separators=(",", ":"), default=str)
    body = json.dumps(json.loads(stored), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return ('{"schema":"edge-agent/readings/1","agent":"a","seq":1' + "," + body[1:]).encode()


def stdlib_once(message: Message) -> bytes:
    rows = [
        {"tag": r.tag, "ts": r.ts, "value": r.value, "quality": r.quality.value}
        for r in message.payload["readings"]
    ]
    return json.dumps({"source": "plc", "readings": rows}, separators=(",", ":")).encode()


def columnar(message: Message) -> bytes:
    rs = message.payload["readings"]
    return orjson.dumps(
        {
            "source": "plc",
            "tags": [r.tag for r in rs],
            "ts": [r.ts for r in rs],
            "values": [r.value for r in rs],
            "quality": [r.quality for r in rs],
        }
    )


def timed(cases: list[Callable[[Message], bytes]], message: Message, rounds: int) -> list[tuple[float, int]]:
    """Median seconds per call and output size of each case; the cases take turns, 9 repeats, so a
    change in the machine's load hits them alike."""
    runs: list[list[float]] = [[] for _ in cases]
    sizes = [len(fn(message)) for fn in cases]
    for _ in range(9):
        for i, fn in enumerate(cases):
            start = time.perf_counter()
            for _ in range(rounds):
                fn(message)
            runs[i].append((time.perf_counter() - start) / rounds)
    return [(statistics.median(r), size) for r, size in zip(runs, sizes, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    message = batch(args.readings)
    encoder = WireEncoder("a")
    cases: list[tuple[str, Callable[[Message], bytes]]] = [
        ("old path (dicts, json x2, loads)", old_path),
        ("stdlib json once", stdlib_once),
        ("orjson once (WireEncoder, now)", lambda m: encoder(m, 1)),
        ("columnar orjson (other schema)", columnar),
    ]
    base = None
    print(f"{'case':36} {'ns/reading':>10} {'vs old':>7} {'B/reading':>9}")
    results = timed([fn for _, fn in cases], message, args.rounds)
    for (name, _), (seconds, size) in zip(cases, results, strict=True):
        per = seconds / args.readings * 1e9
        base = base or per
        print(f"{name:36} {per:10.0f} {base / per:6.2f}x {size / args.readings:9.1f}")


if __name__ == "__main__":
    main()
