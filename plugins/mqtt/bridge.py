"""paho's callbacks for the MQTT sinks (see ``plugins.mqtt.sink``), on the event loop's thread.

paho is driven by the loop (``plugins.mqtt.netloop``): it calls ``_on_connect``, ``_on_disconnect`` and
``_on_publish`` from inside ``loop_read`` / ``loop_write`` / ``loop_misc``, so they resolve the futures the
sink awaits directly, one PUBACK at a time, with no hop between threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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
    """The callback half of ``MqttSink``: PUBACKs, CONNACK and lost connections, on the loop thread."""

    _client: mqtt.Client | None
    _connack: asyncio.Future[Any] | None
    _connected: bool
    _waiting: dict[int, tuple[Pending, int]]

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, code: ReasonCode, props: Any
    ) -> None:
        if client is self._client and self._connack is not None and not self._connack.done():
            self._connack.set_result(code)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, code: ReasonCode, props: Any
    ) -> None:
        self._connection_lost(client, code.getName() if code is not None else "network error")

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, code: ReasonCode, props: Any) -> None:
        waiting = self._waiting.pop(mid, None)
        if waiting is None:
            return  # nobody waits for it (a Sparkplug rebirth)
        pending, index = waiting
        if code.is_failure:
            pending.refused.append((index, f"0x{code.value:02X} {code.getName()}"))
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
