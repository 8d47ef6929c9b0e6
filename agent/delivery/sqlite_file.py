"""The durable outbox's file on disk: never opened through a link, always 0600 (issue 10).

The outbox (``agent.delivery.sqlite_store``) calls these in order when it connects: ``refuse_links``
before anything reads through the file (its damage check included), then ``prepare``, then ``connect``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.config import statedir
from agent.errors import FatalError


def journal(path: Path) -> tuple[Path, Path, Path]:
    """The database file and its WAL companions."""
    return path, Path(f"{path}-wal"), Path(f"{path}-shm")


def refuse_links(path: Path) -> None:
    """Raises: FatalError: the file or a companion is a symbolic link (a planted link, issue 10)."""
    for file in journal(path):
        if file.is_symlink():
            raise FatalError(
                f"outbox {file} is a symbolic link; the agent never follows links in its state directory"
            )


def prepare(path: Path) -> None:
    """Create the files 0600, whatever the umask, never through a link.

    Raises:
        FatalError: a file is unsafe (not ours, not a regular file).
        sqlite3.OperationalError: the disk refused (ENOSPC before SQLite even opens: the full-disk
            path takes it like SQLite's own error).
    """
    try:
        statedir.prepare(*journal(path))
    except statedir.UnsafeFile as exc:
        raise FatalError(f"outbox {path}: {exc.strerror or exc}") from exc
    except OSError as exc:
        raise sqlite3.OperationalError(f"outbox {path}: {exc.strerror or exc}") from exc


def connect(path: Path) -> sqlite3.Connection:
    """The writer thread's connection: autocommit (the writer opens its own transactions)."""
    return sqlite3.connect(path, timeout=1.0, isolation_level=None, check_same_thread=False)
