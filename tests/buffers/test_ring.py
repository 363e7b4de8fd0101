"""The pure ring arithmetic of ``unibatch.buffers.ring``, checked alone and against a plain-list model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from unibatch.buffers.ring import (
    MODULO_LIMIT,
    Segment,
    WritePlan,
    overlaps,
    physical_slot,
    physical_slots,
    plan_append,
    plan_write,
)

# ---------------------------------------------------------------------------------------------- model


def apply_plan(slots: list, plan: WritePlan, new_rows: list) -> None:
    """Copy ``new_rows`` into ``slots`` as the plan says (growing the list for growable plans)."""
    for segment in plan.segments:
        if segment.stop > len(slots):
            slots.extend([None] * (segment.stop - len(slots)))
        assert segment.stop - segment.start == segment.source_stop - segment.source_start
        slots[segment.start : segment.stop] = new_rows[segment.source_start : segment.source_stop]


def logical(slots: list, count: int, offset: int, capacity: int | None) -> list:
    """The ``count`` rows in logical order, read through :func:`physical_slot`."""
    return [slots[physical_slot(i, offset, capacity)] for i in range(count)]


def occupied(count: int, offset: int, capacity: int) -> set[int]:
    return {(offset + i) % capacity for i in range(count)}


# ---------------------------------------------------------------------------------------------- examples


@pytest.mark.parametrize("c", [2, 3, 5, 10, 17])
def test_worked_example_fill_to_capacity(c):
    """Spec §3.4: capacity c, extend c-1 then 1 gives count c, offset 0."""
    first = plan_write(0, 0, c - 1, c)
    assert (first.count, first.offset) == (c - 1, 0)
    assert first.segments == (Segment(0, c - 1, 0, c - 1),)
    second = plan_write(first.count, first.offset, 1, c)
    assert (second.count, second.offset) == (c, 0)
    assert second.segments == (Segment(c - 1, c, 0, 1),)
    assert (second.kept_count, second.kept_offset) == (c - 1, 0)


@pytest.mark.parametrize("c", [6, 7, 10, 31])
def test_worked_example_clear_then_wrap(c):
    """Spec §3.4: after clear, extend c-2 then 5 gives offset 3 (the 3 oldest rows are dropped)."""
    first = plan_write(0, 0, c - 2, c)  # clear() resets to count 0, offset 0
    assert (first.count, first.offset) == (c - 2, 0)
    second = plan_write(first.count, first.offset, 5, c)
    assert (second.count, second.offset) == (c, 3)
    assert (second.kept_count, second.kept_offset) == (c - 5, 3)
    assert second.segments == (Segment(c - 2, c, 0, 2), Segment(0, 3, 2, 5))


def test_doctest_example():
    plan = plan_write(count=8, offset=0, n=5, capacity=10)
    assert plan == WritePlan((Segment(8, 10, 0, 2), Segment(0, 3, 2, 5)), 5, 3, 10, 3)


@pytest.mark.parametrize("c", [1, 2, 7])
@pytest.mark.parametrize("extra", [0, 1, 5, 40])
@pytest.mark.parametrize("state", ["empty", "partial", "full", "wrapped"])
def test_extend_of_at_least_capacity_gives_offset_zero(c, extra, state):
    count, offset = {"empty": (0, 0), "partial": (c // 2, 0), "full": (c, 0), "wrapped": (c, c - 1)}[state]
    n = c + extra
    plan = plan_write(count, offset, n, c)
    assert (plan.count, plan.offset) == (c, 0)
    assert (plan.kept_count, plan.kept_offset) == (0, 0)  # every old row is overwritten
    assert plan.segments == (Segment(0, c, n - c, n),)  # only the last c rows are written


def test_single_row_appends_around_the_ring():
    c, count, offset = 4, 0, 0
    starts, states = [], []
    for _ in range(9):
        plan = plan_write(count, offset, 1, c)
        (segment,) = plan.segments
        starts.append(segment.start)
        count, offset = plan.count, plan.offset
        states.append((count, offset))
    assert starts == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert states == [(1, 0), (2, 0), (3, 0), (4, 0), (4, 1), (4, 2), (4, 3), (4, 0), (4, 1)]


def test_write_into_full_ring_starts_at_offset():
    plan = plan_write(count=6, offset=4, n=3, capacity=6)
    assert plan.segments == (Segment(4, 6, 0, 2), Segment(0, 1, 2, 3))
    assert (plan.kept_count, plan.kept_offset, plan.count, plan.offset) == (3, 1, 6, 1)


def test_exact_fit_does_not_split():
    plan = plan_write(count=2, offset=0, n=3, capacity=5)
    assert plan.segments == (Segment(2, 5, 0, 3),)
    assert (plan.count, plan.offset, plan.kept_count, plan.kept_offset) == (5, 0, 2, 0)


@pytest.mark.parametrize(("count", "n"), [(0, 1), (0, 100), (7, 1), (7, 3), (1000, 5000)])
def test_growable_plans_append_at_the_end(count, n):
    plan = plan_write(count, 0, n, None)
    assert plan.segments == (Segment(count, count + n, 0, n),)
    assert (plan.kept_count, plan.kept_offset) == (count, 0)
    assert (plan.count, plan.offset) == (count + n, 0)


@pytest.mark.parametrize("size", [3, MODULO_LIMIT, MODULO_LIMIT + 1, 4 * MODULO_LIMIT])
@pytest.mark.parametrize(("offset", "capacity"), [(0, 10), (7, 10), (999, 1000), (5, None)])
def test_physical_slots_of_arrays_match_one_slot_at_a_time(size, offset, capacity):
    """Both ways of mapping an index array (``%`` and the masked subtraction past the limit)."""
    count = capacity if capacity is not None else 50
    index = np.random.default_rng(size).integers(0, count, size)
    before = index.copy()
    expected = [physical_slot(int(i), offset, capacity) for i in index]
    assert physical_slots(index, offset, capacity).tolist() == expected
    assert np.array_equal(index, before)  # the caller's indices are left as they were


def test_physical_slot():
    assert physical_slot(0, 0, 5) == 0
    assert physical_slot(3, 0, None) == 3
    assert physical_slot(3, 7, None) == 3  # growable rings never wrap
    assert physical_slot(0, 3, 5) == 3
    assert physical_slot(1, 3, 5) == 4
    assert physical_slot(2, 3, 5) == 0
    assert physical_slot(4, 3, 5) == 2


@pytest.mark.parametrize(
    ("start", "stop", "count", "offset", "capacity", "expected"),
    [
        (0, 1, 0, 0, 4, False),  # an empty range overlaps nothing
        (0, 4, 0, 2, 4, False),
        (0, 1, 1, 0, 4, True),
        (1, 4, 1, 0, 4, False),
        (2, 3, 2, 0, 4, False),  # [0, 2) vs [2, 3): touching is not overlapping
        (1, 2, 2, 0, 4, True),
        (0, 1, 3, 2, 4, True),  # rows in slots 2, 3, 0
        (1, 2, 3, 2, 4, False),
        (3, 4, 2, 3, 4, True),  # rows in slots 3, 0
        (1, 3, 2, 3, 4, False),
        (0, 4, 4, 1, 4, True),
    ],
)
def test_overlaps_examples(start, stop, count, offset, capacity, expected):
    assert overlaps(start, stop, count, offset, capacity) is expected


# ---------------------------------------------------------------------------------------------- properties

ring_states = st.integers(1, 12).flatmap(
    lambda capacity: st.tuples(st.just(capacity), st.integers(0, capacity), st.integers(0, capacity - 1))
)
"""(capacity, count, offset): every state, including count < capacity with a non-zero offset (what
``load_from`` gives after a commit that dropped the oldest slots of a full ring)."""


@settings(max_examples=400, deadline=None, database=None)
@given(state=ring_states, n=st.integers(0, 30))
def test_plan_write_matches_list_model(state, n):
    capacity, count, offset = state
    old_rows = [f"old{i}" for i in range(count)]
    new_rows = [f"new{i}" for i in range(n)]
    # A ring holding old_rows in logical order starting at physical slot `offset`.
    slots: list = [f"junk{i}" for i in range(capacity)]
    for i, row in enumerate(old_rows):
        slots[(offset + i) % capacity] = row
    assert logical(slots, count, offset, capacity) == old_rows

    plan = plan_write(count, offset, n, capacity)

    # Segments: inside [0, capacity), disjoint, sources in order and covering a suffix of the input.
    written: set[int] = set()
    for segment in plan.segments:
        assert 0 <= segment.start <= segment.stop <= capacity
        assert segment.stop - segment.start == segment.source_stop - segment.source_start
        assert not written & set(range(segment.start, segment.stop))
        written |= set(range(segment.start, segment.stop))
    sources = [i for s in plan.segments for i in range(s.source_start, s.source_stop)]
    assert sources == list(range(max(0, n - capacity), n))
    assert len(plan.segments) <= 2

    # The kept state: the oldest rows that survive, untouched by any write.
    kept_rows = logical(slots, plan.kept_count, plan.kept_offset, capacity)
    expected_after = (old_rows + new_rows)[-capacity:] if capacity else []
    survivors = max(0, len(expected_after) - n) if n < capacity else 0
    assert plan.kept_count == survivors
    assert kept_rows == old_rows[len(old_rows) - survivors :]
    assert not written & occupied(plan.kept_count, plan.kept_offset, capacity)
    assert not any(overlaps(s.start, s.stop, plan.kept_count, plan.kept_offset, capacity) for s in plan.segments)
    assert 0 <= plan.kept_offset < capacity

    # The final state: the last `capacity` rows of everything ever written, oldest first.
    apply_plan(slots, plan, new_rows)
    assert plan.count == min(count + n, capacity)
    assert 0 <= plan.offset < capacity
    assert logical(slots, plan.count, plan.offset, capacity) == expected_after
    if n:
        assert plan.offset == plan.kept_offset or plan.kept_count == 0


@settings(max_examples=150, deadline=None, database=None)
@given(count=st.integers(0, 50), n=st.integers(0, 50))
def test_growable_plan_matches_list_model(count, n):
    old_rows = [f"old{i}" for i in range(count)]
    new_rows = [f"new{i}" for i in range(n)]
    slots = list(old_rows)
    plan = plan_write(count, 0, n, None)
    assert (plan.kept_count, plan.kept_offset) == (count, 0)
    assert logical(slots, plan.kept_count, plan.kept_offset, None) == old_rows
    apply_plan(slots, plan, new_rows)
    assert logical(slots, plan.count, plan.offset, None) == old_rows + new_rows


@settings(max_examples=200, deadline=None, database=None)
@given(
    capacity=st.integers(1, 12),
    chunks=st.lists(st.integers(0, 15), max_size=20),
    clear_at=st.sets(st.integers(0, 19), max_size=3),
)
def test_sequences_of_plans_keep_the_last_rows(capacity, chunks, clear_at):
    """Chains of plans (with clears, which reset to count 0, offset 0) against a plain list."""
    slots: list = [None] * capacity
    count = offset = 0
    model: list[str] = []
    serial = 0
    for step, n in enumerate(chunks):
        if step in clear_at:
            count = offset = 0
            model = []
        new_rows = [f"r{serial + i}" for i in range(n)]
        serial += n
        plan = plan_write(count, offset, n, capacity)
        apply_plan(slots, plan, new_rows)
        count, offset = plan.count, plan.offset
        model = (model + new_rows)[-capacity:]
        assert logical(slots, count, offset, capacity) == model
        assert count == len(model)
        # The invariant the spec states for states built by writes alone.
        assert offset == 0 or count == capacity


@settings(max_examples=300, deadline=None, database=None)
@given(
    state=ring_states,
    bounds=st.tuples(st.integers(0, 12), st.integers(0, 12)),
)
def test_overlaps_matches_set_intersection(state, bounds):
    capacity, count, offset = state
    start, stop = sorted(bounds)
    stop = min(stop, capacity)
    start = min(start, stop)
    assume(start < stop)  # empty ranges: see test_overlaps_of_an_empty_range
    expected = bool(set(range(start, stop)) & occupied(count, offset, capacity))
    assert overlaps(start, stop, count, offset, capacity) is expected


@settings(max_examples=200, deadline=None, database=None)
@given(state=ring_states)
def test_physical_slot_is_a_bijection_onto_the_occupied_slots(state):
    capacity, count, offset = state
    slots = [physical_slot(i, offset, capacity) for i in range(count)]
    assert len(set(slots)) == count
    assert set(slots) == occupied(count, offset, capacity)
    assert all(0 <= s < capacity for s in slots)


def test_overlaps_of_an_empty_range():
    assert overlaps(2, 2, 4, 0, 4) is False
    assert not any(overlaps(s.start, s.stop, 4, 0, 4) for s in plan_write(4, 0, 0, 4).segments)


@given(state=ring_states)
def test_plan_append_is_plan_write_of_one_row(state):
    capacity, count, offset = state
    for cap in (capacity, None):
        start = offset if cap is not None else 0
        full = plan_write(count, start, 1, cap)
        slot, *state_after = plan_append(count, start, cap)
        assert full.segments == (Segment(slot, slot + 1, 0, 1),)
        assert state_after == [full.kept_count, full.kept_offset, full.count, full.offset]
