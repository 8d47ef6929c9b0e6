"""The durable outbox: SQLite in WAL mode, one file per sink in the state directory, one writer thread.

Why SQLite and not segment files: one group is one transaction (all or nothing after a crash), acks are
deletes by id instead of a cursor plus a compaction pass, the per-topic ``seq`` counters commit in the
same transaction as the messages they numbered, the format is inspectable with the ``sqlite3`` shell, and
``locking_mode=EXCLUSIVE`` keeps a second agent from sharing the file.

Nothing blocks the event loop (issue 11 item 5): ``append``, ``ack``, ``dead_letter`` and ``release``
only queue work; a writer thread per outbox takes everything queued at once and commits it as one
transaction (group commit: one fsync however many appends arrived meanwhile); ``take`` awaits the
writer's answer from the commit that brings something (``agent.delivery.parked``). A take sees only
committed messages, so nothing is published that a crash could renumber. The stats are the writer's and
lag an append until ``await settled()``.

Durability (``OutboxConfig.fsync``): a committed transaction survives ``kill -9`` in every mode (it is in
the OS page cache); what is queued but not yet committed (at most one commit time, milliseconds) is not.
``append`` (default) fsyncs every commit, so a power loss loses no committed message; acks are not
fsynced, so a power loss can resend a few delivered messages (consumers see the repeated ``seq``).
``always`` fsyncs acks too; ``never`` leaves fsync to SQLite's checkpoints.

Acks ride (issue 17): ``ack`` keeps the ids on the loop's side until the next call that reaches the
writer (an append, a take it answers, a release, ``settled``, ``close``), or a take that gives up idle;
one writer wake-up and transaction per message fewer. A ``kill -9`` can resend one ``readings_interval``
of delivered messages (same ``seq``), never lose one. ``always`` hands every ack over at once.

A full state directory (issue 11 item 1) never stops the agent: see ``agent.delivery.disk_full``.
A damaged file is moved aside and a fresh one started, seq continuing (``agent.delivery.damage``).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from agent.config import statedir
from agent.delivery import damage, sqlite_file
from agent.delivery.disk_full import DiskFull, is_full
from agent.delivery.outbox import Encode, Refused
from agent.delivery.parked import Desk, Lobby, Take
from agent.delivery.sqlite_book import Group, SqliteBook
from agent.errors import FatalError
from agent.records import Envelope, Message

_SYNC = {"append": ("FULL", "NORMAL"), "always": ("FULL", "FULL"), "never": ("NORMAL", "NORMAL")}
_STOP = object()


class SqliteOutbox(SqliteBook):
    """Durable outbox; see ``agent.delivery.outbox`` for the contract and this module's docstring.

    Args:
        path: the database file; created with its directory when missing.
        max_bytes: cap on the charged bytes of queued messages.
        replay_rate: most replayed envelopes per second.
        fsync: ``append``, ``always`` or ``never``.
        clock: monotonic clock for pacing (tests inject one).
        log: structlog logger; one is made when ``None``.
        encode: the sink's ``encode`` hook; the default JSON wire form when ``None``.

    Raises:
        FatalError: the file is locked by another process (another agent on the same state directory).
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
        encode: Encode | None = None,
    ) -> None:
        super().__init__(max_bytes, replay_rate, clock, log, encode)
        self.path = path
        self._sync_append, self._sync_ack = _SYNC[fsync]
        self._ack_now = fsync == "always"
        self._sync_now = ""
        self._ops: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued = 0  # appended messages the writer has not numbered yet (under _lock)
        self._acks: list[int] = []  # acked ids not yet handed to the writer (the loop's side only)
        self._seqs = damage.Reservations(path)
        self._full = DiskFull(self)
        self._desk = Desk(self._attempt)
        self._lobby = Lobby(self._lock)
        statedir.private_dir(path.parent)  # 0700 whatever the umask (issue 10)
        self._committed = 0
        self._open()
        self.stats.depth = self._committed
        if self._committed:
            self.log.info("outbox reopened with a backlog", depth=self._committed, path=str(path))
        self._thread = threading.Thread(target=self._run, name=f"outbox-{path.stem}", daemon=True)
        self._thread.start()

    # --- the loop's side: queue work, never touch the file ---------------------------------------------

    def append(self, messages: Iterable[Message]) -> None:
        batch = list(messages)
        if not batch:
            return
        with self._lock:
            self._queued += len(batch)
            self.stats.depth += len(batch)
        self._ops.put(("append", batch, self._pop_acks()))

    def ack(self, envelopes: Sequence[Envelope]) -> None:
        """Keep the ids for the next call that reaches the writer (the module docstring: acks ride);
        with ``fsync="always"`` hand them over now, as that mode promises no duplicate after a power cut."""
        self._acks.extend(e.id for e in envelopes)
        if self._ack_now:
            self._hand_acks()

    def _pop_acks(self) -> list[int]:
        acks, self._acks = self._acks, []
        return acks

    def _hand_acks(self) -> None:
        """Queue the acks kept so far, ahead of whatever the caller queues next."""
        if self._acks:
            self._ops.put(("ack", self._pop_acks()))

    def dead_letter(self, refused: Refused) -> None:
        if refused:
            self._hand_acks()
            self._ops.put(("dead", list(refused)))

    def release(self) -> None:
        self._hand_acks()
        self._lobby.refill()
        self._ops.put(("release",))

    async def settled(self) -> None:
        answer: Future[None] = Future()
        self._ops.put(("sync", answer, self._pop_acks()))
        await asyncio.wrap_future(answer)

    async def take(self, n: int, timeout: float) -> list[Envelope]:  # noqa: ASYNC109 - the contract
        """As ``Outbox.take``; answered by the writer from the next commit (``agent.delivery.parked``).

        Out of replay budget (the pacer), the writer keeps the take until a burst's worth is back or a
        live message commits, whichever comes first; then it is asked again with the new budget."""
        deadline = time.monotonic() + timeout
        while True:
            budget = self._pacer.available()
            until = deadline if budget else min(deadline, time.monotonic() + self._pacer.wait_s())
            take = Take(n, budget, until, Future())
            batch, replayed, paced = await self._lobby.ask(take, self._ops, self._pop_acks)
            if batch:
                self._pacer.spend(replayed)
                self.stats.replayed += replayed
                return batch
            if not paced or time.monotonic() >= deadline:
                self._hand_acks()  # nothing came to carry them: commit them now
                return []

    def close(self) -> None:
        if self._thread.is_alive():
            self._hand_acks()
            self._ops.put((_STOP,))
            self._thread.join()

    # --- the writer thread -------------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._connect()
        except sqlite3.OperationalError as exc:
            if is_full(exc):
                self._full.unopened(exc)  # retried by the writer; messages dropped meanwhile, counted
                return
            hint = "; is another edge-agent using the same state directory?" if "locked" in str(exc) else ""
            raise FatalError(f"outbox {self.path}: {exc}{hint}") from exc
        except sqlite3.DatabaseError as exc:
            self._db.close()
            damage.move_aside(self, str(exc))
            self._connect()
        self._seqs.floor(self._seq)

    def _connect(self) -> None:
        sqlite_file.refuse_links(self.path)
        if damage.zero_length(self.path):
            damage.move_aside(self, "zero-length file")
        sqlite_file.prepare(self.path)
        self._db = sqlite_file.connect(self.path)
        self._sync_now = ""
        self._init_db(encode_v1=True)
        self._load_counts()

    def _run(self) -> None:
        while True:
            try:
                group = [self._ops.get(timeout=self._desk.timeout())]
            except queue.Empty:  # a parked take's deadline
                self._desk.retry()
                continue
            while True:
                try:
                    group.append(self._ops.get_nowait())
                except queue.Empty:
                    break
            if not self._process(group):
                break
        self._desk.retry(final=True)
        if self._full.opened:
            self._db.close()

    def _process(self, ops: list[Any]) -> bool:
        """Run one group of queued calls; commit once before each take and at the end."""
        pending = Group()
        appended = 0
        going = True
        for op in ops:
            name = op[0]
            if name == "append":
                appended += len(op[1])
                pending.acked.extend(op[2])
                self._store(op[1], pending)
            elif name == "ack":
                pending.acked.extend(op[1])
            elif name == "dead":
                pending.dead.extend(op[1])
            elif name == "release":
                appended = self._flush(pending, appended)
                pending = Group()
                if self._full.opened:
                    self._release()
                self._desk.retry(self._lobby.fresh_rows())
            elif name == _STOP:
                going = False
            else:  # take, sync: they see what was queued before them, committed, and carry acks
                pending.acked.extend(op[2])
                appended = self._flush(pending, appended)
                pending = Group()
                if name == "take":
                    self._desk.offer(op[1])
                elif op[1].set_running_or_notify_cancel():
                    op[1].set_result(None)
        self._flush(pending, appended)
        return going

    def _store(self, messages: list[Message], group: Group) -> None:
        if not self._full.opened and not self._full.reopen():
            self._full.drop_unstored(messages)
            return
        try:
            self._stage(messages, group)
        except sqlite3.Error as exc:  # reading a queued status to coalesce
            self._full.write_error("append", exc)

    def _flush(self, group: Group, appended: int) -> int:
        if group.rows or group.acked or group.dead or group.coalesced or group.seqs:
            self._full.commit(group)
        with self._lock:
            self._queued -= appended
            self.stats.depth = self._committed + self._queued
        if group.rows:  # the parked takes, and those waiting at the loop, before any queued after this
            self._desk.retry(self._lobby.fresh_rows())
        return 0

    def _attempt(self, take: Take, final: bool) -> bool:
        """Answer ``take`` if there is something for it or ``final``; else mark nothing and return False."""
        cursor = dict(self._cursor)
        self._paced = False
        try:
            batch, replayed = self._pick(take.n, take.budget) if self._full.opened else ([], 0)
        except sqlite3.Error as exc:
            self._full.write_error("take", exc)
            batch, replayed, final = [], 0, True
        if not batch and not final:
            return False
        if not take.answer.set_running_or_notify_cancel():  # its delivery loop is going: unmark
            self._cursor = cursor
            for envelope in batch:
                self._in_flight.pop(envelope.id, None)
            return True
        if self._full.opened and not self._paced and len(batch) < take.n:
            self._lobby.drained()  # before the answer: the loop's next take must see it
        take.answer.set_result((batch, replayed, self._paced))
        return True
