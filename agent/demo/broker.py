"""The demo's MQTT broker: the one at ``--broker`` when it answers, else a ``mosquitto`` it starts, else none.

Why a local ``mosquitto`` and not an embedded pure-Python broker: mosquitto is what users deploy, so the
demo shows the real thing, and a Python broker would be one more dependency with its own bugs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Broker:
    host: str
    port: int
    proc: subprocess.Popen[bytes] | None = None  # a mosquitto we started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _reachable(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    for path in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if found is None and Path(path).exists():
            found = path
    return found


def _start_mosquitto(binary: str, port: int, state: Path) -> subprocess.Popen[bytes]:
    """A mosquitto on 127.0.0.1:``port``, anonymous, no persistence, logging into ``state``."""
    conf = state / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    # As root, mosquitto switches to the user "mosquitto", which may not be able to write the log.
    lines += [f"log_dest file {state / 'mosquitto.log'}", *(["user root"] if os.geteuid() == 0 else [])]
    conf.write_text("\n".join(lines) + "\n")
    return subprocess.Popen(
        [binary, "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def find_broker(address: str, state: Path) -> Broker | None:
    """The broker at ``address`` if it accepts connections, else a started local mosquitto, else None."""
    host, _, port_text = address.rpartition(":")
    host, port = host or "127.0.0.1", int(port_text or 1883)
    if await _reachable(host, port):
        print(f"# MQTT: using the broker at {host}:{port}")
        return Broker(host, port)
    binary = _mosquitto_binary()
    if binary is None:
        print(f"# MQTT: no broker at {host}:{port} and no mosquitto binary: continuing without MQTT")
        print("#       (install mosquitto, or pass --broker HOST:PORT, to see the MQTT topics)")
        return None
    wanted, port = f"{host}:{port}", free_port()
    proc = await asyncio.to_thread(_start_mosquitto, binary, port, state)
    broker = Broker("127.0.0.1", port, proc)
    deadline = time.monotonic() + 5
    while proc.poll() is None and time.monotonic() < deadline:
        if await _reachable("127.0.0.1", port):
            print(f"# MQTT: no broker at {wanted}; started {binary} on 127.0.0.1:{port}")
            return broker
        await asyncio.sleep(0.05)
    broker.stop()
    print(f"# MQTT: {binary} did not start (see {state / 'mosquitto.log'}): continuing without MQTT")
    return None
