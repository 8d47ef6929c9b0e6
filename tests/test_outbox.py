"""The outbox contract, for both the memory and the SQLite outbox; durability across reopen for SQLite."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from agent.config.base import OutboxConfig
from agent.delivery.deliver import open_outbox
from agent.delivery.memory_store import MemoryOutbox
from agent.delivery.outbox import Outbox, OutboxBase, message_size
from agent.delivery.sqlite_store import SqliteOutbox
from agent.errors import FatalError
from agent.records import Envelope, Kind, Message


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def msg(kind: Kind, key: str = "p1", n: int = 0, pad: int = 0) -> Message:
    return Message(kind, key, 1_700_000_000.0 + n, {"n": n, "pad": "x" * pad})


def body(envelope: Envelope) -> Any:
    """The published JSON of an envelope (what the outbox stored, encoded once at append)."""
    return json.loads(envelope.data)


Factory = Callable[..., OutboxBase]


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    made: list[OutboxBase] = []

    def factory(
        max_bytes: int = 10**8, replay_rate: float = 10**6, clock: Callable[[], float] | None = None
    ) -> OutboxBase:
        clock = clock or FakeClock()
        box: OutboxBase
        if request.param == "memory":
            box = MemoryOutbox(max_bytes, replay_rate=replay_rate, clock=clock)
        else:
            box = SqliteOutbox(tmp_path / "o.sqlite", max_bytes, replay_rate=replay_rate, clock=clock)
        made.append(box)
        return box

    yield factory
    for box in made:
        box.close()


async def test_seq_per_topic_priority_order_and_ack(make: Factory) -> None:
    box = make()
    box.append([msg(Kind.FEATURES, "p1", 1), msg(Kind.FEATURES, "p2", 2), msg(Kind.FEATURES, "p1", 3)])
    box.append([msg(Kind.ALERT, "p1", 4), msg(Kind.READINGS, "s1", 5)])
    batch = await box.take(10, timeout=0)
    assert [(e.message.kind, e.message.key, e.seq) for e in batch] == [
        (Kind.ALERT, "p1", 1),
        (Kind.FEATURES, "p1", 1),
        (Kind.FEATURES, "p2", 1),
        (Kind.FEATURES, "p1", 2),
        (Kind.READINGS, "s1", 1),
    ]
    assert {k: body(batch[1])[k] for k in ("n", "pad", "seq")} == {"n": 1, "pad": "", "seq": 1}
    assert not any(e.replayed for e in batch)
    assert await box.take(10, timeout=0) == []  # in flight, not taken twice
    box.ack(batch[:2])
    box.release()  # a reconnect: what was not acked comes back, oldest first
    again = await box.take(10, timeout=0)
    assert [e.id for e in again] == [e.id for e in batch[2:]]
    box.ack(again)
    await box.settled()
    assert (box.stats.depth, box.stats.depth_bytes, box.stats.acked) == (0, 0, 5)


async def test_take_waits_for_an_append_and_times_out(make: Factory) -> None:
    box = make()
    assert await box.take(5, timeout=0.01) == []
    waiter = asyncio.create_task(box.take(5, timeout=5), name="take")
    await asyncio.sleep(0)
    box.append([msg(Kind.ALERT)])
    assert [e.seq for e in await waiter] == [1]


async def test_status_coalesces_and_keeps_seq_gapless(make: Factory) -> None:
    box = make()
    box.append([msg(Kind.STATUS, "agent", 1)])
    taken = await box.take(1, timeout=0)  # in flight: a later status must not replace it
    box.append([msg(Kind.STATUS, "agent", 2), msg(Kind.STATUS, "agent", 3)])
    box.append([msg(Kind.STATUS, "agent", 4)])
    box.ack(taken)
    rest = await box.take(10, timeout=0)
    await box.settled()
    assert [(e.seq, body(e)["n"]) for e in rest] == [(2, 4)]
    assert box.stats.depth == 1


async def test_cap_drops_readings_then_oldest_features_and_keeps_alerts(make: Factory) -> None:
    size = message_size(msg(Kind.FEATURES, pad=200))
    box = make(max_bytes=10 * size)
    box.append([msg(Kind.ALERT, n=i, pad=200) for i in range(3)])
    box.append([msg(Kind.READINGS, "s1", n=i, pad=200) for i in range(2)])
    with capture_logs() as logs:
        for i in range(20):
            box.append([msg(Kind.FEATURES, n=i, pad=200)])
        await box.settled()
    assert box.stats.depth_bytes <= 10 * size
    dropped = box.stats.dropped
    assert set(dropped) == {"readings", "features"} and dropped["readings"] == 2
    batch = await box.take(100, timeout=0)
    assert [body(e)["n"] for e in batch if e.message.kind is Kind.ALERT] == [0, 1, 2]
    kept = [e for e in batch if e.message.kind is Kind.FEATURES]
    assert [body(e)["n"] for e in kept] == list(range(dropped["features"], 20))  # the oldest went
    assert kept[0].seq == dropped["features"] + 1  # consumers see the gap in seq
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1, "one warning per drop episode, not one per drop"
    with capture_logs() as logs:
        box.ack(batch)
        await box.settled()
    assert [entry["event"] for entry in logs] == ["outbox below its cap again"]
    assert logs[0]["dropped"] == dropped


async def test_alerts_are_dropped_last_when_nothing_else_is_left(make: Factory) -> None:
    size = message_size(msg(Kind.ALERT, pad=100))
    box = make(max_bytes=3 * size)
    box.append([msg(Kind.STATUS, "agent", pad=100)] + [msg(Kind.ALERT, n=i, pad=100) for i in range(4)])
    await box.settled()
    assert box.stats.dropped == {"status": 1, "alert": 1}
    assert [body(e)["n"] for e in await box.take(10, timeout=0)] == [1, 2, 3]


async def test_backlog_is_replayed_paced_and_live_alerts_overtake_it(make: Factory) -> None:
    clock = FakeClock()
    box = make(replay_rate=100.0, clock=clock)  # bursts of 10
    box.append([msg(Kind.FEATURES, n=i) for i in range(50)])
    box.release()  # a new connection: the 50 features are backlog now
    first = await box.take(200, timeout=0)
    assert len(first) == 10 and all(e.replayed for e in first)
    assert await box.take(200, timeout=0) == []  # no budget left, nothing live
    box.append([msg(Kind.ALERT, n=99)])
    live = await box.take(200, timeout=0)
    assert [(e.message.kind, e.replayed) for e in live] == [(Kind.ALERT, False)]
    clock.now += 0.05
    assert [e.seq for e in await box.take(200, timeout=0)] == list(range(11, 16))
    assert box.stats.replayed == 15


async def test_replay_pacing_lets_take_wait_for_budget(make: Factory) -> None:
    box = make(
        replay_rate=1000.0, clock=time.monotonic
    )  # real clock: the next token comes within milliseconds
    box.append([msg(Kind.FEATURES, n=i) for i in range(150)])
    box.release()
    assert len(await box.take(500, timeout=0)) == 100
    assert len(await box.take(500, timeout=5)) >= 1


async def test_sqlite_reopen_resends_only_unacked_with_seq_continuing(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox-mqtt.sqlite"
    box = SqliteOutbox(path, 10**8)
    box.append([msg(Kind.FEATURES, n=i) for i in range(5)] + [msg(Kind.ALERT, n=9)])
    box.ack(await box.take(3, timeout=0))  # the alert and features 0, 1
    await box.take(2, timeout=0)  # in flight when the process dies: not acked, so resent
    box.close()

    box = SqliteOutbox(path, 10**8)
    assert (box.stats.depth, box.stats.depth_bytes > 0) == (3, True)
    box.append([msg(Kind.FEATURES, n=5), msg(Kind.ALERT, n=10)])
    batch = await box.take(10, timeout=0)
    assert [(e.message.kind, e.seq, e.replayed) for e in batch] == [
        (Kind.ALERT, 2, False),
        (Kind.FEATURES, 3, True),
        (Kind.FEATURES, 4, True),
        (Kind.FEATURES, 5, True),
        (Kind.FEATURES, 6, False),
    ]
    box.close()


def test_sqlite_refuses_a_second_user_of_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    first = SqliteOutbox(path, 10**6)
    first.append([msg(Kind.ALERT)])
    with pytest.raises(FatalError, match="another edge-agent"):
        SqliteOutbox(path, 10**6)
    first.close()


@pytest.mark.parametrize("fsync", ["append", "always", "never"])
async def test_open_outbox_picks_by_durable(tmp_path: Path, fsync: str) -> None:
    durable: Outbox = open_outbox(OutboxConfig(fsync=fsync), tmp_path / "a.sqlite")
    memory: Outbox = open_outbox(OutboxConfig(durable=False), tmp_path / "b.sqlite")
    assert isinstance(durable, SqliteOutbox) and isinstance(memory, MemoryOutbox)
    for box in (durable, memory):
        box.append([msg(Kind.ALERT)])
        box.ack(await box.take(1, timeout=0))
        await box.settled()
        assert box.stats.as_dict()["acked"] == 1
        box.close()
    assert not (tmp_path / "b.sqlite").exists()


# --- a property: whatever happens, nothing is lost or taken twice without being counted --------------------

Op = tuple[str, int, int]  # (operation, kind index, count)
ops_strategy = st.lists(
    st.tuples(
        st.sampled_from(["append", "take", "ack", "release", "reopen"]), st.integers(0, 3), st.integers(1, 12)
    ),
    max_size=40,
)
KINDS = [Kind.ALERT, Kind.FEATURES, Kind.READINGS, Kind.FEATURES]


async def run_ops(durable: bool, folder: Path, ops: list[Op]) -> None:
    size = message_size(msg(Kind.FEATURES, "p1", 100, pad=40))
    cap = 25 * size

    def open_box() -> OutboxBase:
        if durable:
            return SqliteOutbox(folder / "o.sqlite", cap, replay_rate=10**6, fsync="never")
        return MemoryOutbox(cap, replay_rate=10**6)

    box = open_box()
    counter = 0
    numbered: dict[tuple[str, str], list[int]] = {}  # seqs handed out per topic, in take order
    acked: set[tuple[str, str, int]] = set()
    in_flight: list[Envelope] = []
    appended = acked_n = dropped_before = 0
    for op, kind_index, count in ops:
        if op == "append":
            kind = KINDS[kind_index]
            box.append([msg(kind, f"p{(counter + i) % 2}", 100 + counter + i, pad=40) for i in range(count)])
            counter += count
            appended += count
            await box.settled()
            assert box.stats.depth_bytes <= cap
            if box.stats.dropped.get("alert", 0) > dropped_before:
                box.release()
                queued = await box.take(10**6, timeout=0)
                assert all(e.message.kind is Kind.ALERT for e in queued), "an alert went before a lesser kind"
                box.release()
                in_flight = []
            dropped_before = box.stats.dropped.get("alert", 0)
        elif op == "take":
            batch = await box.take(count, timeout=0)
            for env in batch:
                topic = (env.message.kind.value, env.message.key)
                assert (*topic, env.seq) not in acked, "an acked message came back"
                seen = numbered.setdefault(topic, [])
                assert not seen or env.seq > seen[-1] or env.replayed, "a topic went backwards"
                seen.append(env.seq)
            in_flight += batch
        elif op == "ack":
            done, in_flight = in_flight[:count], in_flight[count:]
            box.ack(done)
            await box.settled()
            acked.update((e.message.kind.value, e.message.key, e.seq) for e in done)
        elif op == "release":
            box.release()
            in_flight = []
            numbered.clear()
        elif op == "reopen" and durable:
            box.close()
            box = open_box()
            in_flight = []
            numbered.clear()
            dropped_before = 0
    await box.settled()
    acked_n = box.stats.acked
    box.release()
    rest = await box.take(10**6, timeout=0)
    assert len(rest) == box.stats.depth
    if not durable:  # counters restart with the process; the durable check is the acked set above
        assert appended == acked_n + sum(box.stats.dropped.values()) + box.stats.depth
    box.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_strategy)
@pytest.mark.parametrize("durable", [False, True])
def test_property_nothing_lost_nothing_acked_comes_back(
    durable: bool, ops: list[Op], tmp_path_factory: Any
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    asyncio.run(run_ops(durable, folder, ops))
