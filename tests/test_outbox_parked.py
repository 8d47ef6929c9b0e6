"""A take that waits on the durable outbox is one request to its writer, answered by the next commit (issue 17).

Each request is a thread hop, and on the shared 2-core machine a hop costs 0.1-0.2 ms of CPU; the take
used to be answered "empty", woken by the commit and asked again: three hops per message instead of one.
"""

from __future__ import annotations

import asyncio
import json
import queue
from pathlib import Path
from typing import Any

import pytest

from agent.delivery.sqlite_store import SqliteOutbox
from agent.records import Envelope, Kind, Message
from tests.mosquitto import eventually


class Counted(queue.SimpleQueue):  # type: ignore[type-arg]
    """The writer's queue, counting the requests of each kind the loop puts on it."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.counts[item[0]] = self.counts.get(item[0], 0) + 1
        super().put(item, block, timeout)


def msg(kind: Kind, n: int) -> Message:
    return Message(kind, "p1", 1_700_000_000.0 + n, {"n": n})


def numbers(batch: list[Envelope]) -> list[int]:
    return [json.loads(e.data)["n"] for e in batch]


def counted_outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[SqliteOutbox, Counted]:
    """An outbox whose writer queue counts the loop's requests (patched only while it is made)."""
    monkeypatch.setattr(queue, "SimpleQueue", Counted)
    box = SqliteOutbox(tmp_path / "o.sqlite", 10**8)
    monkeypatch.undo()
    assert isinstance(box._ops, Counted)
    return box, box._ops


async def test_a_waiting_take_is_one_request_answered_by_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box, ops = counted_outbox(tmp_path, monkeypatch)
    try:
        take = asyncio.create_task(box.take(10, timeout=30))
        await eventually(lambda: ops.counts.get("take") == 1, what="the take reaches the writer")
        box.append([msg(Kind.ALERT, 1)])
        batch = await take
        assert numbers(batch) == [1]
        assert ops.counts["take"] == 1  # was 2: answered empty, woken by the commit, asked again
    finally:
        box.close()


async def test_a_take_given_up_while_waiting_marks_nothing_in_flight(tmp_path: Path) -> None:
    box = SqliteOutbox(tmp_path / "o.sqlite", 10**8)
    try:
        waiting = asyncio.create_task(box.take(10, timeout=30))
        await asyncio.sleep(0)  # the request is queued
        waiting.cancel()
        box.append([msg(Kind.ALERT, 2)])
        await box.settled()
        batch = await box.take(10, timeout=5)  # not lost to the cancelled take
        assert numbers(batch) == [2]
    finally:
        box.close()


async def test_a_take_out_of_replay_budget_is_answered_by_a_live_commit(tmp_path: Path) -> None:
    box = SqliteOutbox(tmp_path / "o.sqlite", 10**8, replay_rate=0.01)  # one replayed message, then 100 s
    try:
        box.append([msg(Kind.FEATURES, n) for n in range(3)])
        box.release()  # backlog now
        assert len(await box.take(10, timeout=0)) == 1
        waiting = asyncio.create_task(box.take(10, timeout=60))  # waits for the pacer: 100 s
        await asyncio.sleep(0.05)
        box.append([msg(Kind.ALERT, 9)])  # live passes the paced backlog
        batch = await waiting  # at the pacer's wait or the deadline it would be [] (paced, time up)
        assert [(e.message.kind, e.replayed) for e in batch] == [(Kind.ALERT, False)]
    finally:
        box.close()


async def test_a_take_with_nothing_returns_empty_at_its_deadline(tmp_path: Path) -> None:
    box = SqliteOutbox(tmp_path / "o.sqlite", 10**8)
    try:
        assert await box.take(10, timeout=0.05) == []
        assert await box.take(10, timeout=0) == []
    finally:
        box.close()


async def test_the_take_after_one_that_emptied_the_outbox_does_not_wake_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the delivery loop takes again as soon as it has a batch; that take used to wake the writer only to
    # be parked there, one wake-up per message (issue 17)
    box, ops = counted_outbox(tmp_path, monkeypatch)
    try:
        box.append([msg(Kind.ALERT, 1)])
        assert numbers(await box.take(10, timeout=30)) == [1]
        waiting = asyncio.create_task(box.take(10, timeout=30))
        await asyncio.sleep(0.05)  # time for a request to reach the writer, if one were sent
        assert ops.counts["take"] == 1
        box.append([msg(Kind.ALERT, 2)])  # the writer's next group brings the waiting take along
        assert numbers(await waiting) == [2]
        assert ops.counts["take"] == 1
    finally:
        box.close()


