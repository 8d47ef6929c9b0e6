"""An outbox written by 0.1 (schema 1: the payload's JSON text) is converted in place, backlog kept.

Schema 2 stores the bytes the sink publishes (issue 17: one encoding per message); a backlog that waited
through the upgrade is re-encoded once, at open, and then sent like any other.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from agent.delivery.sqlite_store import SqliteOutbox
from agent.records import Kind, Message, WireEncoder

V1 = """
CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, prio INTEGER NOT NULL, kind TEXT NOT NULL,
    key TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, payload TEXT NOT NULL, size INTEGER NOT NULL);
CREATE INDEX messages_by_prio ON messages (prio, id);
CREATE TABLE seqs (kind TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID;
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema', '1');
"""


def write_v1(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(V1)
    for seq in (1, 2, 3):
        payload = json.dumps({"pipeline": "line1", "n": seq})
        db.execute(
            "INSERT INTO messages (prio, kind, key, seq, ts, payload, size) VALUES (2, 'features', 'line1', ?, ?, ?, ?)",
            (seq, 1_700_000_000.0 + seq, payload, len(payload) + 21),
        )
    db.execute("INSERT INTO seqs VALUES ('features', 'line1', 3)")
    db.commit()
    db.close()


async def test_a_schema_1_backlog_is_converted_and_replayed(tmp_path: Path) -> None:
    path = tmp_path / "outbox-mqtt.sqlite"
    write_v1(path)
    box = SqliteOutbox(path, 10**7, encode=WireEncoder("gw1"))
    try:
        assert box.stats.depth == 3
        box.append([Message(Kind.FEATURES, "line1", 1_700_000_009.0, {"pipeline": "line1", "n": 9})])
        batch = await box.take(10, timeout=1)
        bodies = [json.loads(e.data) for e in batch]
        assert [(b["seq"], b.get("n"), b["agent"]) for b in bodies] == [
            (1, 1, "gw1"),
            (2, 2, "gw1"),
            (3, 3, "gw1"),
            (4, 9, "gw1"),
        ]
        assert [e.replayed for e in batch] == [True, True, True, False]
    finally:
        box.close()
