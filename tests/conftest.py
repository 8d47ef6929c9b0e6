"""Shared fixtures: a free port, and a guard that fails any test leaving tasks or threads behind."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
