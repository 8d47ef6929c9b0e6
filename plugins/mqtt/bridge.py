"""paho's network thread handing over to the event loop, for the MQTT sinks (see ``plugins.mqtt.sink``).

paho calls ``_on_connect``, ``_on_disconnect`` and ``_on_publish`` from its own thread; they never touch
asyncio objects. CONNACK and disconnects reach the loop with ``call_soon_threadsafe``; PUBACKs are queued
on a deque and drained in the loop by one scheduled callback per burst, not one per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import statedir


@dataclass
class Pending:
    """The acknowledgements one ``publish`` call waits for."""

    future: asyncio.Future[None]
    remaining: int
    refused: list[tuple[int, str]] = field(default_factory=list)  # (index in the batch, reason)
    lost: str | None = None  # why the connection dropped before every acknowledgement came


class PahoBridge:
    """The callback half of ``MqttSink``: PUBACKs, CONNACK and lost connections, handed to the loop."""

    _client: mqtt.Client | None
    _loop: asyncio.AbstractEventLoop | None
    _connack: asyncio.Future[Any] | None
    _connected: bool
    _waiting: dict[int, tuple[Pending, int]]
    _acks: deque[tuple[int, str | None]]
    _drain_scheduled: bool

    # paho's network thread calls these three; they only hand over to the event loop.

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, code: ReasonCode, props: Any
    ) -> None:
        self._threadsafe(self._connack_received, client, code)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, code: ReasonCode, props: Any
    ) -> None:
        self._threadsafe(
            self._connection_lost, client, code.getName() if code is not None else "network error"
        )

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, code: ReasonCode, props: Any) -> None:
        self._acks.append((mid, f"0x{code.value:02X} {code.getName()}" if code.is_failure else None))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._threadsafe(self._drain_acks)

    def _threadsafe(self, callback: Any, *args: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                self._loop.call_soon_threadsafe(callback, *args)

    def _connack_received(self, client: mqtt.Client, code: ReasonCode) -> None:
        if client is self._client and self._connack is not None and not self._connack.done():
            self._connack.set_result(code)

    def _drain_acks(self) -> None:
        self._drain_scheduled = False  # before draining: an ack queued from now on schedules a new drain
        while self._acks:
            mid, refused = self._acks.popleft()
            waiting = self._waiting.pop(mid, None)
            if waiting is None:
                continue
            pending, index = waiting
            if refused:
                pending.refused.append((index, refused))
            pending.remaining -= 1
            if pending.remaining == 0 and not pending.future.done():
                pending.future.set_result(None)

    def _connection_lost(self, client: mqtt.Client, reason: str) -> None:
        if client is not self._client:
            return  # a late word from the previous connection's client
        self._connected = False
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)
        for pending, _ in self._waiting.values():
            if not pending.future.done():
                pending.lost = reason
                pending.future.set_result(None)
        self._waiting.clear()


def next_session(state_dir: Path, sink: str) -> int:
    """The next session number of this sink, kept in ``state_dir`` so it grows across restarts too.

    A consumer keeps, per agent, the status of the highest session, and within one session ``offline``
    over ``online``: the will is composed at connect time, so its ``ts`` is older than the birth's.
    """
    path = state_dir / f"mqtt-session-{sink}"
    try:
        last = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        last = 0
    with contextlib.suppress(OSError):
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        statedir.write_private(tmp, f"{last + 1}\n".encode())  # 0600, no symlink (issue 10)
        os.replace(tmp, path)
    return last + 1


def close_socket(client: mqtt.Client) -> None:
    if (sock := client.socket()) is not None:
        sock.close()
