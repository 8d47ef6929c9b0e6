"""A real asyncua server for tests and benchmarks: in-process, or in a subprocess that can be killed.

In-process::

    async with plant_server(port) as plant:      # variables ns=<idx>;s=Line1.V0 ... changing on demand
        await plant.set_all(1.0)

Subprocess (``ServerProcess``) runs this file: ``python tests/opcua_server.py --port P --vars N --rate HZ``;
it prints ``READY <ns-index>`` once listening and changes every value ``rate`` times a second.
``--extra-namespace`` registers another namespace first, so the plant namespace gets a new index.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Server, ua

NS_URI = "urn:edge-agent:test:plant"
EXTRA_URI = "urn:edge-agent:test:extra"
HERE = Path(__file__)

for noisy in ("asyncua", "asyncua.server", "asyncua.client"):
    logging.getLogger(noisy).setLevel(logging.ERROR)


def var_id(i: int) -> str:
    return f"s=Line1.V{i}"


@dataclass
class Plant:
    """A running server and its variables."""

    server: Server
    ns: int
    nodes: list[ua.NodeId] = field(default_factory=list)

    async def set_all(self, value: float) -> None:
        stamp = dt.datetime.now(dt.UTC)
        for node in self.nodes:
            dv = ua.DataValue(
                ua.Variant(value, ua.VariantType.Double), SourceTimestamp=stamp, ServerTimestamp=stamp
            )
            await self.server.write_attribute_value(node, dv)

    async def set_one(self, index: int, value: float, stamp: dt.datetime | None = None) -> None:
        """One variable's value with a given source timestamp (default now: a PLC clock that jumped)."""
        now = dt.datetime.now(dt.UTC)
        dv = ua.DataValue(
            ua.Variant(value, ua.VariantType.Double), SourceTimestamp=stamp or now, ServerTimestamp=now
        )
        await self.server.write_attribute_value(self.nodes[index], dv)

    async def set_status(self, index: int, code: int) -> None:
        dv = ua.DataValue(ua.Variant(0.0, ua.VariantType.Double), StatusCode=ua.StatusCode(code))
        await self.server.write_attribute_value(self.nodes[index], dv)


async def start(
    port: int,
    n_vars: int = 3,
    *,
    extra_namespace: bool = False,
    cert: Path | None = None,
    key: Path | None = None,
    secure_only: bool = False,
    user_manager: Any = None,
    application_uri: str | None = None,
) -> Plant:
    """Start a server on ``127.0.0.1:port`` with ``n_vars`` Double variables ``Line1.V<i>``."""
    server = Server(user_manager=user_manager)
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_server_name("edge-agent test plant")
    if cert is not None and key is not None:
        policies = [
            getattr(ua.SecurityPolicyType, f"{policy}_{mode}")
            for policy in ("Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss")
            for mode in ("Sign", "SignAndEncrypt")
        ]
        if not secure_only:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
    uri = application_uri if application_uri is not None else _uri_of(cert)
    if uri is not None:  # a well-configured server describes itself by its certificate's URI
        await server.set_application_uri(uri)
    if extra_namespace:
        await server.register_namespace(EXTRA_URI)
    ns = await server.register_namespace(NS_URI)
    folder = await server.nodes.objects.add_object(ua.NodeId("Line1", ns), "Line1")
    plant = Plant(server, ns)
    for i in range(n_vars):
        node = await folder.add_variable(
            ua.NodeId(f"Line1.V{i}", ns), f"V{i}", ua.Variant(0.0, ua.VariantType.Double)
        )
        plant.nodes.append(node.nodeid)
    await folder.add_variable(ua.NodeId("Line1.Running", ns), "Running", True)
    await folder.add_variable(ua.NodeId("Line1.Mode", ns), "Mode", "auto")
    await folder.add_variable(ua.NodeId("Line1.Array", ns), "Array", [1.0, 2.0])
    await server.start()
    return plant


def _uri_of(cert: Path | None) -> str | None:
    from plugins.opcua import security

    return security.application_uri_of(security.load_cert(cert)) if cert is not None else None


@contextlib.asynccontextmanager
async def plant_server(port: int, n_vars: int = 3, **kwargs: object) -> AsyncIterator[Plant]:
    plant = await start(port, n_vars, **kwargs)  # type: ignore[arg-type]
    try:
        yield plant
    finally:
        await plant.server.stop()


class ServerProcess:
    """This module's server in a child process, so a test can kill it hard and start it again."""

    def __init__(self, port: int, n_vars: int = 3, rate: float = 10.0, start_timeout: float = 60.0) -> None:
        self.port, self.n_vars, self.rate = port, n_vars, rate
        self.start_timeout = start_timeout  # asyncua adds 10,000 variables in 80 s on a busy 2-core machine
        self.proc: asyncio.subprocess.Process | None = None
        self.ns = 0

    async def start(self, *, extra_namespace: bool = False) -> None:
        args = [
            sys.executable,
            str(HERE),
            "--port",
            str(self.port),
            "--vars",
            str(self.n_vars),
            "--rate",
            str(self.rate),
        ]
        if extra_namespace:
            args.append("--extra-namespace")
        self.proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), self.start_timeout)
        if not line.startswith(b"READY"):
            raise RuntimeError(f"test server did not start: {line!r}")
        self.ns = int(line.split()[1])

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None

    async def __aenter__(self) -> ServerProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()


async def _serve(port: int, n_vars: int, rate: float, extra_namespace: bool) -> None:
    plant = await start(port, n_vars, extra_namespace=extra_namespace)
    print("READY", plant.ns, flush=True)
    loop = asyncio.get_running_loop()
    next_at, value = loop.time(), 0.0
    while True:
        value += 1.0
        await plant.set_all(value)
        next_at += 1.0 / rate
        await asyncio.sleep(max(0.0, next_at - loop.time()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--vars", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--extra-namespace", action="store_true")
    a = parser.parse_args()
    asyncio.run(_serve(a.port, a.vars, a.rate, a.extra_namespace))


class BlackHoleProxy:
    """A TCP relay to a server that can start swallowing bytes without closing: a network black hole.

    ``freeze()`` black-holes the connections open now; connections made later are relayed again.
    """

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port, self.target_port = listen_port, target_port
        self._server: asyncio.Server | None = None
        self._frozen: set[int] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._conn = 0

    async def __aenter__(self) -> BlackHoleProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def freeze(self) -> None:
        self._frozen.update(range(self._conn + 1))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conn += 1
        conn = self._conn
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        for src, dst, name in ((reader, up_writer, "up"), (up_reader, writer, "down")):
            task = asyncio.create_task(self._pipe(conn, src, dst), name=f"proxy-{conn}-{name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, conn: int, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                if conn in self._frozen:
                    continue
                dst.write(data)
                await dst.drain()
