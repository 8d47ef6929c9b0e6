"""sd_notify against a test-owned AF_UNIX datagram socket, the way systemd's manager receives it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

from agent.ops.sdnotify import Notifier, socket_address, watchdog, watchdog_interval


class FakeManager:
    """The receiving end of NOTIFY_SOCKET: collects the datagrams the agent sends."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)

    def drain(self) -> list[str]:
        """Every datagram received so far, without waiting."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def path_manager() -> Iterator[tuple[str, FakeManager]]:
    # A short directory: AF_UNIX paths are limited to 108 bytes and pytest's tmp_path can be longer.
    folder = tempfile.mkdtemp(prefix="sdn-")
    path = os.path.join(folder, "notify.sock")
    manager = FakeManager(path)
    yield path, manager
    manager.close()
    shutil.rmtree(folder)


@pytest.fixture
def abstract_manager() -> Iterator[tuple[str, FakeManager]]:
    name = f"edge-agent-test-{uuid.uuid4().hex}"
    manager = FakeManager("\0" + name)
    yield "@" + name, manager
    manager.close()


async def test_ready_status_stopping_reach_a_path_socket(path_manager: tuple[str, FakeManager]) -> None:
    env, manager = path_manager
    notifier = Notifier.from_env({"NOTIFY_SOCKET": env})
    assert notifier.enabled
    assert notifier.ready("2 sources up,\n1 sink buffering")
    assert notifier.reloading()
    assert notifier.ready()
    assert notifier.extend_timeout(1.5)
    assert notifier.stopping()
    notifier.close()
    got = manager.drain()
    reload_line = got.pop(1).split("\n")
    assert reload_line[0] == "RELOADING=1" and reload_line[1].startswith("MONOTONIC_USEC=")
    assert int(reload_line[1].partition("=")[2]) > 0
    assert got == [
        "READY=1\nSTATUS=2 sources up, 1 sink buffering",
        "READY=1",
        "EXTEND_TIMEOUT_USEC=1500000",
        "STOPPING=1",
    ]


async def test_abstract_socket_and_periodic_watchdog(abstract_manager: tuple[str, FakeManager]) -> None:
    env, manager = abstract_manager
    notifier = Notifier.from_env({"NOTIFY_SOCKET": env})
    interval = watchdog_interval({"WATCHDOG_USEC": "100000"})
    assert interval == 0.05
    notifier.ready()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(watchdog(notifier, interval), name="test-watchdog")
        received: list[str] = []
        for _ in range(200):
            await asyncio.sleep(0.05)
            received += manager.drain()
            if received.count("WATCHDOG=1") >= 4:
                break
        task.cancel()
    notifier.close()
    assert received[0] == "READY=1"
    assert received.count("WATCHDOG=1") >= 4


async def test_watchdog_stops_while_the_loop_is_blocked(path_manager: tuple[str, FakeManager]) -> None:
    env, manager = path_manager
    notifier = Notifier.from_env({"NOTIFY_SOCKET": env})
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(watchdog(notifier, 0.05), name="test-watchdog")
        await asyncio.sleep(0.3)
        assert "WATCHDOG=1" in manager.drain()

        time.sleep(0.6)  # noqa: ASYNC251 - a blocked loop is what this test is about
        # Read before yielding to the loop: everything here was sent during the block.
        assert manager.drain() == []

        resumed: list[str] = []
        for _ in range(200):
            await asyncio.sleep(0.05)
            resumed += manager.drain()
            if resumed.count("WATCHDOG=1") >= 2:
                break
        task.cancel()
    notifier.close()
    assert resumed.count("WATCHDOG=1") >= 2


async def test_watchdog_is_withheld_while_unhealthy(path_manager: tuple[str, FakeManager]) -> None:
    env, manager = path_manager
    notifier = Notifier.from_env({"NOTIFY_SOCKET": env})
    healthy = True
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(watchdog(notifier, 0.05, healthy=lambda: healthy), name="test-watchdog")
        await asyncio.sleep(0.2)  # a few pings, fewer than the 10 datagrams a unix socket queues by default
        assert "WATCHDOG=1" in manager.drain()
        healthy = False
        await asyncio.sleep(0.1)  # the watchdog sees the change at its next ping
        manager.drain()
        await asyncio.sleep(0.3)
        assert manager.drain() == []
        healthy = True
        for _ in range(200):
            await asyncio.sleep(0.02)
            if "WATCHDOG=1" in manager.drain():
                break
        else:
            pytest.fail("pings did not resume")
        task.cancel()
    notifier.close()


def test_not_under_systemd_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.ready("x") and notifier.watchdog() and notifier.stopping()
    assert watchdog_interval({}) is None


def test_a_missing_socket_is_logged_not_raised() -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "/nonexistent/edge-agent/notify"})
    assert notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    notifier.close()


def test_addresses_and_watchdog_env() -> None:
    assert socket_address("@name") == "\0name"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("relative/path") is None
    assert socket_address("vsock:2:1234") is None
    assert socket_address("") is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=4242) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, pid=4242) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


CHILD = """
import asyncio, time
from agent.ops.sdnotify import Notifier, watchdog, watchdog_interval

async def main():
    notifier = Notifier.from_env()
    notifier.ready("child up")
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(watchdog(notifier, watchdog_interval()), name="sd-watchdog")
        await asyncio.sleep(0.5)
        notifier.status("blocking")
        time.sleep(1.0)  # the loop is stuck: no pings may leave during this second
        notifier.status("unblocked")
        await asyncio.sleep(0.5)
        task.cancel()
    notifier.stopping()

asyncio.run(main())
"""


async def test_a_real_process_notifies_from_its_environment(
    abstract_manager: tuple[str, FakeManager],
) -> None:
    env, manager = abstract_manager
    child_env = {**os.environ, "NOTIFY_SOCKET": env, "WATCHDOG_USEC": "100000"}
    child_env.pop("WATCHDOG_PID", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, env=child_env)
    lines: list[str] = []
    while proc.returncode is None:  # read as systemd does, so its short queue never fills
        lines += manager.drain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.02)
    assert proc.returncode == 0
    lines += manager.drain()
    assert lines[0] == "READY=1\nSTATUS=child up" and lines[-1] == "STOPPING=1"
    blocked = lines.index("STATUS=blocking")
    unblocked = lines.index("STATUS=unblocked")
    assert unblocked == blocked + 1, lines  # nothing between: the blocked loop sent no WATCHDOG=1
    assert lines[1:blocked].count("WATCHDOG=1") >= 2
    assert "WATCHDOG=1" in lines[unblocked:]
