"""The request planner: the fewest reads that cover a device's tags. Pure functions, no I/O.

Tags of one table are sorted by address and merged greedily into blocks: a block grows while it stays
within the request limit (125 registers / 2000 bits) and the hole it would bridge is at most ``max_gap``.
For tags that do not overlap, greedy is optimal: a block that starts at the first unplanned tag and
reaches as far as allowed never forces more blocks later, because any feasible plan for the remaining
tags is still feasible for a suffix of them.

What the poller learns from exception responses feeds back in as two sets: ``isolated`` tags are read
alone (a tag the device refuses must not poison a block), and ``fences`` are addresses no block may
span (a hole in the device's map that lay between two good tags).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FUNCTION_CODES = {"coil": 1, "discrete_input": 2, "holding_register": 3, "input_register": 4}
BIT_TABLES = frozenset({"coil", "discrete_input"})


@dataclass(frozen=True, slots=True)
class Slot:
    """One tag as the planner sees it: its table, its 0-based address and how many registers/bits it spans."""

    name: str
    table: str
    address: int
    count: int

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class Request:
    """One read: a function code over ``[address, address + count)``, and the tags it serves."""

    table: str
    address: int
    count: int
    slots: tuple[Slot, ...]

    @property
    def function_code(self) -> int:
        return FUNCTION_CODES[self.table]

    @property
    def is_bits(self) -> bool:
        return self.table in BIT_TABLES


@dataclass(frozen=True)
class Limits:
    """Per-device request limits.

    Attributes:
        max_registers: most registers per request (Modbus allows 125).
        max_bits: most coils or discrete inputs per request (Modbus allows 2000).
        max_gap: most unused registers bridged between two tags; bit tables bridge 16 times as many bits,
            which costs the same bytes on the wire.
    """

    max_registers: int = 125
    max_bits: int = 2000
    max_gap: int = 10

    def size(self, table: str) -> int:
        return self.max_bits if table in BIT_TABLES else self.max_registers

    def gap(self, table: str) -> int:
        return self.max_gap * 16 if table in BIT_TABLES else self.max_gap


def plan(
    slots: Iterable[Slot],
    limits: Limits,
    isolated: frozenset[str] = frozenset(),
    fences: frozenset[tuple[str, int]] = frozenset(),
) -> list[Request]:
    """The reads covering ``slots``: per table, fewest blocks within the limits; isolated tags alone.

    Args:
        slots: the device's tags.
        limits: request size and gap limits.
        isolated: names of tags to read in a request of their own; no block spans their registers.
        fences: ``(table, address)`` boundaries no request may cross (a request may end at one or start at
            one, never contain registers on both sides).

    Returns:
        Requests ordered by function code then address, so a poll walks the device's map in order.
    """
    by_table: dict[str, list[Slot]] = {}
    alone: list[Request] = []
    walls = set(fences)
    for slot in slots:
        if slot.name in isolated:
            alone.append(Request(slot.table, slot.address, slot.count, (slot,)))
            walls.update(((slot.table, slot.address), (slot.table, slot.end)))  # never bridge a refused tag
        else:
            by_table.setdefault(slot.table, []).append(slot)
    requests = alone
    for table, group in by_table.items():
        table_fences = sorted(addr for t, addr in walls if t == table)
        requests.extend(_merge(sorted(group, key=lambda s: (s.address, -s.count)), limits, table_fences))
    requests.sort(key=lambda r: (r.function_code, r.address, r.count))
    return requests


def _merge(group: Sequence[Slot], limits: Limits, fences: Sequence[int]) -> list[Request]:
    size, gap = limits.size(group[0].table), limits.gap(group[0].table)
    out: list[Request] = []
    block: list[Slot] = [group[0]]
    start, end = group[0].address, group[0].end
    for slot in group[1:]:
        new_end = max(end, slot.end)
        fits = new_end - start <= size and slot.address - end <= gap
        if fits and not _crosses(fences, start, new_end):
            block.append(slot)
            end = new_end
            continue
        out.append(Request(block[0].table, start, end - start, tuple(block)))
        block, start, end = [slot], slot.address, slot.end
    out.append(Request(block[0].table, start, end - start, tuple(block)))
    return out


def _crosses(fences: Sequence[int], start: int, end: int) -> bool:
    """True when a fence lies strictly inside ``(start, end)``."""
    return any(start < f < end for f in fences)


def split(request: Request) -> list[Request]:
    """One request per tag of ``request``: what the poller tries after an exception on the whole block."""
    return [Request(s.table, s.address, s.count, (s,)) for s in request.slots]


def fences_between(request: Request) -> set[tuple[str, int]]:
    """Fences that stop the next plan from repeating a block whose tags all read fine one by one.

    The fences go at every hole the block bridged (the hole is what the device refused); a block without
    holes was refused for its size, so it is fenced between every pair of tags.
    """
    holes: set[tuple[str, int]] = set()
    seams: set[tuple[str, int]] = set()
    end = request.slots[0].end
    for slot in request.slots[1:]:
        if slot.address > end:
            holes.add((request.table, end))
        else:
            seams.add((request.table, max(end, slot.address)))
        end = max(end, slot.end)
    return holes or seams
