"""The HTTP/1.1 wire format of the health server: read one request, write one answer, nothing else.

Bounded by the caller (``agent.ops.health`` sets the deadlines and the connection budget); here a
request is one request line and at most ``MAX_HEADER_LINES`` headers, every answer closes the
connection and carries the same security headers (the status page loads only its own files).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

MAX_HEADER_LINES = 64
WRITE_DEADLINE_S = 10.0  # to take the answer; then the connection is dropped
SECURITY_HEADERS = (
    "Content-Security-Policy: default-src 'self'; img-src 'self' data:; frame-ancestors 'none'\r\n"
    "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Request:
    """One parsed request: method upper-cased, path without the query, header names lower-cased."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


Response = tuple[int, str, bytes]  # status, content type, body
App = Callable[[Request], Response | None]  # None: not one of its paths (404)


async def answer(
    writer: asyncio.StreamWriter, status: int, ctype: str, body: bytes, *, head_only: bool = False
) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n"
        + SECURITY_HEADERS
        + ("Allow: GET, HEAD\r\n" if status == 405 else "")
        + ('WWW-Authenticate: Bearer realm="edge-agent"\r\n' if status == 401 else "")
        + "\r\n"
    )
    writer.write(head.encode("ascii") + (b"" if head_only else body))
    async with asyncio.timeout(WRITE_DEADLINE_S):
        await writer.drain()


async def read_request(reader: asyncio.StreamReader) -> Request:
    """One request; ValueError when malformed."""
    parts = (await reader.readuntil(b"\n")).decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError("not an HTTP request line")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = (await reader.readuntil(b"\n")).decode("latin-1").strip()
        if not line:
            path, _, query = parts[1].partition("?")
            return Request(parts[0].upper(), path, dict(parse_qsl(query)), headers)
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    raise ValueError("too many header lines")


def json_answer(status: int, body: dict[str, Any]) -> Response:
    return status, "application/json", (json.dumps(body) + "\n").encode("utf-8")
