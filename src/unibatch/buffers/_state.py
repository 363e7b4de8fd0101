"""The ring state of a buffer (count, offset), plain or shared between processes."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from typing import Any

from unibatch.errors import CorruptDataError

_UNLOCKED = contextlib.nullcontext()


class RingState:
    """``count`` and ``offset`` with a lock; shared through ``multiprocessing`` when asked.

    In shared mode both counters live in shared memory and one ``RLock`` guards them, so one
    writer and many readers in other processes see the same state. Views of a buffer (columns)
    hold the same ``RingState`` and therefore follow every change. :attr:`front` counts the rows
    that ever left the front of the ring (the absolute number of logical row 0), shared alike.
    """

    def __init__(
        self, count: int = 0, offset: int = 0, shared: bool = False, context: Any = None, front: int = 0
    ) -> None:
        self.shared = shared
        if shared:
            # Objects of the spawn context can be shared with fork, forkserver and spawn children alike.
            ctx = context or multiprocessing.get_context("spawn")
            self._count: Any = ctx.Value("q", count, lock=False)
            self._offset: Any = ctx.Value("q", offset, lock=False)
            self._front: Any = ctx.Value("q", front, lock=False)
            self.lock: Any = ctx.RLock()
        else:
            self._count, self._offset, self._front = count, offset, front
            self.lock = threading.RLock()

    @property
    def count(self) -> int:
        return int(self._count.value) if self.shared else self._count

    @property
    def offset(self) -> int:
        return int(self._offset.value) if self.shared else self._offset

    @property
    def front(self) -> int:
        return int(self._front.value) if self.shared else self._front

    def advance_front(self, rows: int) -> None:
        """``rows`` more rows left the front (callers hold :attr:`lock`)."""
        if self.shared:
            self._front.value += rows
        else:
            self._front += rows

    def publish(self, count: int, offset: int) -> None:
        """Set both counters (callers hold :attr:`lock`)."""
        if self.shared:
            self._count.value, self._offset.value = count, offset
        else:
            self._count, self._offset = count, offset

    def locked(self) -> contextlib.AbstractContextManager[Any]:
        """Hold the lock in shared mode; a no-op in a single process (the GIL orders writes).

        Returns the lock itself or a shared no-op context: no generator per call on the hot path.
        """
        return self.lock if self.shared else _UNLOCKED

    def __getstate__(self) -> dict[str, Any]:
        if not self.shared:
            return {
                "shared": False,
                "_count": self._count,
                "_offset": self._offset,
                "_front": self._front,
                "lock": None,
            }
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.lock is None:
            self.lock = threading.RLock()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_persisted_capacity(capacity: Any, where: object) -> int | None:
    """A persisted capacity: a positive integer, or None for a growable buffer.

    Raises:
        CorruptDataError: naming ``where`` and the value found.
    """
    if capacity is None or (_is_int(capacity) and capacity > 0):
        return capacity
    raise CorruptDataError(f"{where}: capacity must be a positive integer or null, got {capacity!r}")


def parse_start(start: Any, where: object) -> int:
    """A persisted ``start`` (the absolute number of the oldest committed row): a non-negative integer.

    Raises:
        CorruptDataError: naming ``where`` and the value found.
    """
    if _is_int(start) and start >= 0:
        return int(start)
    raise CorruptDataError(f"{where}: start must be a non-negative integer, got {start!r}")


def parse_ring_state(count: Any, offset: Any, capacity: int | None, where: object) -> tuple[int, int]:
    """A persisted ``(count, offset)`` that a ring of ``capacity`` can be in.

    ``0 <= count <= capacity`` and ``0 <= offset < capacity`` (a commit of a full ring may keep
    fewer rows than the capacity from a non-zero offset); a growable buffer has ``offset == 0``.
    Both are integers (not bools, not floats).

    Raises:
        CorruptDataError: naming ``where``, the values found and the bounds.
    """
    if not _is_int(count) or not _is_int(offset):
        raise CorruptDataError(f"{where}: count and offset must be integers, got {count!r} and {offset!r}")
    if count < 0 or (capacity is not None and count > capacity):
        raise CorruptDataError(f"{where}: count {count} is outside [0, {capacity}] (capacity {capacity})")
    if not (offset == 0 if capacity is None else 0 <= offset < capacity):
        bounds = "0 (a growable buffer)" if capacity is None else f"in [0, {capacity})"
        raise CorruptDataError(f"{where}: offset {offset} is impossible, expected {bounds}")
    return count, offset
