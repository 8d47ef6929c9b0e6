"""Cost of turning a PublishResponse into readings, per item, in one run (issue 17).

    python benchmarks/bench_opcua_decode.py [--items 1000] [--repeats 9]

The same response bytes (encoded by asyncua, as a server sends them) go two ways:
    asyncua       ``struct_from_binary(PublishResponse)`` then ``status.reading`` per item (the path
                  before the fast decoder, and still the one for responses it leaves to asyncua)
    fast          ``fastpublish.decode`` then ``ChangeReader`` (one ``ReadingBatch`` for a good scan, not
                  expanded into ``Reading`` objects, as the source emits it)
Shapes: ``scan`` (one good Double scan, one timestamp: a server publishing one sample of its items),
``mixed`` (each item its own timestamp, some uncertain: the per-item path of the fast decoder).
Printed: us per item (median of ``repeats`` interleaved runs, each min of 5 decodes), the ratio fast /
asyncua, and the load average. The readings of both ways are checked equal before timing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from itertools import chain
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from agent.records import Reading
from benchmarks.spread import load, spread
from plugins.opcua.changes import ChangeReader
from plugins.opcua.fastpublish import decode
from plugins.opcua.status import reading

NOW = 1_796_000_000.0


def response(n: int, shape: str) -> bytes:
    at = dt.datetime(2026, 12, 7, 8, tzinfo=dt.UTC)
    items = []
    for h in range(1, n + 1):
        stamp = at if shape == "scan" else at + dt.timedelta(microseconds=h)
        code = 0 if shape == "scan" or h % 10 else ua.StatusCodes.UncertainLastUsableValue
        value = ua.DataValue(
            ua.Variant(20.0 + h * 0.37, ua.VariantType.Double),
            StatusCode=ua.StatusCode(code),
            SourceTimestamp=stamp,
            ServerTimestamp=stamp,
        )
        items.append(ua.MonitoredItemNotification(ClientHandle=h, Value=value))
    message = ua.NotificationMessage(
        SequenceNumber=1, PublishTime=at, NotificationData=[ua.DataChangeNotification(MonitoredItems=items)]
    )
    result = ua.PublishResult(SubscriptionId=1, NotificationMessage=message)
    return bytes(struct_to_binary(ua.PublishResponse(Parameters=result)))


def by_asyncua(tags: dict[int, str]) -> Callable[[bytes], list[Reading]]:
    def run(buf: bytes) -> list[Reading]:
        data = struct_from_binary(ua.PublishResponse, Buffer(buf)).Parameters.NotificationMessage
        return [
            reading(tags[item.ClientHandle], item.Value, NOW)
            for notification in data.NotificationData
            for item in notification.MonitoredItems
        ]

    return run


def by_fast_path(tags: dict[int, str]) -> Callable[[bytes], list[Sequence[Reading]]]:
    """What the source emits: a batch stays a batch (a ``Reading`` is made only when looked at)."""
    reader = ChangeReader(tags)

    def run(buf: bytes) -> list[Sequence[Reading]]:
        decoded = decode(buf)
        assert decoded is not None, "the fast path left this response to asyncua"
        return [reader(changes, NOW) for changes in decoded.Parameters.NotificationMessage.NotificationData]

    return run


def per_item_us(fn: Callable[[bytes], object], buf: bytes, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        fn(buf)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    tags = {h: f"plc.Line1.V{h}" for h in range(1, args.items + 1)}
    print(f"{args.items} items per response, {load()}")
    print("| shape | asyncua us/item | fast us/item | fast / asyncua (min / median / max) |")
    print("|---|---|---|---|")
    for shape in ("scan", "mixed"):
        buf = response(args.items, shape)
        slow, fast = by_asyncua(tags), by_fast_path(tags)
        assert list(chain.from_iterable(fast(buf))) == slow(buf), "the two paths disagree"
        a, f = [], []
        for _ in range(args.repeats):
            a.append(per_item_us(slow, buf, args.items))
            f.append(per_item_us(fast, buf, args.items))
        ratios = [x / y for x, y in zip(f, a, strict=True)]
        print(
            f"| {shape} | {statistics.median(a):.2f} | {statistics.median(f):.3f} | {spread(ratios, '{:.3f}')} |"
        )


if __name__ == "__main__":
    main()
