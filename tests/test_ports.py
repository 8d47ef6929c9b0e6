"""The one port allocator of a test run (issue 11 item 10: mosquitto got "Address already in use")."""

from __future__ import annotations

import socket

from tests.conftest import PortAllocator, free_port


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)


def test_ports_are_bindable_and_outside_the_ephemeral_range() -> None:
    allocator = PortAllocator()
    port = allocator.take()
    assert allocator.low <= port <= allocator.high < 32768
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_taken_port_is_skipped() -> None:
    allocator = PortAllocator(low=20000, high=20001)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", allocator._next))
        taken = allocator._next
        assert allocator.take() != taken
