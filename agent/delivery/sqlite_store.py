"""The durable outbox: SQLite in WAL mode, one file per sink in the state directory.

Why SQLite and not segment files: one ``append`` is one transaction (all or nothing after a crash), acks
are deletes by id instead of a cursor plus a compaction pass, the per-topic ``seq`` counters commit in the
same transaction as the messages they numbered, and the format is inspectable with the ``sqlite3`` shell.
WAL mode makes a commit one sequential write to the log; ``locking_mode=EXCLUSIVE`` keeps a second agent
from sharing the file.

Durability (``OutboxConfig.fsync``): a committed transaction survives ``kill -9`` in every mode (it is in
the OS page cache). ``append`` (default) fsyncs every append, so a power loss loses no accepted message;
acks are not fsynced, so a power loss can resend a few delivered messages (consumers see the repeated
``seq``). ``always`` fsyncs acks too; ``never`` leaves fsync to SQLite's checkpoints.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from agent.config import statedir
from agent.delivery.outbox import DROP_ORDER, KINDS_BY_PRIORITY, OutboxBase, charged_size, encode_payload
from agent.errors import FatalError
from agent.records import PRIORITY, Envelope, Kind, Message

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prio INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_prio ON messages (prio, id);
CREATE TABLE IF NOT EXISTS seqs (kind TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,
                                 PRIMARY KEY (kind, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
_SYNC = {"append": ("FULL", "NORMAL"), "always": ("FULL", "FULL"), "never": ("NORMAL", "NORMAL")}
_KIND_OF_PRIO = {prio: kind for kind, prio in PRIORITY.items()}


class SqliteOutbox(OutboxBase):
    """Durable outbox; see ``agent.delivery.outbox`` for the contract and this module's docstring for durability.

    Args:
        path: the database file; created with its directory when missing.
        max_bytes: cap on the charged bytes of queued messages.
        replay_rate: most replayed envelopes per second.
        fsync: ``append``, ``always`` or ``never``.
        clock: monotonic clock for pacing (tests inject one).
        log: structlog logger; one is made when ``None``.

    Raises:
        FatalError: the file is locked by another process or is not an outbox this version can read.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        *,
        replay_rate: float = 2000.0,
        fsync: str = "append",
        clock: Callable[[], float] = time.monotonic,
        log: Any = None,
    ) -> None:
        super().__init__(max_bytes, replay_rate, clock, log)
        self.path = path
        self._sync_append, self._sync_ack = _SYNC[fsync]
        self._sync_now = ""
        try:
            # The outbox and its journal files: 0600, never through a planted symlink (issue 10).
            statedir.private_dir(path.parent)
            statedir.prepare(path, Path(f"{path}-wal"), Path(f"{path}-shm"))
        except OSError as exc:
            raise FatalError(f"outbox {path}: {exc.strerror or exc}") from exc
        try:
            self._db = sqlite3.connect(path, timeout=1.0, isolation_level=None, check_same_thread=False)
            self._init_db()
        except sqlite3.OperationalError as exc:
            raise FatalError(
                f"outbox {path}: {exc}; is another edge-agent using the same state directory?"
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise FatalError(
                f"outbox {path} is damaged ({exc}); move it aside to start with an empty outbox"
            ) from exc
        self._cursor: dict[int, int] = dict.fromkeys(_KIND_OF_PRIO, 0)
        self._in_flight: dict[int, tuple[int, int]] = {}  # id -> (prio, size)
        self._count: dict[int, int] = dict.fromkeys(_KIND_OF_PRIO, 0)
        self._bytes: dict[int, int] = dict.fromkeys(_KIND_OF_PRIO, 0)
        for prio, count, size in self._db.execute(
            "SELECT prio, COUNT(*), SUM(size) FROM messages GROUP BY prio"
        ):
            self._count[prio], self._bytes[prio] = count, size
        self.stats.depth, self.stats.depth_bytes = sum(self._count.values()), sum(self._bytes.values())
        self._seq = {
            (kind, key): seq for kind, key, seq in self._db.execute("SELECT kind, key, seq FROM seqs")
        }
        # Everything that survived a restart is backlog: it is replayed, paced.
        self._live_from = int(self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM messages").fetchone()[0])
        if self.stats.depth:
            self.log.info("outbox reopened with a backlog", depth=self.stats.depth, path=str(path))

    def _init_db(self) -> None:
        db = self._db
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective only when the file is new
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"outbox schema {row[0]}, this version reads {SCHEMA_VERSION}")

    def _begin(self, sync: str) -> None:
        if sync != self._sync_now:
            self._db.execute(f"PRAGMA synchronous={sync}")
            self._sync_now = sync
        self._db.execute("BEGIN IMMEDIATE")

    def append(self, messages: Iterable[Message]) -> None:
        db = self._db
        rows: list[tuple[int, str, str, int, float, str, int]] = []
        touched: set[tuple[str, str]] = set()
        self._begin(self._sync_append)
        try:
            for message in messages:
                kind, prio = message.kind.value, PRIORITY[message.kind]
                topic = (kind, message.key)
                seq = self._coalesce(prio, message.key, rows) if message.kind is Kind.STATUS else 0
                if not seq:
                    seq = self._seq.get(topic, 0) + 1
                    self._seq[topic] = seq
                    touched.add(topic)
                payload = encode_payload(message)
                size = charged_size(payload, message.key)
                rows.append((prio, kind, message.key, seq, message.ts, payload, size))
                self._count[prio] += 1
                self._bytes[prio] += size
                self.stats.depth += 1
                self.stats.depth_bytes += size
                self.stats.appended += 1
                self.stats.appended_bytes += size
            db.executemany(
                "INSERT INTO messages (prio, kind, key, seq, ts, payload, size) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany(
                "INSERT INTO seqs VALUES (?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET seq = excluded.seq",
                [(kind, key, self._seq[(kind, key)]) for kind, key in touched],
            )
            self._enforce_cap()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._reload_counts()
            raise
        self._wakeup.set()

    def _coalesce(
        self, prio: int, key: str, pending: list[tuple[int, str, str, int, float, str, int]]
    ) -> int:
        """Drop the newest not-taken status of ``key`` (queued or in this append); return its seq or 0."""
        for i in range(len(pending) - 1, -1, -1):
            row = pending[i]
            if row[0] == prio and row[2] == key:
                del pending[i]
                self._forget(prio, row[6])
                return row[3]
        found = self._db.execute(
            "SELECT id, seq, size FROM messages WHERE prio = ? AND key = ? AND id > ? ORDER BY id DESC LIMIT 1",
            (prio, key, self._cursor[prio]),
        ).fetchone()
        if found is None:
            return 0
        self._db.execute("DELETE FROM messages WHERE id = ?", (found[0],))
        self._forget(prio, found[2])
        return int(found[1])

    def _forget(self, prio: int, size: int) -> None:
        self._count[prio] -= 1
        self._bytes[prio] -= size
        self.stats.depth -= 1
        self.stats.depth_bytes -= size

    def _enforce_cap(self) -> None:
        for kind in DROP_ORDER:
            prio = PRIORITY[kind]
            while self.stats.depth_bytes > self.max_bytes and self._count[prio]:
                rows = self._db.execute(
                    "SELECT id, size FROM messages WHERE prio = ? ORDER BY id LIMIT 256", (prio,)
                ).fetchall()
                last = 0
                for env_id, size in rows:
                    if self.stats.depth_bytes <= self.max_bytes:
                        break
                    last = env_id
                    self._in_flight.pop(env_id, None)
                    self._forget(prio, size)
                    self._count_drop(kind.value)
                if not last:
                    break
                self._db.execute("DELETE FROM messages WHERE prio = ? AND id <= ?", (prio, last))

    def _reload_counts(self) -> None:
        self._count = dict.fromkeys(_KIND_OF_PRIO, 0)
        self._bytes = dict.fromkeys(_KIND_OF_PRIO, 0)
        for prio, count, size in self._db.execute(
            "SELECT prio, COUNT(*), SUM(size) FROM messages GROUP BY prio"
        ):
            self._count[prio], self._bytes[prio] = count, size
        self.stats.depth, self.stats.depth_bytes = sum(self._count.values()), sum(self._bytes.values())
        self._seq = {
            (kind, key): seq for kind, key, seq in self._db.execute("SELECT kind, key, seq FROM seqs")
        }

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
            for env_id, key, seq, ts, payload, size in rows:
                is_replay = env_id < self._live_from
                if is_replay:
                    if replayed >= budget:
                        self._paced = True
                        break
                    replayed += 1
                batch.append(
                    Envelope(env_id, seq, Message(kind, key, ts, json.loads(payload)), replayed=is_replay)
                )
                self._in_flight[env_id] = (prio, size)
                self._cursor[prio] = env_id
        return batch, replayed

    def ack(self, envelopes: Sequence[Envelope]) -> None:
        done = [(env.id,) for env in envelopes if env.id in self._in_flight]
        if not done:
            return
        self._begin(self._sync_ack)
        try:
            self._db.executemany("DELETE FROM messages WHERE id = ?", done)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for (env_id,) in done:
            prio, size = self._in_flight.pop(env_id)
            self._forget(prio, size)
            self.stats.acked += 1
        if self.stats.depth == 0 and self._db.execute("PRAGMA freelist_count").fetchone()[0] > 4096:
            self._db.execute("PRAGMA incremental_vacuum")  # give the disk back after a drained backlog
        self._end_drop_episode()

    def release(self) -> None:
        self._cursor = dict.fromkeys(_KIND_OF_PRIO, 0)
        self._in_flight.clear()
        self._live_from = int(self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM messages").fetchone()[0])
        self._wakeup.set()

    def close(self) -> None:
        self._db.close()
