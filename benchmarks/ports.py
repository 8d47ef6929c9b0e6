"""Free loopback ports for the benchmarks' own servers (never the machine's shared services)."""

from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """Ports nobody listens on now, held open together so they are distinct."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()
