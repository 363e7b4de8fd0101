"""Pure ring arithmetic: where logical rows live and where the next writes go.

``count`` rows are valid; logical row 0 (the oldest) sits in physical slot ``offset``.
``offset`` is non-zero only once a fixed-capacity ring has wrapped (``count == capacity``).
No I/O here; every function is tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


class Segment(NamedTuple):
    """Copy ``source[source_start:source_stop]`` into physical slots ``[start, stop)``."""

    start: int
    stop: int
    source_start: int
    source_stop: int


@dataclass(slots=True)
class WritePlan:
    """How ``n`` new rows enter the ring.

    ``kept_count``/``kept_offset``: the state once the overwritten rows are dropped and before
    any byte changes (publish it first); ``count``/``offset``: the state after the writes.
    Not frozen: a frozen dataclass costs half a microsecond more to build, on every extend.
    """

    segments: tuple[Segment, ...]
    kept_count: int
    kept_offset: int
    count: int
    offset: int


def plan_write(count: int, offset: int, n: int, capacity: int | None) -> WritePlan:
    """Plan the append of ``n`` rows to a ring of ``capacity`` (None: growable, no wrap).

    >>> plan = plan_write(count=8, offset=0, n=5, capacity=10)  # extend c-2 then 5 gives offset 3
    >>> [tuple(segment) for segment in plan.segments], plan.count, plan.offset
    ([(8, 10, 0, 2), (0, 3, 2, 5)], 10, 3)
    """
    if capacity is None:
        return WritePlan((Segment(count, count + n, 0, n),), count, offset, count + n, 0)
    if n >= capacity:
        return WritePlan((Segment(0, capacity, n - capacity, n),), 0, 0, capacity, 0)
    outflow = max(0, count + n - capacity)
    start = (offset + count) % capacity
    first = min(n, capacity - start)
    segments = [Segment(start, start + first, 0, first)]
    if first < n:
        segments.append(Segment(0, n - first, first, n))
    kept_offset = (offset + outflow) % capacity
    return WritePlan(tuple(segments), count - outflow, kept_offset, min(count + n, capacity), kept_offset)


AppendPlan = tuple[int, int, int, int, int]
"""``(slot, kept_count, kept_offset, count, offset)``: :class:`WritePlan` of one row, without segments."""


def plan_append(count: int, offset: int, capacity: int | None) -> AppendPlan:
    """``plan_write(count, offset, 1, capacity)`` as one slot (a plain tuple: the per-step path).

    >>> plan_append(count=10, offset=3, capacity=10)  # full: the oldest row (slot 3) is replaced
    (3, 9, 4, 10, 4)
    """
    if capacity is None:
        return count, count, offset, count + 1, 0
    if count < capacity:
        return (offset + count) % capacity, count, offset, count + 1, offset
    following = (offset + 1) % capacity
    return offset, count - 1, following, count, following


def physical_slot(index: int, offset: int, capacity: int | None) -> int:
    """Physical slot of logical row ``index`` (already in ``[0, count)``)."""
    return index if not offset or capacity is None else (index + offset) % capacity


MODULO_LIMIT = 1024
"""Up to this many indices :func:`physical_slots` maps with ``%``; past it, with a masked subtraction."""


def physical_slots(index: Any, offset: int, capacity: int | None) -> Any:
    """Physical slots of logical rows ``index`` (an integer array of any backend, inside ``[0, count)``).

    On NumPy, past :data:`MODULO_LIMIT` indices, one subtraction where the sum passes the end
    (half the cost of ``%`` for window batches of thousands of frames; ``%`` wins below).

    >>> physical_slots(np.array([0, 1, 2]), offset=8, capacity=10).tolist()
    [8, 9, 0]
    """
    if not offset or capacity is None:
        return index
    slots = index + offset
    if isinstance(slots, np.ndarray) and slots.size > MODULO_LIMIT:
        np.subtract(slots, capacity, out=slots, where=slots >= capacity)
        return slots
    return slots % capacity


def overlaps(start: int, stop: int, count: int, offset: int, capacity: int) -> bool:
    """Whether physical slots ``[start, stop)`` hold any of the ``count`` rows from ``offset``."""
    if count <= 0 or stop <= start:
        return False
    return any(start < slot_stop and slot_start < stop for slot_start, slot_stop in _ranges(offset, count, capacity))


def committed_rows_to_drop(start: int, stop: int, count: int, offset: int, capacity: int) -> int:
    """How many of the oldest committed rows must leave the committed range before a write.

    That is one more than the position (in the committed range) of the newest committed row held
    by physical slots ``[start, stop)``, or 0 when those slots hold none.

    >>> committed_rows_to_drop(6, 12 % 10 or 10, count=6, offset=0, capacity=10)  # slots 6..9: none committed
    0
    >>> committed_rows_to_drop(0, 2, count=6, offset=0, capacity=10)  # slots 0, 1 hold committed rows 0, 1
    2
    """
    if count <= 0 or stop <= start:
        return 0
    first = (start - offset) % capacity  # position in the committed range of slot ``start``
    end = first + min(stop - start, capacity)
    drop = min(end, count) if first < count else 0  # positions [first, min(end, capacity))
    if end > capacity:  # the slots wrap to positions [0, end - capacity)
        drop = max(drop, min(end - capacity, count))
    return drop


def _ranges(offset: int, count: int, capacity: int) -> list[tuple[int, int]]:
    end = offset + count
    if end <= capacity:
        return [(offset, end)]
    return [(offset, capacity), (0, end - capacity)]
