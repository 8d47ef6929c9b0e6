"""What ``check`` and ``once`` report: a config summary, one read of every source, one probe of every sink.

A source is OK when at least one of its tags read good, FAILED when it could not be read at all or no tag
read good (a dead PLC answers nothing, so "0/2 tags good" is a failure, not a success). A sink is probed
under its own identity (``Sink.probe``: for MQTT its own client id, no birth, no goodbye), so checking the
config of a running agent never knocks the agent off its broker. Values that look wrongly decoded come
with the plugin's notes (``Source.diagnose``: the Modbus byte-order assistant) and mark the source
suspect; they do not fail it, since the values were read.

Library loggers are silenced while checking: their failures come back as our errors, in our words, and a
raw line like pymodbus's ``Connection to (host, port) failed`` only repeats them less clearly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from agent.errors import EdgeAgentError
from agent.records import Quality, Reading

READ_TIMEOUT = 30.0
LIBRARY_LOGGERS = ("pymodbus", "asyncua", "paho")


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Raise the protocol libraries' loggers to CRITICAL for the duration (their errors reach us anyway)."""
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def summary(cfg: Any, slots: dict[str, Any], path: str) -> str:
    """The one-screen summary ``check`` prints: sources, pipelines with their models, sinks."""
    from agent.stream.features import feature_names

    out = [f"{path}: OK  (agent {cfg.agent.id}, state in {cfg.agent.state_dir})", ""]
    out.append(f"sources ({len(cfg.sources)}):")
    for s in cfg.sources:
        more = f", ... (+{len(s.tags) - 6})" if len(s.tags) > 6 else ""
        names = ", ".join(t.name for t in s.tags[:6]) + more
        off = "" if s.enabled else "  [disabled]"
        out.append(f"  {s.name:<16} {s.type:<8} {len(s.tags):>5} tags  {names}{off}")
    out.append(f"pipelines ({len(cfg.pipelines)}):")
    for p in cfg.pipelines:
        w = p.window
        span = (
            f"{w.length:g}s/{w.hop_s:g}s every {w.period:g}s"
            if w.kind == "time"
            else f"{w.size}/{w.step or w.size} rows"
        )
        n = len(feature_names(p.tags, p.features))
        model = (
            f"model {slots[p.name].model.id}" if p.name in slots else "no model (features only, `unscored`)"
        )
        out.append(
            f"  {p.name:<16} {len(p.tags)} tags x {len(p.features)} features = {n}  window {span}  {model}"
        )
    out.append(f"sinks ({len(cfg.sinks)}):")
    for k in cfg.sinks:
        store = "disk" if k.outbox.durable else "memory"
        out.append(f"  {k.name or k.type:<16} {k.type:<8} kinds {','.join(k.kinds)}  outbox {store}")
    return "\n".join(out)


@dataclass
class SourceRead:
    """One read of one source: its readings, or why it could not be read, and the plugin's notes."""

    name: str
    readings: list[Reading] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def good(self) -> int:
        return sum(1 for r in self.readings if r.quality is Quality.GOOD)

    @property
    def failed(self) -> bool:
        return self.error is not None or self.good == 0

    def verdict(self) -> str:
        """``OK, 2/2 tags good`` / ``OK, ... (1 suspect: see below)`` / ``FAILED: why``."""
        if self.error is not None:
            return f"FAILED: {self.error}"
        counts = f"{self.good}/{len(self.readings)} tags good"
        if self.good == 0:
            if not self.readings:
                return "FAILED: the source has no tags to read"
            reasons = Counter(r.reason or str(r.quality) for r in self.readings)
            why = "; ".join(
                f"{reason} ({n} tags)" if n > 1 else reason for reason, n in reasons.most_common(3)
            )
            return f"FAILED: {counts}: {why}"
        suspect = f" ({len(self.notes)} suspect: see below)" if self.notes else ""
        return f"OK, {counts}{suspect}"


async def read_source(cfg: Any, src: Any) -> SourceRead:
    """Build the source, read every tag once (within ``READ_TIMEOUT``) and collect its notes."""
    from agent.registry import build

    result = SourceRead(src.name)
    try:
        source, _ = build("source", src, cfg.agent.id, cfg.agent.state_dir)
        result.readings = await asyncio.wait_for(source.read_once(), READ_TIMEOUT)
        result.notes = source.diagnose()
    except TimeoutError:
        result.error = f"no answer within {READ_TIMEOUT:g} s"
    except (EdgeAgentError, OSError) as exc:
        result.error = str(exc) or type(exc).__name__
    return result


async def probe_sink(cfg: Any, item: Any) -> str | None:
    """Connect to one sink and leave without a trace; None when it worked, else why not."""
    from agent.registry import build

    sink, _ = build("sink", item, cfg.agent.id, cfg.agent.state_dir)
    try:
        await asyncio.wait_for(sink.probe(), READ_TIMEOUT)
    except TimeoutError:
        return f"no answer within {READ_TIMEOUT:g} s"
    except (EdgeAgentError, OSError) as exc:
        return str(exc) or type(exc).__name__
    return None


def _indent(notes: list[str], prefix: str) -> list[str]:
    return [prefix + line for note in notes for line in note.splitlines()]


async def connect_all(cfg: Any) -> int:
    """``check --connect``: read every enabled source once, probe every sink; 1 when any FAILED."""
    failures = 0
    with quiet_libraries():
        for src in cfg.sources:
            if not src.enabled:
                continue
            read = await read_source(cfg, src)
            failures += read.failed
            print(f"  connect {src.name}: {read.verdict()}")
            for line in _indent(read.notes, "    "):
                print(line)
        for item in cfg.sinks:
            error = await probe_sink(cfg, item)
            failures += error is not None
            print(f"  connect {item.name or item.type}: {'OK' if error is None else f'FAILED: {error}'}")
    return 1 if failures else 0


async def read_all(cfg: Any, as_json: bool) -> int:
    """``once``: print every reading of every enabled source; 1 when a source FAILED (nothing read)."""
    failed = 0
    with quiet_libraries():
        for src in cfg.sources:
            if not src.enabled:
                continue
            read = await read_source(cfg, src)
            if read.error is not None:
                failed += 1
                print(f"{src.name}: FAILED: {read.error}", file=sys.stderr)
                continue
            for r in read.readings:
                if as_json:
                    print(json.dumps({"source": src.name, **r.to_dict()}))
                else:
                    why = f"  ({r.reason})" if r.reason else ""
                    print(f"{src.name:<14} {r.tag:<28} {r.value!s:>14}  {r.quality}{why}")
            if read.failed:
                failed += 1
                print(f"{src.name}: {read.verdict()}", file=sys.stderr)
            if read.notes:
                print(f"{src.name}: values that look wrongly decoded:", file=sys.stderr)
            for line in _indent(read.notes, "  "):
                print(line, file=sys.stderr)
    return 1 if failed else 0
