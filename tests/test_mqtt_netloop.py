"""paho driven by the event loop (``plugins.mqtt.netloop``, issue 17), against a real mosquitto.

No thread of paho's while connected and publishing; an idle connection pings and stays up past its
keepalive; a broker that is silent at connect, or a port that never completes the TCP handshake, fails with
the same clear errors; cancelling a connect leaves no socket behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import TransientError
from agent.records import Envelope
from tests.conftest import free_port
from tests.mosquitto import Mosquitto, eventually, running_mosquitto
from tests.test_mqtt_sink import features, make_sink


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    yield from running_mosquitto(tmp_path)


def open_sockets() -> int:
    """Sockets this process holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def batch(start: int, count: int) -> list[Envelope]:
    return [Envelope(n + 1, n + 1, features("line1", n)) for n in range(start, start + count)]


async def test_no_thread_but_the_loops_while_connected_and_publishing(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    before = {t.ident for t in threading.enumerate()}
    sink = make_sink(mosquitto.port, tmp_path)
    async with sink:
        for start in range(0, 1000, 100):
            assert await sink.publish(batch(start, 100)) == []
        # the default executor's workers ran the blocking connect; nothing else may start a thread
        new = [t.name for t in threading.enumerate() if t.ident not in before]
    assert [name for name in new if not name.startswith("asyncio_")] == []


async def test_an_idle_connection_pings_and_stays_up_past_its_keepalive(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", debug=True)
    broker.start()
    try:
        sink = make_sink(broker.port, tmp_path, keepalive=5)
        async with sink:
            client = sink._client
            pings = lambda: broker.log_text().count("Received PINGREQ from edge-agent-a1")  # noqa: E731
            # two pings: idle for at least 2x keepalive, beyond the broker's 1.5x limit
            await eventually(lambda: pings() >= 2, within=30, what="two PINGREQs")
            assert sink.connected and sink._client is client
            assert await sink.publish(batch(0, 1)) == []
        assert "exceeded timeout" not in broker.log_text()
    finally:
        broker.kill()


async def test_mutual_tls_delivers_many_batches(mosquitto: Mosquitto, tmp_path: Path) -> None:
    pki = mosquitto.pki
    sink = make_sink(
        mosquitto.tls_port,
        tmp_path,
        tls_ca_file=str(pki.ca),
        tls_cert_file=str(pki.client_cert),
        tls_key_file=str(pki.client_key),
    )
    sink.config.host = "localhost"  # the name in the server certificate
    async with sink:
        for start in range(0, 5000, 1000):  # PUBACKs arrive many to a TLS record
            assert await sink.publish(batch(start, 1000)) == []


class Mute:
    """Accepts TCP connections and never says a word (no CONNACK)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.accepted = 0

    async def __aenter__(self) -> Mute:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client leaves
        writer.close()


async def test_a_broker_silent_at_connect_times_out_and_leaks_no_socket(tmp_path: Path) -> None:
    async with Mute() as mute:
        before = open_sockets()
        sink = make_sink(mute.port, tmp_path, connect_timeout=1)
        with pytest.raises(TransientError, match="sent no CONNACK within connect_timeout"):
            async with sink:
                pass
        await eventually(lambda: open_sockets() == before, what="every socket closed")

        attempt = asyncio.create_task(sink.__aenter__(), name="connect")
        await eventually(lambda: mute.accepted == 2, what="the second connection")
        attempt.cancel()  # while it waits for the CONNACK
        with pytest.raises(asyncio.CancelledError):
            await attempt
        await eventually(lambda: open_sockets() == before, what="every socket closed")


@contextlib.contextmanager
def blackholed_port() -> Iterator[int]:
    """A port whose TCP handshake never completes: a listener with a full accept queue drops every SYN."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        queued.append(filler)
    try:
        yield port
    finally:
        for s in [*queued, listener]:
            s.close()


async def test_a_blackholed_broker_times_out_clearly_and_a_cancelled_connect_leaks_nothing(
    tmp_path: Path,
) -> None:
    with blackholed_port() as port:
        sink = make_sink(port, tmp_path, connect_timeout=1)
        with pytest.raises(TransientError, match=r"no answer from broker .* within connect_timeout"):
            async with sink:
                pass

        before = open_sockets()
        attempt = asyncio.create_task(sink.__aenter__(), name="connect")
        await eventually(lambda: open_sockets() > before, what="the connect under way")
        attempt.cancel()  # while the executor is still in the TCP handshake
        with pytest.raises(asyncio.CancelledError):
            await attempt
        await eventually(lambda: open_sockets() == before, what="the connect's socket closed")


async def test_a_publish_the_socket_takes_at_once_never_waits_for_writability(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each publish used to register the writer and wait an epoll round for EPOLLOUT: two epoll_ctl and
    # a wake-up per message, on a VM where a wake-up costs ~0.25 ms (issue 17)
    sink = make_sink(mosquitto.port, tmp_path)
    async with sink:
        loop = asyncio.get_running_loop()
        watched: list[int] = []
        add_writer = loop.add_writer
        monkeypatch.setattr(
            loop, "add_writer", lambda fd, cb, *a: (watched.append(fd), add_writer(fd, cb, *a))
        )
        for start in range(0, 100, 10):
            assert await sink.publish(batch(start, 10)) == []
        assert watched == []  # small messages on an idle socket: every write went through at once
        big = [Envelope(1, 1, features("line1", 0), data=b"x" * 8_000_000)]
        # More than the socket buffers hold while the broker reads nothing (stopped: a broker that
        # kept reading could take all 8 MB in one write loop, and this test failed on an idle run).
        assert mosquitto.proc is not None
        mosquitto.proc.send_signal(signal.SIGSTOP)
        try:
            publishing = asyncio.create_task(sink.publish(big), name="big-publish")
            await eventually(lambda: bool(watched), what="the socket watched for writability")
        finally:
            mosquitto.proc.send_signal(signal.SIGCONT)
        assert await publishing == []
