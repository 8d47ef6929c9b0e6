"""One paho client driven by the asyncio event loop itself: no paho network thread (issue 17).

A thread wake-up costs about 0.25 ms of CPU on a small gateway, and paho's own thread (``loop_start``) took
one or two per message, plus a hop back to the loop for every acknowledgement. Here the loop watches paho's
socket, as aiomqtt does (``add_reader``/``add_writer`` and a periodic ``loop_misc``).

Contract:
    * Make a ``NetLoop`` on the loop thread right after the client, before paho's blocking ``connect``
      (DNS, TCP, TLS handshake), which runs in an executor: it sets paho's write callbacks, so paho never
      writes from that thread (``CONNECT`` is queued), and ignores them until ``start``.
    * ``start()`` on the loop thread once ``connect`` returned: the socket is read with ``loop_read``
      whenever it is readable, written with ``loop_write`` on the loop iteration after paho queued bytes
      (watched for writability only while the socket does not take them all), and ``loop_misc``
      runs every ``MISC_INTERVAL`` seconds (PINGREQ after ``keepalive`` of silence; a broker that does not
      answer within ``keepalive`` is declared lost). From then on only the loop thread touches the client,
      and every paho callback (``on_connect``, ``on_publish``, ``on_message``, ``on_disconnect``) runs on
      it, inside one of those three calls.
    * When paho closes the socket (connection lost, keepalive, our DISCONNECT written), the watch ends by
      itself. An exception out of paho's loop calls (a bug in a callback) ends it too and is handed to
      ``on_broken``: the connection counts as lost.
    * ``stop()`` (idempotent): once started, sends DISCONNECT if the socket takes it now, ends the watch and
      closes the socket. Afterwards nothing of this client is registered with the loop and no timer is
      pending. Stopped before ``start`` (a cancelled connect), it only makes a late ``start`` impossible;
      whoever cancelled the connect closes the socket it makes.

TLS: an SSL socket can hold decrypted bytes the kernel no longer reports readable, so a read that leaves
``pending()`` bytes reads again on the next loop iteration. paho turns ``SSLWantReadError`` into "try
again" and asks for the writer on ``SSLWantWriteError``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

MISC_INTERVAL = 1.0  # seconds between loop_misc calls, as paho's own loop (select with a 1 s timeout)


class NetLoop:
    """Watches one paho client's socket from the running loop; see the module docstring."""

    def __init__(self, client: mqtt.Client, on_broken: Callable[[BaseException], None]) -> None:
        self._client = client
        self._loop = asyncio.get_running_loop()
        self._on_broken = on_broken
        self._fd: int | None = None  # set while watched
        self._sock: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False
        client.on_socket_close = self._socket_closed
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._written

    @property
    def started(self) -> bool:
        return self._fd is not None

    def start(self) -> None:
        """Watch the socket paho's ``connect`` opened; on the loop thread, after ``connect`` returned."""
        sock = self._client.socket()
        if self._stopped or sock is None:
            return  # stopped meanwhile; paho's connect, once returned, always leaves its socket
        self._sock, self._fd = sock, sock.fileno()
        self._loop.add_reader(self._fd, self._readable)
        self._loop.add_writer(self._fd, self._writable)  # CONNECT is queued; the writer removes itself
        self._timer = self._loop.call_later(MISC_INTERVAL, self._misc)

    def stop(self) -> None:
        """Say DISCONNECT if the socket takes it now, stop watching and close the socket."""
        self._stopped = True
        if self._fd is None:
            return
        client = self._client
        try:
            if client.disconnect() == mqtt.MQTT_ERR_SUCCESS:
                client.loop_write()  # non-blocking; paho closes the socket once DISCONNECT is out
        finally:
            self._unwatch()
            if (sock := client.socket()) is not None:
                sock.close()

    def _unwatch(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._fd = self._sock = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # paho's socket callbacks: before start() they come from the executor thread and do nothing.

    def _want_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._fd is not None:
            # Write on the next iteration, and watch for writability only if the socket did not take
            # everything: it almost always does, and that saves two epoll_ctl and a wake-up per publish.
            self._loop.call_soon(self._write_soon)

    def _write_soon(self) -> None:
        if self._fd is None:
            return
        self._writable()
        if self._fd is not None and self._client.want_write():
            self._loop.add_writer(self._fd, self._writable)

    def _written(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._fd is not None:
            self._loop.remove_writer(self._fd)

    def _socket_closed(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if sock is self._sock:
            self._unwatch()

    # The loop calls these three.

    def _readable(self) -> None:
        try:
            self._client.loop_read()
        except Exception as exc:  # a callback's bug: paho would leave the socket open and readable
            self._broken(exc)
            return
        sock = self._sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._loop.call_soon(self._readable_again, sock)

    def _readable_again(self, sock: Any) -> None:
        if sock is self._sock:
            self._readable()

    def _writable(self) -> None:
        client = self._client
        try:
            client.loop_write()
        except Exception as exc:
            self._broken(exc)
            return
        if self._fd is not None and not client.want_write():
            self._loop.remove_writer(self._fd)  # also when paho believes it never asked for the writer

    def _misc(self) -> None:
        self._timer = None
        try:
            self._client.loop_misc()
        except Exception as exc:
            self._broken(exc)
            return
        if self._fd is not None:
            self._timer = self._loop.call_later(MISC_INTERVAL, self._misc)

    def _broken(self, exc: BaseException) -> None:
        self._unwatch()
        if (sock := self._client.socket()) is not None:
            sock.close()
        self._on_broken(exc)
