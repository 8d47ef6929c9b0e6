"""A list of brokers and which one the next connection goes to: the failover order of an MQTT sink.

Pure (no paho, no sockets), so the JSON sink and the Sparkplug sink share it. The sink's supervisor stays the
one reconnect loop, with its backoff: one attempt is one pass over the list, each server tried once from
``ServerList.current``, each failure calling ``failed()`` to move on; the supervisor backs off between passes.
A session that ends with an error moves the list on too, so the next pass starts on another server. There
is no fail-back: a sink stays on the server it reached until that connection fails, so a recovered node does
not pull every agent back at once.

``ordered`` walks the list as written, wrapping around. ``random`` walks a permutation drawn once per sink,
so a fleet that lists the same servers spreads over them, and every server is still tried before any twice.

A sink's config declares ``servers: list[str] | None`` and ``failover: Failover`` and calls
``check_servers`` from its model validator (as ``plugins/mqtt/config.py`` does).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from agent.errors import FatalError, PluginError, TransientError

Failover = Literal["ordered", "random"]

SCHEMES = {"mqtt": False, "mqtts": True}  # scheme -> TLS


@dataclass(frozen=True)
class Server:
    """One broker endpoint."""

    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    @property
    def where(self) -> str:
        """``host:port`` for messages and logs."""
        return f"{self.host}:{self.port}"


def parse_server(url: str) -> Server:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` (port 1883 / 8883 when not given).

    Raises:
        ValueError: anything else (another scheme, a path, credentials in the URL, a bad port).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"server {url!r}: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ValueError(f"server {url!r}: the scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"server {url!r}: no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"server {url!r}: put credentials in username / password_file, not in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"server {url!r}: a server is scheme://host:port, nothing after it")
    tls = SCHEMES[parts.scheme]
    return Server(parts.hostname, port if port is not None else (8883 if tls else 1883), tls)


def parse_servers(urls: Sequence[str]) -> list[Server]:
    """Every URL parsed; duplicates refused (a node listed twice would take two turns)."""
    servers = [parse_server(url) for url in urls]
    seen: set[tuple[str, int]] = set()
    for server in servers:
        key = (server.host.lower(), server.port)
        if key in seen:
            raise ValueError(f"server {server.url} is listed twice")
        seen.add(key)
    return servers


def check_servers(servers: Sequence[str] | None, fields_set: set[str], tls: bool) -> None:
    """The config rules of ``servers`` beside ``host``/``port``/``tls``, for any MQTT sink's validator.

    Raises:
        ValueError: both ``servers`` and ``host`` or ``port`` set; a bad or repeated URL; ``tls = true``
            set beside a plain ``mqtt://`` server.
    """
    if servers is None:
        return
    both = sorted({"host", "port"} & fields_set)
    if both:
        raise ValueError(f"set either servers or {' and '.join(both)}, not both")
    plain = [s.url for s in parse_servers(servers) if not s.tls]
    if "tls" in fields_set and tls and plain:
        raise ValueError(f"tls = true but {plain[0]} is plain MQTT; write it as mqtts://")


class ServerList:
    """Which server the next connection attempt goes to, and how many times the sink moved.

    Args:
        servers: at least one.
        failover: ``ordered`` (as listed) or ``random`` (a permutation drawn here, once).
        rng: for ``random``; tests pass a seeded one.
    """

    def __init__(
        self, servers: Sequence[Server], failover: Failover = "ordered", rng: random.Random | None = None
    ) -> None:
        if not servers:
            raise ValueError("a server list needs at least one server")
        self.listed = list(servers)  # as configured; ``server_index`` in the status counts in this list
        self.order = list(servers)
        if failover == "random":
            (rng or random.Random()).shuffle(self.order)
        self.failover = failover
        self.index = 0
        self.failovers = 0  # moves to another server since the sink was built

    @property
    def current(self) -> Server:
        return self.order[self.index]

    def __len__(self) -> int:
        return len(self.order)

    def failed(self) -> Server:
        """The attempt on ``current`` ended with an error: move on, and return the next server."""
        if len(self.order) > 1:
            self.index = (self.index + 1) % len(self.order)
            self.failovers += 1
        return self.current


def one_pass_error(failures: Sequence[tuple[Server, Exception]]) -> Exception:
    """The error of a pass in which no server took the connection.

    One server: its own error, unchanged. Several: a ``FatalError`` when any server said a person must act
    (credentials, certificates), else one ``TransientError`` naming what each server answered.
    """
    if len(failures) == 1:
        return failures[0][1]
    fatal = [exc for _, exc in failures if isinstance(exc, FatalError)]
    if fatal:
        return fatal[0]
    causes = "; ".join(f"{server.url}: {exc}" for server, exc in failures)
    error: PluginError = TransientError(f"no server of {len(failures)} took the connection ({causes})")
    return error
