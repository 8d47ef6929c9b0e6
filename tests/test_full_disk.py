"""Issue 11 item 1: a full state directory never stops the outbox; it drops by priority and resumes.

The real thing first: a 2 MiB tmpfs mounted over the state directory (needs root; skipped otherwise),
filled with a file until the kernel says ENOSPC. The same story runs everywhere on SQLite's own limit
(``PRAGMA max_page_count``), which raises the very error a full disk gives ("database or disk is full").
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.delivery.sqlite_store import SqliteOutbox
from agent.records import Envelope, Kind, Message, Reading

PAD = "x" * 900


def readings(n: int, start: int = 0) -> list[Message]:
    return [
        Message(
            Kind.READINGS,
            "plc",
            1_700_000_000.0 + i,
            {"source": "plc", "readings": [Reading(PAD, i, float(i))]},
        )
        for i in range(start, start + n)
    ]


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "2m") -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the file system is full."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


Fill = Callable[[SqliteOutbox], Callable[[], None]]  # fills the disk, returns how to free it again


@pytest.fixture(params=["tmpfs", "page-limit"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Fill]]:
    state = tmp_path / "state"
    if request.param == "tmpfs":
        with tmpfs(state):

            def by_file(box: SqliteOutbox) -> Callable[[], None]:
                filler = fill(state)
                return lambda: os.unlink(filler)

            yield state, by_file
    else:

        def by_limit(box: SqliteOutbox) -> Callable[[], None]:
            # the writer is idle after settled(): its connection can be configured from here
            pages = box._db.execute("PRAGMA page_count").fetchone()[0]
            box._db.execute(f"PRAGMA max_page_count={pages}")
            return lambda: box._db.execute("PRAGMA max_page_count=1000000")

        yield state, by_limit


def seqs(batch: list[Envelope], kind: Kind) -> list[int]:
    return [e.seq for e in batch if e.message.kind is kind]


async def test_full_disk_drops_by_priority_marks_the_hole_and_resumes(disk: tuple[Path, Fill]) -> None:
    state, make_full = disk
    box = SqliteOutbox(state / "outbox-mqtt.sqlite", 10**9, fsync="append", replay_rate=10**6)
    try:
        box.append(readings(200))  # the broker is down: a backlog builds up
        await box.settled()
        with capture_logs() as logs:
            free = make_full(box)
            for i in range(20):
                box.append(readings(50, 200 + 50 * i))
            await box.settled()
            assert box.stats.disk_full and box.stats.dropped.get("readings", 0) > 0
            free()
            box.append(readings(5, 5000))  # space is back: the next append commits again
            box.append([Message(Kind.ALERT, "line1", 1.0, {"state": "open"})])
            await box.settled()
        assert not box.stats.disk_full
        events = [entry["event"] for entry in logs]
        assert (
            events.count("state directory full, dropping new messages by priority until space returns") == 1
        )
        assert events.count("state directory writable again") == 1
        box.release()
        batch = await box.take(10**6, timeout=0)
        got = seqs(batch, Kind.READINGS)
        assert got == sorted(got) and len(set(got)) == len(got)
        dropped = box.stats.dropped["readings"]
        assert got[-1] - len(got) == dropped, "the dropped messages are a visible jump in seq"
        assert seqs(batch, Kind.ALERT) == [1]
        assert json.loads(batch[-1].data)["seq"] == got[-1]
    finally:
        box.close()


async def test_an_outbox_opened_on_a_full_disk_waits_for_space(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with tmpfs(state, "1m"):
        filler = fill(state)
        with capture_logs() as logs:
            box = SqliteOutbox(state / "outbox-mqtt.sqlite", 10**7)  # no FatalError, no "another edge-agent"
        try:
            box.append(readings(3))
            await box.settled()
            assert box.stats.disk_full and box.stats.dropped == {"readings": 3}
            os.unlink(filler)
            box._full._next_open = 0.0  # the next append tries to open again at once, not a second later
            box.append(readings(2, 10))
            batch = await box.take(10, timeout=5)
        finally:
            box.close()
        assert [e.seq for e in batch] == [1, 2] and not box.stats.disk_full
        assert [e["event"] for e in logs if e["log_level"] == "error"] == [
            "state directory full, dropping new messages by priority until space returns"
        ]
