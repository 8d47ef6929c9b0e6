"""The per-reading hot paths made faster for issue 17 keep their meaning: what ``Router.ingest`` windows
and marks as last good is ``numeric()``'s answer; ``encode_body`` writes each reading's own ``ts_ms``."""

from __future__ import annotations

import math

import orjson
from hypothesis import given
from hypothesis import strategies as st

from agent.records import Kind, Message, Quality, Reading, encode_body, numeric
from agent.stream.pipeline import Router

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
)
readings = st.lists(
    st.builds(
        Reading,
        tag=st.sampled_from(["a", "b", "c"]),
        ts=st.sampled_from([1.0, 1.0004, 2.5]),
        value=values,
        quality=st.sampled_from(list(Quality)),
    ),
    max_size=20,
)


class Windower:
    def __init__(self) -> None:
        self.added: list[tuple[int, float, float, float]] = []

    def add(self, i: int, ts: float, value: float, now: float) -> None:
        self.added.append((i, ts, value, now))


class Pipe:
    tags = ["a", "b"]

    def __init__(self) -> None:
        self.windower = Windower()


@given(readings)
def test_ingest_windows_and_marks_what_numeric_says(batch: list[Reading]) -> None:
    pipe = Pipe()
    router = Router([pipe])  # type: ignore[list-item]  # the two attributes ingest uses
    router.ingest(batch, now=9.0)
    expected, good = [], {}
    for r in batch:
        number = numeric(r)
        value = math.nan if number is None else number
        if number is not None:
            good[r.tag] = 9.0
        if r.tag in Pipe.tags:
            expected.append((Pipe.tags.index(r.tag), r.ts, value))
    got = [(i, ts, v) for i, ts, v, _ in pipe.windower.added]
    assert [(i, ts) for i, ts, _ in got] == [(i, ts) for i, ts, _ in expected]
    assert all((v == w) or (v != v and w != w) for (_, _, v), (_, _, w) in zip(got, expected, strict=True))
    assert router.last_good == good


def test_encode_body_gives_each_reading_its_own_time() -> None:
    batch = [Reading("a", 1.0004, 1), Reading("b", 1.0004, 2), Reading("c", 2.5, 3), Reading("d", 1.0004, 4)]
    body = orjson.loads(encode_body(Message(Kind.READINGS, "plc", 3.0, {"source": "plc", "readings": batch})))
    assert [r["ts_ms"] for r in body["readings"]] == [1000, 1000, 2500, 1000]
