"""The SQL of the durable outbox: tables, numbering, the cap, picking, deleting, one group's transaction.

Every method here runs on the outbox's writer thread (``agent.delivery.sqlite_store``), which owns the
connection; none of it is called from the event loop. In-memory counters change only through
``_apply``, after the commit, so a rolled-back group (a full disk) leaves them as they were.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.delivery.damage import Reservations
from agent.delivery.outbox import DEAD_LETTERS_KEPT, DROP_ORDER, KINDS_BY_PRIORITY, OutboxBase, charged_size
from agent.records import PRIORITY, Envelope, Kind, Message

SCHEMA_VERSION = 2  # 2: ``payload`` holds the sink's encoded bytes (1: the payload's JSON text)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prio INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_prio ON messages (prio, id);
CREATE TABLE IF NOT EXISTS seqs (kind TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,
                                 PRIMARY KEY (kind, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL,
    payload BLOB NOT NULL, reason TEXT NOT NULL
);
"""
KIND_OF_PRIO = {prio: kind for kind, prio in PRIORITY.items()}
Row = tuple[int, str, str, int, float, bytes, int]  # prio, kind, key, seq, ts, data, size


@dataclass
class Group:
    """What one transaction changes, applied to the counters only after it committed."""

    rows: list[Row] = field(default_factory=list)
    coalesced: list[tuple[int, int, int]] = field(default_factory=list)  # (id, prio, size) replaced statuses
    removed: list[tuple[int, int, int]] = field(default_factory=list)  # (id, prio, size) dropped at the cap
    acked: list[int] = field(default_factory=list)
    dead: list[tuple[Envelope, str]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    seqs: dict[tuple[str, str], int] = field(default_factory=dict)


class SqliteBook(OutboxBase):
    """The tables and counters of the durable outbox; see the module docstring for who calls what."""

    _db: sqlite3.Connection
    path: Path
    _sync_append: str  # PRAGMA synchronous for a group with rows, and for one of acks only
    _sync_ack: str
    _sync_now: str
    _seqs: Reservations

    def _init_db(self, encode_v1: bool) -> None:
        db = self._db
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective only when the file is new
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) == 1 and encode_v1:
            self._migrate_v1()
        elif int(row[0]) != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"outbox schema {row[0]}, this version reads {SCHEMA_VERSION}")

    def _migrate_v1(self) -> None:
        """Re-encode a version-1 backlog (payload JSON text) into the sink's bytes, in one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        rows = db.execute("SELECT id, prio, key, seq, ts, payload FROM messages").fetchall()
        for env_id, prio, key, seq, ts, payload in rows:
            data = self.encode(Message(KIND_OF_PRIO[prio], key, ts, json.loads(payload)), seq)
            db.execute(
                "UPDATE messages SET payload = ?, size = ? WHERE id = ?",
                (data, charged_size(data, key), env_id),
            )
        db.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (str(SCHEMA_VERSION),))
        db.execute("COMMIT")
        self.log.info("outbox converted to schema 2", messages=len(rows), path=str(self.path))

    def _load_counts(self) -> None:
        self._count: dict[int, int] = dict.fromkeys(KIND_OF_PRIO, 0)
        self._bytes: dict[int, int] = dict.fromkeys(KIND_OF_PRIO, 0)
        for prio, count, size in self._db.execute(
            "SELECT prio, COUNT(*), SUM(size) FROM messages GROUP BY prio"
        ):
            self._count[prio], self._bytes[prio] = count, size
        self._committed = sum(self._count.values())
        self.stats.depth_bytes = sum(self._bytes.values())
        self._seq: dict[tuple[str, str], int] = {
            (kind, key): seq for kind, key, seq in self._db.execute("SELECT kind, key, seq FROM seqs")
        }
        self._cursor: dict[int, int] = dict.fromkeys(KIND_OF_PRIO, 0)
        self._in_flight: dict[int, tuple[int, int]] = {}  # id -> (prio, size)
        self._live_from = self._max_id() + 1

    def _max_id(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0])

    def _stage(self, messages: list[Message], group: Group) -> None:
        """Number and encode each message into ``group``; a status reuses the seq of the queued, not
        taken one of its key that it replaces."""
        for i, message in enumerate(messages):
            if i % 16 == 15:
                time.sleep(0)  # let the event loop take the GIL now, not after the 5 ms switch interval
            seq = self._coalesce(message.key, group) if message.kind is Kind.STATUS else 0
            if not seq:
                topic = (message.kind.value, message.key)
                seq = self._seq.get(topic, 0) + 1
                self._seq[topic] = group.seqs[topic] = seq
            data = self._encoded(message, seq)
            if data is not None:
                size = charged_size(data, message.key)
                group.rows.append(
                    (PRIORITY[message.kind], message.kind.value, message.key, seq, message.ts, data, size)
                )

    def _coalesce(self, key: str, group: Group) -> int:
        prio = PRIORITY[Kind.STATUS]
        for i in range(len(group.rows) - 1, -1, -1):
            row = group.rows[i]
            if row[0] == prio and row[2] == key:
                del group.rows[i]
                return row[3]
        found = self._db.execute(
            "SELECT id, seq, size FROM messages WHERE prio = ? AND key = ? AND id > ? ORDER BY id DESC LIMIT 1",
            (prio, key, self._cursor[prio]),
        ).fetchone()
        if found is None or any(r[0] == found[0] for r in group.coalesced):
            return 0
        group.coalesced.append((found[0], prio, found[2]))
        return int(found[1])

    def _write(self, group: Group) -> None:
        """Execute the group's inserts, seq updates and cap inside the open transaction."""
        db = self._db
        group.removed, group.dropped = [], {}  # a retried group (a full disk) recomputes its cap
        if group.coalesced:
            db.executemany("DELETE FROM messages WHERE id = ?", [(c[0],) for c in group.coalesced])
        db.executemany(
            "INSERT INTO messages (prio, kind, key, seq, ts, payload, size) VALUES (?, ?, ?, ?, ?, ?, ?)",
            group.rows,
        )
        db.executemany(
            "INSERT INTO seqs VALUES (?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET seq = excluded.seq",
            [(kind, key, seq) for (kind, key), seq in group.seqs.items()],
        )
        if group.acked:
            db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in group.acked])
        if group.dead:
            db.executemany("DELETE FROM messages WHERE id = ?", [(e.id,) for e, _ in group.dead])
            db.executemany(
                "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.id, e.message.kind.value, e.message.key, e.seq, e.message.ts, e.data, r)
                    for e, r in group.dead
                ],
            )
            db.execute(
                "DELETE FROM dead_letters WHERE id NOT IN (SELECT id FROM dead_letters ORDER BY id DESC LIMIT ?)",
                (DEAD_LETTERS_KEPT,),
            )
        self._enforce_cap(group)

    def _enforce_cap(self, group: Group) -> None:
        count = dict(self._count)
        held = self.stats.depth_bytes
        for prio, size in ((r[0], r[6]) for r in group.rows):
            count[prio] += 1
            held += size
        for _, prio, size in group.coalesced + self._gone(group):
            count[prio] -= 1
            held -= size
        for kind in DROP_ORDER:
            prio = PRIORITY[kind]
            last = 0
            for env_id, size in self._db.execute(
                "SELECT id, size FROM messages WHERE prio = ? ORDER BY id", (prio,)
            ):
                if held <= self.max_bytes:
                    break
                last = env_id
                held -= size
                group.removed.append((env_id, prio, size))
                group.dropped[kind.value] = group.dropped.get(kind.value, 0) + 1
            if last:
                self._db.execute("DELETE FROM messages WHERE prio = ? AND id <= ?", (prio, last))
            if held <= self.max_bytes:
                return

    def _gone(self, group: Group) -> list[tuple[int, int, int]]:
        out = [(i, *self._in_flight[i]) for i in group.acked if i in self._in_flight]
        out += [(e.id, *self._in_flight[e.id]) for e, _ in group.dead if e.id in self._in_flight]
        return out

    def _apply(self, group: Group) -> None:
        """Bring the counters in line with a committed group."""
        removed_ids = {i for i, _, _ in group.removed}
        group.removed += group.coalesced
        for prio, _, _, _, _, _, size in group.rows:
            self._count[prio] += 1
            self._bytes[prio] += size
            self._committed += 1
            self.stats.depth_bytes += size
            self.stats.appended += 1
            self.stats.appended_bytes += size
        gone = self._gone(group)
        acked = {i for i in group.acked if i in self._in_flight}
        self.stats.acked += len(acked - removed_ids)
        for env_id, prio, size in group.removed + gone:
            self._count[prio] -= 1
            self._bytes[prio] -= size
            self._committed -= 1
            self.stats.depth_bytes -= size
            self._in_flight.pop(env_id, None)
        for kind, n in group.dropped.items():
            self._count_drop(kind, n)
        for envelope, reason in group.dead:
            self._count_refused(envelope, reason)

    def _pick(self, n: int, budget: int) -> tuple[list[Envelope], int]:
        batch: list[Envelope] = []
        replayed = 0
        for kind in KINDS_BY_PRIORITY:
            prio = PRIORITY[kind]
            if len(batch) >= n or self._count[prio] <= 0:
                continue
            rows = self._db.execute(
                "SELECT id, key, seq, ts, payload, size FROM messages WHERE prio = ? AND id > ? ORDER BY id LIMIT ?",
                (prio, self._cursor[prio], n - len(batch)),
            )
            for env_id, key, seq, ts, data, size in rows:
                if len(batch) % 32 == 31:
                    time.sleep(0)  # as in _stage: the loop waits less for the GIL
                is_replay = env_id < self._live_from
                if is_replay:
                    if replayed >= budget:
                        self._paced = True
                        break
                    replayed += 1
                batch.append(
                    Envelope(env_id, seq, Message(kind, key, ts, {}), replayed=is_replay, data=bytes(data))
                )
                self._in_flight[env_id] = (prio, size)
                self._cursor[prio] = env_id
        return batch, replayed

    def _after_ack(self) -> None:
        if self._committed == 0 and self._db.execute("PRAGMA freelist_count").fetchone()[0] > 4096:
            self._db.execute("PRAGMA incremental_vacuum")  # give the disk back after a drained backlog

    def _release(self) -> None:
        self._cursor = dict.fromkeys(KIND_OF_PRIO, 0)
        self._in_flight.clear()
        self._live_from = self._max_id() + 1

    def dead_rows(self) -> list[tuple[Any, ...]]:
        """The kept dead letters (kind, key, seq, reason), oldest first; for tests and ``sqlite3`` users."""
        return self._db.execute("SELECT kind, key, seq, reason FROM dead_letters ORDER BY id").fetchall()

    def transaction(self, group: Group) -> None:
        """Write and commit ``group``; called by ``DiskFull.commit``, which handles a full disk."""
        sync = self._sync_append if group.rows else self._sync_ack
        if sync != self._sync_now:
            self._db.execute(f"PRAGMA synchronous={sync}")
            self._sync_now = sync
        self._seqs.reserve(group.seqs)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._write(group)
            self._commit()
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._apply(group)
        if group.acked:
            self._after_ack()
            self._end_drop_episode()

    def _commit(self) -> None:
        """COMMIT (the fsync); a test store overrides this to slow it down."""
        self._db.execute("COMMIT")
