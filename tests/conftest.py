"""Shared fixtures: a free port, and a guard that fails any test leaving tasks or threads behind."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


class PortAllocator:
    """Hands out loopback TCP ports, each at most once per test run (issue 11 item 10).

    Asking the kernel for port 0 twice can return the same port twice (the first caller has not bound it
    yet), and a port from the ephemeral range can be taken meanwhile by any outgoing connection as its
    local port. So ports come from a band below the ephemeral range, walked in order from a start that
    depends on the process id (so concurrent runs on one machine rarely meet), each checked free by a bind
    and remembered, never handed out again.
    """

    def __init__(self, low: int = 20000, high: int | None = None) -> None:
        self.low = low
        self.high = high if high is not None else min(_ephemeral_range()[0], 32768) - 1
        span = self.high - self.low + 1
        self._next = self.low + (os.getpid() * 997) % span
        self._given: set[int] = set()
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            for _ in range(self.high - self.low + 1):
                port = self._next
                self._next = self.low if port >= self.high else port + 1
                if port not in self._given and _bindable(port):
                    self._given.add(port)
                    return port
        raise RuntimeError(f"no free loopback port left in {self.low}-{self.high}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_PORTS = PortAllocator()


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now and that no other test of this run got."""
    return _PORTS.take()


@pytest.fixture
def port() -> int:
    return free_port()


# Threads that belong to the interpreter or libraries' shared pools, not to a test.
_ALLOWED_THREAD_PREFIXES = ("asyncio_", "ThreadPoolExecutor", "onnx", "pydevd", "Dummy")


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Fail the test if it leaves non-daemon threads running (pymodbus's rule)."""
    threads_before = set(threading.enumerate())
    yield
    extra: list[threading.Thread] = []
    for _ in range(50):
        extra = [
            t
            for t in set(threading.enumerate()) - threads_before
            if t.is_alive() and not t.daemon and not t.name.startswith(_ALLOWED_THREAD_PREFIXES)
        ]
        if not extra:
            break
        threading.Event().wait(0.1)
    assert not extra, f"threads leaked: {[t.name for t in extra]}"


@pytest.fixture(autouse=True)
async def no_task_leaks() -> AsyncIterator[None]:
    """Fail the test if it leaves asyncio tasks pending; runs inside the test's own event loop."""
    yield
    current = asyncio.current_task()
    for _ in range(20):
        leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not leaked:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"tasks leaked: {sorted(t.get_name() for t in leaked)}")
