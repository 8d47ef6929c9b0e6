"""A damaged outbox file is moved aside, never a reason not to start; ``seq`` stays monotonic anyway.

Issue 11 item 4: a corrupt file stopped the agent from starting (exit 1, crash loop) and a zero-length
one was taken for a new outbox, restarting every ``seq`` at 1. Now both are renamed to
``<file>.damaged-<UTC time>`` (with their ``-wal``/``-shm`` companions), logged once, counted in
``stats.damaged`` (status and metrics) and a fresh outbox is started.

The ``seq`` of each topic continues past anything ever published because it is reserved apart from the
queue: ``<file>.seqs`` (JSON, replaced atomically) holds, per topic, a number no seq has reached yet,
``RESERVE`` ahead. The writer rewrites it before committing a seq beyond its reservation (once per
``RESERVE`` messages of a topic), so a fresh outbox starts each topic after its reservation: consumers
see one jump in ``seq``, never a repeat.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.config import statedir

RESERVE = 10_000
Topic = tuple[str, str]


def zero_length(path: Path) -> bool:
    """An existing empty file: SQLite would silently take it for a new database."""
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return False


def move_aside(outbox: Any, why: str) -> Path:
    """Rename the damaged file (and its WAL) out of the way; log once; count it in the stats."""
    path = outbox.path
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            extra.rename(target.with_name(target.name + suffix))
    path.rename(target)
    outbox.stats.damaged += 1
    outbox.stats.damaged_file = str(target)
    outbox.log.error(
        "outbox file damaged, moved aside; starting an empty outbox",
        path=str(path),
        moved_to=str(target),
        error=why,
        seq="continues past the reserved numbers of each topic",
    )
    return target


class Reservations:
    """The per-topic seq reservations of one outbox file (see the module docstring)."""

    def __init__(self, outbox_path: Path) -> None:
        self.path = outbox_path.with_name(outbox_path.name + ".seqs")
        self.reserved: dict[Topic, int] = {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            self.reserved = {(kind, key): int(n) for kind, key, n in raw}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError):
            self.reserved = {}  # torn or foreign: the outbox's own seqs table is still authoritative

    def floor(self, seqs: dict[Topic, int]) -> None:
        """After opening: topics the outbox does not know (a fresh file) start past their reservation."""
        for topic, reserved in self.reserved.items():
            if seqs.get(topic, 0) < reserved and topic not in seqs:
                seqs[topic] = reserved
        self.reserve(seqs)

    def reserve(self, seqs: dict[Topic, int]) -> None:
        """Before a commit: make sure every seq about to be committed is below its reservation."""
        short = {t: s for t, s in seqs.items() if s >= self.reserved.get(t, 0)}
        if not short:
            return
        wanted = {**self.reserved, **{topic: seq + RESERVE for topic, seq in short.items()}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = statedir.open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)  # 0600, no symlink
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump([[k, key, n] for (k, key), n in sorted(wanted.items())], handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError:
            return  # a full disk: tried again before the next commit of these topics
        self.reserved = wanted
