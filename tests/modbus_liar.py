"""A Modbus TCP server that answers the way faulty devices do: a raw asyncio server, so tests choose bytes.

``Liar(port, answer)`` serves until closed; ``answer(unit, function, address, count)`` returns the PDU
to send back (function code and data, without the MBAP header), or None to stay silent. ``registers``
builds an honest register answer; ``frame`` wraps a PDU for sending raw bytes (garbage tests).
Real devices seen doing this: an FC 4 answer to an FC 3 request (a misconfigured gateway), fewer
registers than asked for an out-of-range read (jsmodbus), line noise on a serial-to-TCP converter.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable

Answer = Callable[[int, int, int, int], bytes | None]


def registers(function: int, values: list[int]) -> bytes:
    """An FC 3/4 answer PDU carrying ``values``."""
    return struct.pack(">BB", function, 2 * len(values)) + b"".join(struct.pack(">H", v) for v in values)


def frame(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


class Liar:
    """See the module docstring. ``requests`` counts what was asked; ``raw`` replaces answers by bytes."""

    def __init__(self, port: int, answer: Answer) -> None:
        self.port = port
        self.answer = answer
        self.requests: list[tuple[int, int, int, int]] = []
        self.raw: Callable[[int, int], bytes] | None = None  # (tid, unit) -> bytes sent instead
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Liar:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        # CancelledError too: the server's close cancels handlers, and a handler task that ends cancelled
        # makes asyncio print a traceback.
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                pdu = await reader.readexactly(length - 1)
                function = pdu[0]
                address, count = struct.unpack(">HH", pdu[1:5])
                self.requests.append((unit, function, address, count))
                if self.raw is not None:
                    writer.write(self.raw(tid, unit))
                else:
                    reply = self.answer(unit, function, address, count)
                    if reply is None:
                        continue
                    writer.write(frame(tid, unit, reply))
                await writer.drain()
        self._writers.discard(writer)
        writer.close()


def garbage(tid: int, unit: int) -> bytes:
    """Well-framed MBAP answers whose PDU pymodbus cannot decode, in turn (a noisy converter)."""
    pdus = [bytes([3, 4, 0, 1]), bytes([3, 3, 0, 1, 2]), bytes([0x55, 1, 2, 3]), bytes([3])]
    return frame(tid, unit, pdus[tid % len(pdus)])
