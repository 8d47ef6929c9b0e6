"""The counters of a Sparkplug edge node session: ``seq``, ``bdSeq`` and metric aliases.

``seq`` (0-255, wrapping) numbers every message of the node after NBIRTH (which is 0); NDEATH has none.
``bdSeq`` (0-255, wrapping) numbers MQTT sessions: the will (NDEATH) registered at CONNECT and the NBIRTH
of that session carry the same value, so a host can tell a stale NDEATH from the current one. It is
persisted in the state directory and advanced only once a broker accepted the session, so connection
attempts that fail during an outage, and a SIGKILL, leave no gap a host would see.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.config import statedir
from agent.errors import FatalError


class Seq:
    """The node's message sequence: ``birth()`` is 0, then ``next()`` 1, 2, ... 255, 0, ..."""

    def __init__(self) -> None:
        self._next = 0

    def birth(self) -> int:
        self._next = 1
        return 0

    def next(self) -> int:
        value = self._next
        self._next = (value + 1) % 256
        return value


class BdSeq:
    """The birth/death sequence, one byte, durable in ``path``.

    ``pending()`` is the value the next session uses (its will and its NBIRTH); ``commit()`` records that
    the session was accepted, so the one after uses the next value. A fresh node starts at 0.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last = self._load()

    def _load(self) -> int | None:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FatalError(f"sparkplug: cannot read bdSeq file {self.path}: {exc.strerror}") from exc
        if not text.isdigit() or int(text) > 255:
            raise FatalError(f"sparkplug: bdSeq file {self.path} holds {text!r}, not a number 0-255")
        return int(text)

    def pending(self) -> int:
        return 0 if self.last is None else (self.last + 1) % 256

    def commit(self, value: int) -> None:
        """Persist ``value`` as used (blocking file I/O: call it from a thread)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = statedir.open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)  # 0600, no symlink
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(f"{value}\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        self.last = value


class Aliases:
    """One alias per (device, metric) of the node, unique across the node, stable for the process."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str | None, str], int] = {}
        self._names: dict[int, tuple[str | None, str]] = {}

    def of(self, device: str | None, name: str) -> int:
        key = (device, name)
        alias = self._by_key.get(key)
        if alias is None:
            alias = self._by_key[key] = len(self._by_key) + 1
            self._names[alias] = key
        return alias

    def name(self, alias: int) -> tuple[str | None, str] | None:
        return self._names.get(alias)
