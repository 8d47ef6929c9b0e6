"""JSON-lines sinks: standard output and an append-only file."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

import orjson

from agent.errors import FatalError, TransientError
from agent.plugin import PluginContext, Sink
from agent.records import Envelope, Kind, Message, WireEncoder, encode_body
from plugins.stdout.config import JsonlConfig, StdoutConfig


class _Lines:
    """The ``encode`` hook of both sinks: one JSON line, ``kind`` and ``key`` first, then the wire form."""

    def __init__(self, agent_id: str) -> None:
        self._wire = WireEncoder(agent_id)

    def __call__(self, message: Message, seq: int) -> bytes:
        head = b'{"kind":"%s","key":%s,' % (message.kind.value.encode(), _quoted(message.key))
        return head + self._wire(message, seq)[1:] + b"\n"


def _quoted(text: str) -> bytes:
    return orjson.dumps(text)


def _pretty(msg: Message) -> str:
    p = msg.payload
    if msg.kind is Kind.ALERT:
        return f"ALERT {p.get('state', '').upper():8} {msg.key}: score {p.get('score', 0):.3g} - {p.get('summary', '')}"
    if msg.kind is Kind.FEATURES:
        score = p.get("score")
        shown = f"score {score:.3g}" if isinstance(score, float) else p.get("status", "")
        return f"window   {msg.key}: {shown} coverage {p.get('coverage', 0):.2f} {p.get('reason') or ''}".rstrip()
    return f"{msg.kind.value:8} {msg.key}: {encode_body(msg).decode()[:160]}"


class StdoutSink(Sink):
    """Writes one line per message to standard output; a write is its own acknowledgement."""

    config: StdoutConfig

    def __init__(self, config: StdoutConfig, ctx: PluginContext, stream: IO[str] | None = None) -> None:
        super().__init__(config, ctx)
        self.stream = stream or sys.stdout
        self.pretty = config.pretty if config.pretty is not None else self.stream.isatty()
        self._lines = _Lines(ctx.agent_id)

    def encode(self, message: Message, seq: int) -> bytes:
        if self.pretty:
            return (_pretty(message) + "\n").encode()
        return self._lines(message, seq)

    async def publish(self, batch: Sequence[Envelope]) -> None:
        text = b"".join(self.wire(e) for e in batch).decode()
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError as exc:
            raise TransientError(f"cannot write to standard output: {exc.strerror}") from exc


class JsonlSink(Sink):
    """Appends one line per message to a file; acknowledges after flush (and fsync when configured)."""

    config: JsonlConfig

    def __init__(self, config: JsonlConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self._file: IO[bytes] | None = None
        self.encode = _Lines(ctx.agent_id)  # type: ignore[method-assign]  # a callable object per instance

    async def __aenter__(self) -> JsonlSink:
        try:
            self._file = await asyncio.to_thread(self._open)
        except OSError as exc:
            raise FatalError(f"cannot open {str(self.config.path)!r} for appending: {exc.strerror}") from exc
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> IO[bytes]:
        self.config.path.parent.mkdir(parents=True, exist_ok=True)
        return open(self.config.path, "ab")

    def _write(self, text: bytes) -> None:
        assert self._file is not None
        self._file.write(text)
        self._file.flush()
        if self.config.fsync:
            os.fsync(self._file.fileno())

    async def publish(self, batch: Sequence[Envelope]) -> None:
        text = b"".join(self.wire(e) for e in batch)
        try:
            await asyncio.to_thread(self._write, text)
        except OSError as exc:
            raise TransientError(f"cannot write {str(self.config.path)!r}: {exc.strerror}") from exc
