"""A real mosquitto for tests, on free ports with its own config, and a paho subscriber that records.

``Mosquitto`` listens on three loopback ports: ``port`` (plain, anonymous), ``auth_port`` (plain, user
``agent`` / password ``secret``) and ``tls_port`` (TLS with a CA, server and client certificates made here
with ``cryptography``; the client must present a certificate). Persistence is on, so a subscriber with a
persistent session gets what was published while it reconnected after ``stop()`` / ``start()``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import free_port

USER, PASSWORD = "agent", "secret"


def password_line(user: str, password: str) -> str:
    """A mosquitto 2 password file line (``$7$``: PBKDF2-SHA512, 101 iterations), as mosquitto_passwd makes."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n"


@dataclass
class Pki:
    """PEM files: a CA, a server certificate for localhost/127.0.0.1, a client certificate, and a second
    CA that signed nothing (a client trusting only it must reject the server)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    files = Pki(
        *(
            folder / name
            for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key", "other.pem")
        )
    )
    ca_key, other_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    pem = serialization.Encoding.PEM
    files.ca.write_bytes(_cert("test CA", ca_key, None, ca=True).public_bytes(pem))
    files.other_ca.write_bytes(_cert("other CA", other_key, None, ca=True).public_bytes(pem))
    files.server_cert.write_bytes(
        _cert("localhost", server_key, ("test CA", ca_key), server=True).public_bytes(pem)
    )
    files.client_cert.write_bytes(_cert("edge-agent", client_key, ("test CA", ca_key)).public_bytes(pem))
    _write_key(server_key, files.server_key)
    _write_key(client_key, files.client_key)
    return files


class Mosquitto:
    """One mosquitto process with its config in ``folder``; the ports stay the same across restarts."""

    def __init__(self, folder: Path, debug: bool = False) -> None:
        self.debug = debug  # log every packet (PINGREQ included) to ``log``
        binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if binary is None:
            pytest.fail(
                "the mosquitto binary is missing: install it (apt-get install mosquitto); CI installs it"
            )
        self.binary = binary
        self.folder = folder
        self.port, self.auth_port, self.tls_port = free_port(), free_port(), free_port()
        self.pki = make_pki(folder / "pki")
        (folder / "passwd").write_text(password_line(USER, PASSWORD))
        self.log = folder / "mosquitto.log"
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(self._config())
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        f, pki = self.folder, self.pki
        lines = [
            "per_listener_settings true",
            "persistence true",
            f"persistence_location {f}/",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            *(["log_type debug"] if self.debug else []),
            *(["user root"] if os.geteuid() == 0 else []),
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"listener {self.auth_port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {f / 'passwd'}",
            f"listener {self.tls_port} 127.0.0.1",
            "allow_anonymous true",
            f"cafile {pki.ca}",
            f"certfile {pki.server_cert}",
            f"keyfile {pki.server_key}",
            "require_certificate true",
        ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Start (or restart, same ports) and return once every listener accepts connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        for port in (self.port, self.auth_port, self.tls_port):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"mosquitto exited with {self.proc.returncode}: {self.log_text()[-2000:]}"
                    )
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"mosquitto not listening on {port}: {self.log_text()[-2000:]}"
                        ) from None
                    time.sleep(0.02)

    def stop(self) -> None:
        """Clean shutdown (SIGTERM): persistent sessions and retained messages are saved."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def running_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """Body of a ``mosquitto`` fixture: a started broker, killed at teardown."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


async def eventually(predicate: Callable[[], bool], within: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate`` without blocking the event loop; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Received:
    topic: str
    body: dict[str, Any]
    retain: bool


class Subscriber:
    """A paho client with a persistent session (QoS 1) that records every message on ``topic_filter``.

    It reconnects by itself after a broker restart; the broker keeps what arrived meanwhile.
    """

    def __init__(self, port: int, topic_filter: str, client_id: str = "test-subscriber") -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._filter = topic_filter
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, *_: c.subscribe(self._filter, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber did not get its SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], within: float = 20.0
    ) -> list[Received]:
        """Poll (without blocking the event loop) until ``predicate(messages)``; fail after ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            got = self.snapshot()
            if predicate(got):
                return got
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out; got {len(got)} messages, last: {[(m.topic, m.body) for m in got[-3:]]}"
                )
            await asyncio.sleep(0.02)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
