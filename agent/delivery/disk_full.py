"""A full state directory: keep running, store what matters most, count the rest, resume by itself.

Issue 11 item 1: SQLite's "database or disk is full" used to crash the agent (and its rollback then
failed with "cannot rollback - no transaction is active"). Now a group that cannot be committed is
rolled back (only when a transaction is still open) and retried with less, in the documented drop
priority: without readings, then without features, then without status, alerts last, and finally with
only its acks. Each dropped message is counted in ``stats.dropped`` by kind and keeps the ``seq`` it was
given, so consumers see the hole as a jump in ``seq`` once the topic flows again. The episode is logged
once when it starts and once when a commit succeeds again (with what it dropped); ``stats.disk_full``
says it is going on. Every new group tries everything again first, so space coming back is noticed on
the next append, without a restart. A file that cannot even be created at start is retried the same
way, at most once a second; messages meanwhile are dropped and counted (their seq is not known yet).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from agent.delivery.sqlite_book import Group
from agent.records import Message

# What a retried group keeps, step by step (the drop priority: readings go first, alerts last).
_KEEP: tuple[frozenset[str], ...] = (
    frozenset({"alert", "status", "features"}),
    frozenset({"alert", "status"}),
    frozenset({"alert"}),
    frozenset(),
)
_REOPEN_EVERY_S = 1.0


def is_full(exc: BaseException) -> bool:
    """True for SQLite's SQLITE_FULL ("database or disk is full") and an OS-level ENOSPC."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "disk is full" in str(exc) or "No space left" in str(exc)


class DiskFull:
    """The full-disk episode of one outbox; runs on its writer thread."""

    def __init__(self, outbox: Any) -> None:
        self.outbox = outbox
        self.opened = True
        self._dropped: dict[str, int] | None = None  # drops of the current episode, None between episodes
        self._next_open = 0.0
        self._errors_logged: set[str] = set()

    def unopened(self, exc: BaseException) -> None:
        self.opened = False
        with contextlib.suppress(OSError):
            if self.outbox.path.stat().st_size == 0:  # created by the failed open: not a damaged file
                self.outbox.path.unlink()
        self._next_open = time.monotonic() + _REOPEN_EVERY_S
        self._start(exc)

    def reopen(self) -> bool:
        if time.monotonic() < self._next_open:
            return False
        self._next_open = time.monotonic() + _REOPEN_EVERY_S
        with contextlib.suppress(AttributeError, sqlite3.Error):
            self.outbox._db.close()
        try:
            self.outbox._connect()
        except sqlite3.Error:
            return False
        self.opened = True
        self.outbox._seqs.floor(self.outbox._seq)
        return True

    def drop_unstored(self, messages: Iterable[Message]) -> None:
        for message in messages:
            self._lose(message.kind.value, 1)

    def commit(self, group: Group) -> None:
        """Commit ``group``, or as much of it as the disk takes, by priority."""
        if not self.opened:
            return
        try:
            self.outbox.transaction(group)
        except sqlite3.Error as exc:
            if not is_full(exc):
                self.write_error("commit", exc)
            else:
                self._start(exc)
            self._retry(group)
            return
        self._end()

    def _retry(self, group: Group) -> None:
        rows = group.rows
        for keep in _KEEP:
            group.rows = [r for r in rows if r[1] in keep]
            try:
                self.outbox.transaction(group)
            except sqlite3.Error:
                continue
            self._count(row for row in rows if row[1] not in keep)
            return
        self._count(rows)

    def _count(self, rows: Iterable[tuple[int, str, str, int, float, bytes, int]]) -> None:
        for row in rows:
            self._lose(row[1], 1)

    def _lose(self, kind: str, n: int) -> None:
        self.outbox._count_drop(kind, n, quiet=True)
        if self._dropped is None:
            self._start(None)
        assert self._dropped is not None
        self._dropped[kind] = self._dropped.get(kind, 0) + n

    def _start(self, exc: BaseException | None) -> None:
        if self._dropped is not None:
            return
        self._dropped = {}
        self.outbox.stats.disk_full = True
        self.outbox.log.error(
            "state directory full, dropping new messages by priority until space returns",
            path=str(self.outbox.path),
            error=str(exc) if exc is not None else "cannot open the outbox",
            policy="readings, then features, then status; alerts last; seq jumps mark the hole",
        )

    def _end(self) -> None:
        if self._dropped is None:
            return
        self.outbox.log.info(
            "state directory writable again", path=str(self.outbox.path), dropped=self._dropped
        )
        self._dropped = None
        self.outbox.stats.disk_full = False

    def write_error(self, what: str, exc: BaseException) -> None:
        """An SQLite error that is not a full disk: counted, logged once per kind of error."""
        self.outbox.stats.write_errors += 1
        text = str(exc)
        if is_full(exc):
            self._start(exc)
        elif text not in self._errors_logged:
            self._errors_logged.add(text)
            self.outbox.log.error(
                "outbox write failed", operation=what, error=text, path=str(self.outbox.path)
            )
