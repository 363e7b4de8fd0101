"""Where host gathers write their results: fresh arrays, recycled large buffers, or a sampler's arena.

A fresh result costs page faults: the kernel zeroes every new page, about 7 ms for an 87 MB
window batch, as much as the gather itself. Two mechanisms avoid that:

* :class:`RecyclingPool` (always on): results of at least :data:`RECYCLE_MIN_BYTES` are carved
  from buffers that return to the pool once the last array or tensor viewing them is garbage
  collected. A batch stays valid for as long as anyone holds it, and the next batch of the same
  size lands on warm pages. (Smaller results are recycled by the C allocator already.)
* :class:`OutputArena` (opt-in): a sampler made with ``reuse_outputs=N`` activates it (a context
  variable) while it reads; the k-th gather of a call then uses slot ``(call % N, k)``, so the
  arrays of a call stay valid until N more calls have been made. No bookkeeping per batch.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import math
import threading
import weakref
from typing import Any, cast

import numpy as np

_ACTIVE: contextvars.ContextVar[OutputArena | None] = contextvars.ContextVar("unibatch_output_arena", default=None)


class OutputArena:
    """Buffers reused every ``calls`` calls (see the module docstring)."""

    def __init__(self, calls: int) -> None:
        if calls <= 0:
            raise ValueError(f"reuse_outputs must be positive, got {calls}")
        self.calls = calls
        self._call = -1
        self._position = 0
        self._buffers: dict[tuple[int, int], np.ndarray] = {}
        self._tokens: list[contextvars.Token[OutputArena | None]] = []

    def __getstate__(self) -> dict[str, object]:
        """A pickled sampler (a worker process) starts with no buffers."""
        return {"calls": self.calls, "_call": -1, "_position": 0, "_buffers": {}, "_tokens": []}

    def __enter__(self) -> OutputArena:
        """Within ``with arena:`` (one read), gathers write into the buffers of the next call slot."""
        self._call += 1
        self._position = 0
        self._tokens.append(_ACTIVE.set(self))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _ACTIVE.reset(self._tokens.pop())

    def buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The next buffer of this call, reallocated only when its shape or dtype changed."""
        key = (self._call % self.calls, self._position)
        self._position += 1
        cached = self._buffers.get(key)
        if cached is None or cached.shape != shape or cached.dtype != dtype:
            cached = self._buffers[key] = np.empty(shape, dtype)
        return cached


RECYCLE_MIN_BYTES = 8 << 20
"""Results at least this large come from the :class:`RecyclingPool` (glibc serves smaller ones from
its heap once one of that size has been freed; larger ones are new, zero-filled mappings)."""
IDLE_BUFFERS_PER_SIZE = 4
IDLE_BYTES_LIMIT = 1 << 30


class RecyclingPool:
    """Large host buffers that come back when nothing views them any more (see the module docstring).

    Each result views its buffer through a ctypes array made for it alone (NumPy keeps that
    exporter as the base of every view, and PyTorch keeps the array); when the last of them is
    collected the buffer becomes idle. At most :data:`IDLE_BUFFERS_PER_SIZE` idle buffers per size and
    :data:`IDLE_BYTES_LIMIT` bytes in all are kept; the rest are freed.
    """

    def __init__(self) -> None:
        self._idle: dict[int, list[np.ndarray]] = {}
        self._idle_bytes = 0
        self._lock = threading.RLock()  # a release can run inside ``empty`` (garbage collection)

    @property
    def idle_bytes(self) -> int:
        """Bytes held by idle buffers."""
        return self._idle_bytes

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype`` (no object dtype) on a recycled buffer when one is idle."""
        nbytes = math.prod(shape) * dtype.itemsize
        with self._lock:
            idle = self._idle.get(nbytes)
            buffer = idle.pop() if idle else None
            if buffer is not None:
                self._idle_bytes -= nbytes
        if buffer is None:
            buffer = np.empty(nbytes, np.uint8)
        handle: Any = (ctypes.c_uint8 * nbytes).from_buffer(cast(Any, buffer))  # the result's base, for NumPy
        weakref.finalize(handle, self._release, buffer).atexit = False
        return np.frombuffer(handle, dtype=dtype).reshape(shape)

    def _release(self, buffer: np.ndarray) -> None:
        with self._lock:
            idle = self._idle.setdefault(buffer.nbytes, [])
            if len(idle) < IDLE_BUFFERS_PER_SIZE and self._idle_bytes + buffer.nbytes <= IDLE_BYTES_LIMIT:
                idle.append(buffer)
                self._idle_bytes += buffer.nbytes


RECYCLED = RecyclingPool()
"""The process's pool (a forked child starts with a copy of the parent's idle buffers)."""


def take_rows(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``array.take(index, axis=0)``, written into the active arena's buffer or a recycled one when large.

    Storage indices are valid (inside ``[0, len)``), so the ``out=`` paths gather with
    ``mode="clip"`` (``mode="raise"`` with ``out=`` copies twice).
    """
    if array.dtype == object:
        return array.take(index, axis=0)
    shape = (len(index), *array.shape[1:])
    arena = _ACTIVE.get()
    if arena is not None:
        out = arena.buffer(shape, array.dtype)
    elif len(index) * array.itemsize * math.prod(array.shape[1:]) >= RECYCLE_MIN_BYTES:
        out = RECYCLED.empty(shape, array.dtype)
    else:
        return array.take(index, axis=0)
    return np.take(array, index, axis=0, out=out, mode="clip")


_NO_ARENA = contextlib.nullcontext()


def arena_context(arena: OutputArena | None) -> contextlib.AbstractContextManager[object]:
    """The arena itself as a context manager, or a shared no-op without one (no allocation per call)."""
    return _NO_ARENA if arena is None else arena
