"""Encoding cost of the Sparkplug and UNS payloads against the bare libraries, same data, same run.

Usage: ``python benchmarks/bench_sparkplug.py [--batches N] [--tags K]``

N readings messages of K tags each (every value changes, so by exception sends them all):

* Sparkplug, bare protobuf: build one ``Payload`` with K metrics (alias, timestamp, double) and serialise;
* Sparkplug, edge-agent: ``translate`` (by exception, type coercion, quality, alias, seq) on the envelope;
* UNS, bare json: ``json.dumps`` of one ``{value, ts_ms, quality, unit}`` object per tag;
* UNS, edge-agent: ``Uns.items`` (newest per tag, stable type, retained items) on the envelope.

Ratios are edge-agent over bare (above 1 is faster than bare, below is the price of the features).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.records import Envelope, Kind, Message
from plugins.mqtt.uns import Uns
from plugins.sparkplug import sparkplug_b_pb2 as pb
from plugins.sparkplug.node import EdgeNode
from plugins.sparkplug.translate import translate


def envelopes(n: int, k: int) -> list[Envelope]:
    out = []
    for i in range(n):
        ts = 1_700_000_000_000 + i * 1000
        rows = [{"tag": f"t{j}", "ts_ms": ts, "value": i + j / 10, "quality": "good"} for j in range(k)]
        out.append(
            Envelope(i, i, Message(Kind.READINGS, "plc", ts / 1000, {"source": "plc", "readings": rows}))
        )
    return out


def rate(fn, items) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--tags", type=int, default=10)
    args = parser.parse_args()
    envs = envelopes(args.batches, args.tags)

    def bare_pb(env: Envelope) -> bytes:
        payload = pb.Payload(timestamp=1, seq=1)
        for j, r in enumerate(env.message.payload["readings"]):
            payload.metrics.add(alias=j + 1, timestamp=r["ts_ms"], double_value=r["value"])
        return payload.SerializeToString()

    node = EdgeNode("g", "n")
    node.birth(0, 0)
    translate(node, envs[0], 0)
    ours_pb = lambda env: translate(node, env, 1)  # noqa: E731

    def bare_json(env: Envelope) -> list[bytes]:
        return [
            json.dumps(
                {"value": r["value"], "ts_ms": r["ts_ms"], "quality": r["quality"], "unit": None}
            ).encode()
            for r in env.message.payload["readings"]
        ]

    uns = Uns("p/a", {}, 1, False)
    ours_json = lambda env: uns.items([env], lambda e: ("", b"", 0, False))  # noqa: E731

    results = {}
    for name, fn in [
        ("sparkplug bare", bare_pb),
        ("sparkplug edge-agent", ours_pb),
        ("uns bare", bare_json),
        ("uns edge-agent", ours_json),
    ]:
        rate(fn, envs[: len(envs) // 10])  # warm up
        results[name] = rate(fn, envs[1:])
    print(f"{args.batches} readings messages of {args.tags} tags, messages/s (tags/s = x{args.tags})")
    for proto in ("sparkplug", "uns"):
        bare, ours = results[f"{proto} bare"], results[f"{proto} edge-agent"]
        print(f"{proto:10} bare {bare:10.0f}  edge-agent {ours:10.0f}  ratio {ours / bare:.2f}")


if __name__ == "__main__":
    main()
