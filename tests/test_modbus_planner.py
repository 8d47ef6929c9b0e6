"""The request planner: fewest requests for a map, the gap rule, the size limits, isolation and fences."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.modbus.planner import Limits, Request, Slot, fences_between, plan, split


def regs(*spec: tuple[int, int], table: str = "holding_register") -> list[Slot]:
    return [Slot(f"t{addr}", table, addr, count) for addr, count in spec]


def spans(requests: list[Request]) -> list[tuple[str, int, int]]:
    return [(r.table, r.address, r.count) for r in requests]


def test_contiguous_tags_are_one_request() -> None:
    assert spans(plan(regs((0, 2), (2, 2), (4, 1), (5, 4)), Limits())) == [("holding_register", 0, 9)]


def test_gap_rule_bridges_at_most_max_gap_unused_registers() -> None:
    slots = regs((0, 1), (11, 1), (23, 1))  # holes of 10 and 11 registers
    assert spans(plan(slots, Limits(max_gap=10))) == [
        ("holding_register", 0, 12),
        ("holding_register", 23, 1),
    ]
    assert len(plan(slots, Limits(max_gap=11))) == 1
    assert len(plan(slots, Limits(max_gap=0))) == 3


def test_requests_never_exceed_125_registers() -> None:
    slots = regs(*[(a, 2) for a in range(0, 500, 2)])  # 500 contiguous registers
    requests = plan(slots, Limits())
    assert [r.count for r in requests] == [124, 124, 124, 124, 4]  # a 2-register tag never straddles
    assert sum(len(r.slots) for r in requests) == 250


def test_bits_use_2000_per_request_and_a_gap_of_16_bits_per_register() -> None:
    coils = regs(*[(a, 1) for a in range(4500)], table="coil")
    assert [r.count for r in plan(coils, Limits())] == [2000, 2000, 500]
    inputs = regs((0, 1), (161, 1), (400, 1), table="discrete_input")
    assert spans(plan(inputs, Limits(max_gap=10))) == [("discrete_input", 0, 162), ("discrete_input", 400, 1)]


def test_each_table_is_planned_separately_and_ordered_by_function_code() -> None:
    slots = [
        Slot("hr", "holding_register", 0, 1),
        Slot("ir", "input_register", 0, 1),
        Slot("co", "coil", 0, 1),
        Slot("di", "discrete_input", 0, 1),
    ]
    assert [r.function_code for r in plan(slots, Limits())] == [1, 2, 3, 4]


def test_isolated_tags_are_read_alone_and_the_rest_still_merge() -> None:
    slots = regs((0, 2), (2, 2), (4, 2))
    requests = plan(slots, Limits(), isolated=frozenset({"t2"}))
    assert spans(requests) == [
        ("holding_register", 0, 2),
        ("holding_register", 2, 2),
        ("holding_register", 4, 2),
    ]
    assert [s.name for r in requests for s in r.slots] == ["t0", "t2", "t4"]
    slots = regs((0, 2), (2, 2), (4, 2), (6, 2))
    assert spans(plan(slots, Limits(), isolated=frozenset({"t0"}))) == [
        ("holding_register", 0, 2),
        ("holding_register", 2, 6),
    ]


def test_fences_stop_a_block_from_bridging_a_refused_hole() -> None:
    slots = regs((0, 1), (5, 1))
    block = plan(slots, Limits())[0]
    assert block.count == 6
    fences = fences_between(block)
    assert fences == {("holding_register", 1)}
    assert spans(plan(slots, Limits(), fences=frozenset(fences))) == [
        ("holding_register", 0, 1),
        ("holding_register", 5, 1),
    ]


def test_a_refused_block_without_holes_is_fenced_between_every_tag() -> None:
    block = plan(regs((0, 2), (2, 2), (4, 2)), Limits())[0]
    assert fences_between(block) == {("holding_register", 2), ("holding_register", 4)}
    assert [len(r.slots) for r in split(block)] == [1, 1, 1]


def minimum_requests(slots: list[Slot], limits: Limits) -> int:
    """Exhaustive minimum by dynamic programming over sorted, non-overlapping tags of one table."""
    slots = sorted(slots, key=lambda s: s.address)
    size, gap = limits.size(slots[0].table), limits.gap(slots[0].table)
    best = [0] + [10**9] * len(slots)
    for end in range(1, len(slots) + 1):
        for start in range(end):
            seg = slots[start:end]
            ok = seg[-1].end - seg[0].address <= size and all(
                b.address - a.end <= gap for a, b in itertools.pairwise(seg)
            )
            if ok:
                best[end] = min(best[end], best[start] + 1)
    return best[-1]


@st.composite
def register_maps(draw: st.DrawFn) -> list[Slot]:
    slots, address = [], draw(st.integers(0, 20))
    for i in range(draw(st.integers(1, 40))):
        count = draw(st.sampled_from([1, 1, 2, 2, 4, 8, 16]))
        slots.append(Slot(f"t{i}", "holding_register", address, count))
        address += count + draw(st.sampled_from([0, 0, 0, 1, 3, 9, 10, 11, 40, 120]))
    return slots


@settings(max_examples=300, deadline=None)
@given(slots=register_maps(), max_gap=st.integers(0, 20), max_registers=st.sampled_from([16, 60, 125]))
def test_plan_is_minimal_for_any_map(slots: list[Slot], max_gap: int, max_registers: int) -> None:
    limits = Limits(max_registers=max_registers, max_gap=max_gap)
    requests = plan(slots, limits)
    assert len(requests) == minimum_requests(slots, limits)
    assert sorted(s.name for r in requests for s in r.slots) == sorted(s.name for s in slots)
    for r in requests:
        assert r.count <= max_registers
        assert all(r.address <= s.address and s.end <= r.address + r.count for s in r.slots)
