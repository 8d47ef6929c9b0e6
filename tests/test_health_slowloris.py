"""The health endpoint under attack (issue 10, item 8): slowloris sockets and the bearer token.

Seventeen, then two hundred real sockets that trickle a request one header at a time and reconnect
whenever the server drops them, against the real server, while the container's own HEALTHCHECK
command and a data task run beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import resource
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config.load import load_config
from agent.config.sections import HealthConfig
from agent.errors import ConfigError
from agent.ops.health import HealthServer
from agent.ops.http import Request, Response
from agent.ops.metrics import MetricsSnapshot
from tests.mosquitto import eventually

TOKEN = "s3cret-token-of-more-than-16"
# The Dockerfile's HEALTHCHECK, with the port of the server under test.
PROBE = (
    "import sys, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/healthz', timeout=4)"
)


class Slowloris:
    """``n`` connections that each send a request line, then one header line every ``every`` seconds, and
    never finish; a connection the server closes is opened again at once."""

    def __init__(self, port: int, n: int, every: float = 0.5) -> None:
        self.port, self.n, self.every = port, n, every
        self.open = 0
        self.reconnects = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def _one(self) -> None:
        while True:
            writer = None
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.open += 1
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                while True:
                    await asyncio.sleep(self.every)
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
            except (ConnectionError, OSError):
                self.reconnects += 1
            finally:
                if writer is not None:
                    self.open -= 1
                    writer.transport.abort()
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> Slowloris:
        self._tasks = [asyncio.create_task(self._one(), name=f"slowloris-{i}") for i in range(self.n)]
        await eventually(lambda: self.open >= self.n, within=30, what=f"{self.n} slow connections open")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def healthcheck(port: int) -> int:
    """Exit code of the container's HEALTHCHECK command (urllib, 4 s timeout) against ``port``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROBE,
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await proc.wait()


async def ticking(counter: list[int]) -> None:
    """Stands for the data path: a task that must keep running on the same loop."""
    while True:
        await asyncio.sleep(0.01)
        counter[0] += 1


@pytest.fixture
def many_files() -> Iterator[None]:
    """Room for both ends of 400 sockets in this one process (CI shells may start with 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# 17 beat the old fixed cap of 16; 200 are more than the waiting places; 400 more than all connections.
@pytest.mark.parametrize("slow", [17, 200, 400])
async def test_healthz_answers_every_probe_under_slowloris(slow: int, many_files: None) -> None:
    ticks = [0]
    async with HealthServer(HealthConfig(port=0), MetricsSnapshot, lambda: (True, "ok")) as server:
        data = asyncio.create_task(ticking(ticks), name="data")
        try:
            async with Slowloris(server.port, slow) as attack:
                results = []
                for _ in range(8):
                    before = ticks[0]
                    results.append(await healthcheck(server.port))
                    await eventually(lambda b=before: ticks[0] > b + 5, what="the data task to keep running")
                assert results == [0] * 8, f"{results.count(0)} of 8 probes passed with {slow} slow sockets"
                assert attack.open > 0  # the attack was still going while the probes passed
        finally:
            data.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await data


async def test_a_header_that_never_ends_is_cut_at_the_deadline() -> None:
    async with HealthServer(HealthConfig(port=0), MetricsSnapshot, lambda: (True, "ok")) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        # The server closes it (HEADER_DEADLINE_S) without an answer; the read sees the end.
        assert await asyncio.wait_for(reader.read(), timeout=30) == b""
        writer.close()


async def test_a_client_that_never_reads_is_dropped_at_the_write_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("agent.ops.health.WRITE_DEADLINE_S", 0.5)
    monkeypatch.setattr("agent.ops.http.WRITE_DEADLINE_S", 0.5)
    big = b"x" * (16 << 20)  # more than the kernel buffers of both ends together

    def app(request: Request) -> Response | None:
        return (200, "text/plain", big) if request.path == "/big" else None

    async with HealthServer(HealthConfig(port=0), MetricsSnapshot, lambda: (True, "ok"), app=app) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        try:
            sock.sendall(b"GET /big HTTP/1.1\r\n\r\n")
            await eventually(lambda: server.open_connections == 1, what="the server writing to it")
            assert await healthcheck(server.port) == 0  # meanwhile the probe is answered
            await eventually(lambda: server.open_connections == 0, what="the reader that never reads dropped")
        finally:
            sock.close()


def fetch(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def page(request: Request) -> Response | None:
    if request.path == "/":
        return 200, "text/html; charset=utf-8", b"<!doctype html><title>status</title>"
    if request.path == "/api/status":
        return 200, "application/json", b'{"tags": []}'
    return None


async def test_with_a_token_only_healthz_and_the_page_shell_are_open() -> None:
    cfg = HealthConfig(port=0, host="127.0.0.1", token=TOKEN)
    async with HealthServer(cfg, MetricsSnapshot, lambda: (True, "ok"), app=page) as server:
        for path in ("/metrics", "/readyz", "/api/status"):
            status, headers, _ = await asyncio.to_thread(fetch, server.port, path)
            assert status == 401 and headers["www-authenticate"].startswith("Bearer"), path
            status, _, _ = await asyncio.to_thread(fetch, server.port, path, "wrong-token-wrong-token")
            assert status == 401, path
            status, _, _ = await asyncio.to_thread(fetch, server.port, path, TOKEN)
            assert status == 200, path
        status, _, body = await asyncio.to_thread(fetch, server.port, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, headers, _ = await asyncio.to_thread(fetch, server.port, "/")
        assert status == 200 and "default-src 'self'" in headers["content-security-policy"]


def test_listening_beyond_loopback_needs_a_token_or_an_explicit_choice(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[health]\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError, match=r"beyond loopback.*token_file.*allow_unauthenticated"):
        load_config(config, environ={})
    config.write_text('[health]\nhost = "0.0.0.0"\nallow_unauthenticated = true\n')
    assert load_config(config, environ={}).health.token is None
    secret = tmp_path / "health-token"
    secret.write_text(TOKEN + "\n")
    config.write_text(f'[health]\nhost = "::"\ntoken_file = "{secret}"\n')
    token = load_config(config, environ={}).health.token
    assert token is not None and token.get_secret_value() == TOKEN
    secret.write_text("short\n")
    with pytest.raises(ConfigError, match="16"):
        load_config(config, environ={})
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.5"):
        assert HealthConfig(host=host).token is None  # loopback needs nothing


def test_the_config_install_sh_puts_on_a_host_is_on_loopback_and_valid(tmp_path: Path) -> None:
    """install.sh edits the container's example with sed; the result must load on a host without secrets."""
    deploy = Path(__file__).resolve().parent.parent / "deploy"
    script = (deploy / "install.sh").read_text()
    edits = re.findall(r"run sed -i 's/(.+?)/(.*?)/' \"\$CONF_DIR/config.toml\"", script)
    assert edits, "install.sh no longer edits the example config"
    text = (deploy / "config.toml").read_text()
    for pattern, replacement in edits:
        text = re.sub(pattern, replacement, text, flags=re.MULTILINE)
    (tmp_path / "config.toml").write_text(text)
    cfg = load_config(tmp_path / "config.toml", environ={})
    assert cfg.health.host == "127.0.0.1" and cfg.health.token is None
