"""Readings in batches (issue 17): ``ReadingBatch`` / ``ReadingChain`` are the same readings as the
per-reading path, on the wire (byte for byte), in the router, in the status feed and from a real
pymodbus server, for every layout; layouts one ``struct`` cannot express (bit fields, strings, tags that
overlap) and blocks holding a NaN or an infinity stay on the per-tag path."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pymodbus.simulator import DataType, SimData

from agent.batch import BatchLayout, ReadingBatch, ReadingChain, parts
from agent.ops.status_api import StatusFeed
from agent.records import NOT_FINITE, Kind, Message, Quality, Reading, WireEncoder, bad, encode_body
from agent.stream.eventtime import EventTimeGuard
from agent.stream.pipeline import Router
from agent.stream.rows import RowBuilder
from plugins.modbus.decode import Codec
from tests.test_modbus_source import make_source, plc, sim_device

ROOT = Path(__file__).resolve().parent.parent
# Tags that need escaping in JSON or in a %-template, values whose JSON differs from Python's repr.
AWKWARD = ('q"uote', "per%cent%d", "ünï", "back\\slash", "plain")
VALUES = (1e-05, 1e16, 2**63 + 11, True, -2.5)


def awkward_chain() -> ReadingChain:
    first = ReadingBatch(BatchLayout(AWKWARD), 1764000000.1234, list(VALUES))
    failed = [bad("down", 1764000000.2, "timeout"), Reading("text", 1764000000.2, "a,b")]
    second = ReadingBatch(BatchLayout(["x", "y"]), 1764000000.9996, (0, 65535))
    return ReadingChain([first, failed, [], second])


def test_a_batch_is_a_sequence_of_the_same_readings() -> None:
    batch = ReadingBatch(BatchLayout(["a", "b", "c"]), 5.0, [1, 2.5, False])
    expected = [Reading("a", 5.0, 1), Reading("b", 5.0, 2.5), Reading("c", 5.0, False)]
    assert len(batch) == 3 and list(batch) == expected and batch == expected
    assert batch[1] == expected[1] and batch[-1] == expected[-1] and batch[1:] == expected[1:]
    chain = ReadingChain([batch, [bad("d", 6.0, "timeout")], batch])
    whole = [*expected, bad("d", 6.0, "timeout"), *expected]
    assert len(chain) == 7 and list(chain) == whole and chain == whole
    assert [chain[i] for i in range(-7, 7)] == whole + whole
    assert chain[2:5] == whole[2:5]
    with pytest.raises(IndexError):
        chain[7]
    assert parts(chain) == chain.parts and parts(batch) == (batch,)
    assert (
        len(ReadingChain([])) == 0 and list(ReadingChain([[], ReadingBatch(BatchLayout([]), 1.0, [])])) == []
    )


def test_the_json_of_a_chain_is_byte_identical_to_the_per_reading_json() -> None:
    chain = awkward_chain()
    as_batch = Message(Kind.READINGS, "plc", 7.0, {"source": "plc", "readings": chain})
    as_list = Message(Kind.READINGS, "plc", 7.0, {"source": "plc", "readings": list(chain)})
    assert encode_body(as_batch) == encode_body(as_list)
    body = json.loads(encode_body(as_batch))
    assert [r["tag"] for r in body["readings"]] == [*AWKWARD, "down", "text", "x", "y"]
    assert body["readings"][0]["ts_ms"] == 1764000000123 and body["readings"][-1]["ts_ms"] == 1764000001000
    assert [r["value"] for r in body["readings"][:5]] == list(VALUES)
    encoder = WireEncoder("bench")
    assert encoder(as_batch, 3) == encoder(as_list, 3)
    schema = json.loads((ROOT / "agent/schemas/readings.schema.json").read_text())
    jsonschema.validate(json.loads(encoder(as_batch, 3)), schema)
    # a payload with more than source and readings takes the generic path, with the same rows
    more = Message(Kind.READINGS, "plc", 7.0, {"source": "plc", "readings": chain, "note": 1})
    assert json.loads(encode_body(more))["readings"] == body["readings"]


def test_the_recording_rows_of_a_chain_are_the_rows_of_its_readings() -> None:
    """The rolling recording (``RowBuilder``) takes batches whole: the same rows, counts and reasons."""
    tags = [*AWKWARD, "down", "text", "x", "y", "unrouted"]
    chain = awkward_chain()
    whole, each = RowBuilder(tags, 10.0), RowBuilder(tags, 10.0)
    assert whole.add(chain) == each.add(list(chain))
    later = ReadingChain([ReadingBatch(BatchLayout(["x"]), 1764000001.5, [7])])
    assert whole.add(later) == each.add(list(later))
    assert (whole.good, whole.why, whole.first, whole.last) == (each.good, each.why, each.first, each.last)
    assert (
        whole.never_good() == each.never_good() == ["down (timeout)", "text (good)", "unrouted (never read)"]
    )


def test_the_router_and_the_status_feed_take_a_chain_as_its_readings() -> None:
    class Windows:
        def __init__(self) -> None:
            self.added: list[tuple[int, float, float, float]] = []

        def add(self, i: int, ts: float, value: float, arrived: float) -> None:
            self.added.append((i, ts, value, arrived))

    class Pipe:
        def __init__(self) -> None:
            self.tags, self.windower = ["plain", "x", "down", "y"], Windows()

    chain = awkward_chain()
    routed: list[tuple[Router, Pipe]] = []
    for readings in (chain, list(chain)):
        pipe = Pipe()
        router = Router([pipe])  # type: ignore[list-item]  # only tags and windower.add are used
        router.ingest(readings, 100.0)
        router.ingest(readings, None)
        routed.append((router, pipe))
    (fast, fast_pipe), (slow, slow_pipe) = routed
    assert fast.last_good == slow.last_good and "down" not in fast.last_good
    assert len(fast_pipe.windower.added) == 8  # 4 routed tags, twice
    assert fast_pipe.windower.added == slow_pipe.windower.added

    feeds = [StatusFeed(clock=lambda: 50.0), StatusFeed(clock=lambda: 50.0)]
    newer = ReadingBatch(BatchLayout(["x"]), 1764000002.0, [7])
    for feed, readings in zip(feeds, (chain, list(chain)), strict=True):
        feed.readings(readings)
        feed.readings([bad("x", 1764000001.5, "timeout")])
        feed.readings(newer if feed is feeds[0] else list(newer))
    assert feeds[0].tags == feeds[1].tags
    assert feeds[0].tags["x"][0] == Reading("x", 1764000002.0, 7)
    assert feeds[0].tags["y"][0].value == 65535 and feeds[0].tags["down"][0].reason == "timeout"


# name, type, order, address, value, extra config: a block of plain numbers in big-endian orders
BIG = [
    ("u16", "uint16", "AB", 0, 4321, {}),
    ("i16", "int16", "AB", 1, -1234, {}),
    ("i32", "int32", "ABCD", 3, -987654, {}),  # after a one-register hole
    ("f32", "float32", "ABCD", 5, 1.5, {}),
    ("u64", "uint64", "ABCDEFGH", 7, 2**63 + 11, {}),
    ("f64", "float64", "ABCDEFGH", 11, -2.25, {}),
    ("scaled", "uint16", "AB", 15, 200, {"scale": 0.5, "offset": -3}),
    ("fscaled", "float32", "ABCD", 16, 2.0, {"scale": 10.0}),
]
LITTLE = [
    ("l16", "int16", "BA", 0, -7, {}),
    ("l32", "uint32", "DCBA", 1, 123456789, {}),
    ("lf32", "float32", "DCBA", 3, 0.25, {}),
    ("lf64", "float64", "HGFEDCBA", 5, 1e300, {}),
]
MIXED = [  # every order of every width in one block, beside each other
    ("m1", "uint32", "ABCD", 0, 1, {}),
    ("m2", "uint32", "CDAB", 2, 123456789, {}),
    ("m3", "int32", "BADC", 4, -987654, {}),
    ("m4", "float32", "DCBA", 6, 1.5, {}),
    ("m5", "int16", "BA", 8, -2, {}),
    ("m6", "int64", "GHEFCDAB", 9, -(2**40) - 7, {}),
    ("m7", "uint64", "BADCFEHG", 13, 2**63 + 11, {}),
    ("m8", "float64", "HGFEDCBA", 17, -2.25, {"scale": 2.0}),
]
SWAPPED = [("s1", "int32", "CDAB", 0, -5, {}), ("s2", "float32", "CDAB", 3, math.inf, {})]
NOT_FINITE_FLOATS = [
    ("ok", "float32", "ABCD", 0, 1.25, {}),
    ("nan", "float32", "ABCD", 2, math.nan, {}),
    ("inf", "float64", "ABCDEFGH", 4, -math.inf, {}),
    ("after", "uint16", "AB", 8, 9, {}),
]
OVERLAP = [("whole", "uint32", "ABCD", 0, 70000, {}), ("high", "uint16", "AB", 0, 1, {})]
SPECIAL = [("word", "uint16", "AB", 0, 10, {}), ("flag", "bit", "AB", 1, 1, {"bit": 0})]


def registers(layout: list[tuple[str, str, str, int, Any, dict[str, Any]]]) -> list[int]:
    regs = [0] * 24
    for _, dtype, order, address, value, _ in layout:
        raw = Codec(dtype, order, bit=0).encode(value)
        regs[address : address + len(raw)] = raw
    return regs


@pytest.mark.parametrize(
    ("layout", "batched"),
    [
        (BIG, True),
        (LITTLE, True),
        (MIXED, True),
        (SWAPPED, False),
        (NOT_FINITE_FLOATS, False),
        (OVERLAP, False),
        (SPECIAL, False),
    ],
    ids=["big", "little", "mixed-orders", "swapped-inf", "not-finite", "overlap", "bit-field"],
)
async def test_a_request_decodes_to_what_the_per_tag_path_gives(
    tmp_path: Path, port: int, layout: list[Any], batched: bool
) -> None:
    tags = [{"name": n, "type": t, "order": o, "address": a, **extra} for n, t, o, a, _, extra in layout]
    tags += [{"name": "coil0", "table": "coil", "type": "bool", "address": 0}]
    tags += [{"name": "coil3", "table": "coil", "type": "bool", "address": 3}]
    holding = [SimData(0, values=registers(layout), datatype=DataType.REGISTERS)]
    source = make_source(tmp_path, host="127.0.0.1", port=port, devices=[{"name": "d1"}], tags=tags)
    connections, pollers = source._build()
    poller = pollers[0]
    async with plc(port, sim_device(holding=holding)):
        try:
            polled = await poller.poll()
            answers = [(r, await poller.connection.read(1, r, 2.0)) for r in poller.plan]
        finally:
            connections[0].close()
    assert isinstance(polled, ReadingChain) and len(polled) == len(tags)
    for request, answer in answers:
        fast, reference = poller.decode(request, answer, 9.5), poller.decode_each(request, answer, 9.5)
        assert list(fast) == reference
        assert isinstance(fast, ReadingBatch) is (batched or request.is_bits), request
    by_tag = {r.tag: r for r in polled}
    assert by_tag["coil0"].value is True and by_tag["coil3"].value is False
    for name, _, _, _, value, extra in layout:
        reading = by_tag[name]
        if isinstance(value, float) and not math.isfinite(value):
            assert reading.quality is Quality.BAD and reading.value is None
            assert (reading.reason or "").startswith(NOT_FINITE)
        else:
            expected = value * extra.get("scale", 1.0) + extra.get("offset", 0.0)
            expected = True if name == "flag" else expected
            assert (reading.quality, reading.value) == (Quality.GOOD, pytest.approx(expected)), name


async def test_a_refused_tag_is_bad_beside_the_batches_of_its_neighbours(tmp_path: Path, port: int) -> None:
    holding = [
        SimData(0, values=list(range(10)), datatype=DataType.REGISTERS),
        SimData(20, values=[20, 21], datatype=DataType.REGISTERS),
    ]
    tags = [
        {"name": "a", "address": 0},
        {"name": "b", "address": 5, "type": "uint32"},
        {"name": "ghost", "address": 12},
        {"name": "c", "address": 20},
    ]
    source = make_source(tmp_path, host="127.0.0.1", port=port, devices=[{"name": "d1"}], tags=tags)
    connections, pollers = source._build()
    async with plc(port, sim_device(holding=holding)):
        try:
            cycles = [await pollers[0].poll() for _ in range(2)]
        finally:
            connections[0].close()
    for cycle in cycles:
        by_tag = {r.tag: r for r in cycle}
        assert by_tag["ghost"] == bad("ghost", by_tag["ghost"].ts, "illegal data address")
        assert [by_tag[t].value for t in ("a", "b", "c")] == [0, (5 << 16) | 6, 20]
    # after the lesson, the good tags come in batches and the refused one alone, BAD
    kinds = [p.__class__ for p in cycles[1].parts]  # type: ignore[attr-defined]  # a ReadingChain
    assert kinds.count(ReadingBatch) == 2 and kinds.count(list) == 1


def test_the_event_time_guard_keeps_a_batch_within_bounds_whole() -> None:
    now = 1764000000.0
    late = ReadingBatch(BatchLayout(["a", "b"]), now + 3600, [1, 2])
    on_time = ReadingBatch(BatchLayout(["a", "b", "c"]), now + 1, [3, 4, 5])
    chain = ReadingChain([late, [bad("d", now, "timeout")], on_time])
    for policy in ("restamp", "drop"):
        fast, slow = EventTimeGuard(10.0, policy), EventTimeGuard(10.0, policy)
        out = fast(chain, now)
        assert out == slow(list(chain), now)
        assert fast.off == slow.off == set() and fast.total == slow.total == 2
        assert isinstance(out, ReadingChain) and out.parts[-1] is on_time
        assert fast(late, now) == slow(list(late), now) and fast.off == slow.off == {"a", "b"}