async def test_a_take_waiting_at_the_loop_returns_empty_at_its_deadline_and_takes_nothing(
    tmp_path: Path,
) -> None:
    box = SqliteOutbox(tmp_path / "o.sqlite", 10**8)
    try:
        assert await box.take(10, timeout=0) == []  # the writer has nothing: later takes wait here
        assert await box.take(10, timeout=0.05) == []
        cancelled = asyncio.create_task(box.take(10, timeout=30))
        await asyncio.sleep(0)
        cancelled.cancel()
        box.append([msg(Kind.ALERT, 3)])
        await box.settled()
        assert numbers(await box.take(10, timeout=5)) == [3]  # not lost
    finally:
        box.close()


async def test_a_release_makes_what_was_in_flight_takeable_for_a_take_waiting_at_the_loop(
    tmp_path: Path,
) -> None:
    box = SqliteOutbox(tmp_path / "o.sqlite", 10**8)
    try:
        box.append([msg(Kind.ALERT, 4)])
        assert len(await box.take(10, timeout=30)) == 1  # in flight, unacked; the writer is drained
        waiting = asyncio.create_task(box.take(10, timeout=30))
        await asyncio.sleep(0.05)
        box.release()  # a reconnect: the unacked one is resent
        batch = await waiting
        assert [(json.loads(e.data)["n"], e.replayed) for e in batch] == [(4, True)]
    finally:
        box.close()


async def test_takes_that_time_out_between_commits_never_strand_a_committed_message(tmp_path: Path) -> None:
    # a take given up at its deadline (answered empty, the writer drained) next to appends in the same
    # group of work: whatever was committed after it must still reach the next take
    box = SqliteOutbox(tmp_path / "o.sqlite", 10**8)
    try:
        for n in range(150):
            short = [asyncio.create_task(box.take(10, timeout=0.001 * (n % 4))) for _ in range(n % 3)]
            box.append([msg(Kind.ALERT, n)])
            got = [json.loads(e.data)["n"] for t in short for e in await t]
            taken = await box.take(10, timeout=10) if not got else []
            got += numbers(taken)
            assert got == [n]
            await box.settled()
            box.release()  # unacked on purpose: nothing is in flight for the next round's takes
            box.ack(await box.take(10, timeout=10))
    finally:
        box.close()


async def test_an_ack_does_not_wake_the_writer_it_rides_with_the_next_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an ack was a request of its own: one more writer wake-up and transaction per message (issue 17)
    box, ops = counted_outbox(tmp_path, monkeypatch)
    try:
        box.append([msg(Kind.ALERT, 1)])
        box.ack(await box.take(10, timeout=30))
        assert "ack" not in ops.counts
        box.append([msg(Kind.ALERT, 2)])
        await box.settled()
        assert "ack" not in ops.counts
        assert (box.stats.acked, box.stats.depth) == (1, 1)
    finally:
        box.close()
    box = SqliteOutbox(tmp_path / "o.sqlite", 10**8)
    try:
        assert numbers(await box.take(10, timeout=0)) == [2]  # the ack was committed with the append
    finally:
        box.close()


async def test_acks_ride_with_a_take_that_reaches_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a replay takes batch after batch with no append between them: each take carries the acks before it
    box, ops = counted_outbox(tmp_path, monkeypatch)
    try:
        box.append([msg(Kind.FEATURES, n) for n in range(5)])
        box.ack(await box.take(2, timeout=30))
        assert numbers(await box.take(2, timeout=30)) == [2, 3]
        assert box.stats.acked == 2  # committed before the take was answered
        assert "ack" not in ops.counts
    finally:
        box.close()


async def test_acks_with_nothing_to_carry_them_are_committed_when_the_take_gives_up(tmp_path: Path) -> None:
    box = SqliteOutbox(tmp_path / "o.sqlite", 10**8)
    try:
        box.append([msg(Kind.ALERT, 1)])
        box.ack(await box.take(10, timeout=30))
        assert await box.take(10, timeout=0.05) == []  # waits at the loop, then hands the acks over
        await eventually(lambda: box.stats.acked == 1, what="the ack committed without another call")
        assert box.stats.depth == 0
    finally:
        box.close()


async def test_with_fsync_always_an_ack_is_committed_at_once(tmp_path: Path) -> None:
    # 'always' promises no duplicate after a power cut: its acks do not wait for a ride
    box = SqliteOutbox(tmp_path / "o.sqlite", 10**8, fsync="always")
    try:
        box.append([msg(Kind.ALERT, 1)])
        box.ack(await box.take(10, timeout=30))
        await eventually(lambda: box.stats.acked == 1, what="the ack committed without another call")
    finally:
        box.close()
