"""Issue 11 item 4: a damaged outbox file is moved aside, a fresh one starts, ``seq`` never goes back.

Before: a corrupt file raised FatalError (the agent would not start: exit 1, crash loop); a zero-length
file was taken for a new outbox, silently dropping the backlog and restarting ``seq`` at 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.delivery.damage import RESERVE
from agent.delivery.sqlite_store import SqliteOutbox
from agent.records import Kind, Message


def features(n: int) -> Message:
    return Message(Kind.FEATURES, "line1", 1_700_000_000.0 + n, {"n": n})


async def fill_and_deliver(path: Path, n: int) -> int:
    """Append, deliver and ack ``n`` features; return the last seq published."""
    box = SqliteOutbox(path, 10**7)
    box.append([features(i) for i in range(n)])
    batch = await box.take(10**6, timeout=1)
    box.ack(batch)
    box.close()
    return batch[-1].seq


def corrupt(path: Path, damage: str) -> None:
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif damage == "zero-length":
        path.write_bytes(b"")
    else:
        data = bytearray(path.read_bytes())
        data[:16] = b"\xff" * 16
        path.write_bytes(bytes(data))
    for extra in path.parent.glob(path.name + "-*"):
        extra.unlink()


def moved(aside: Path) -> bool:
    return aside.exists() and aside.name.startswith("outbox-mqtt.sqlite.damaged-")


@pytest.mark.parametrize("damage", ["garbage", "zero-length", "torn-header"])
async def test_a_damaged_outbox_is_moved_aside_and_seq_continues(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "outbox-mqtt.sqlite"
    last = await fill_and_deliver(path, 30)
    corrupt(path, damage)

    with capture_logs() as logs:
        box = SqliteOutbox(path, 10**7)
    try:
        errors = [entry for entry in logs if entry["log_level"] == "error"]
        assert [entry["event"] for entry in errors] == [
            "outbox file damaged, moved aside; starting an empty outbox"
        ]
        assert moved(Path(errors[0]["moved_to"]))
        assert box.stats.damaged == 1 and box.stats.as_dict()["damaged"] == 1
        box.append([features(99)])
        (env,) = await box.take(10, timeout=1)
        assert last < env.seq <= last + RESERVE + 1, "seq is monotonic across the damaged file"
    finally:
        box.close()


async def test_reservation_is_rewritten_before_a_seq_passes_it(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = SqliteOutbox(path, 10**9, fsync="never")
    box.append([features(i) for i in range(RESERVE + 5)])
    await box.settled()
    box.close()
    reserved = box._seqs.reserved[("features", "line1")]
    assert reserved > RESERVE + 5
    path.write_bytes(b"")
    box = SqliteOutbox(path, 10**7)
    box.append([features(0)])
    (env,) = await box.take(1, timeout=1)
    box.close()
    assert env.seq == reserved + 1
