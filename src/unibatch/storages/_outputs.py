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
import os
import sys
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
SIZE_CLASS_BYTES = 2 << 20
"""Buffers come in multiples of this size, so results of nearby sizes share them."""
IDLE_BUFFERS_PER_SIZE = 4
IDLE_BYTES_MIN = 256 << 20
IDLE_COPIES = 3
"""Idle buffers are kept up to ``max(IDLE_BYTES_MIN, IDLE_COPIES x the largest buffer handed out)``."""


class RecyclingPool:
    """Large host buffers that come back when nothing views them any more (see the module docstring).

    Each result views its buffer through a ctypes array made for it alone (NumPy keeps that
    exporter as the base of every view, and PyTorch keeps the array); when the last of them is
    collected the buffer becomes idle. Buffers are sized in :data:`SIZE_CLASS_BYTES` steps. Idle
    buffers are evicted least recently released first, beyond :data:`IDLE_BUFFERS_PER_SIZE` of
    one size or beyond :data:`IDLE_COPIES` times the largest buffer handed out (at least
    :data:`IDLE_BYTES_MIN`), so a workload's steady size always finds room.
    """

    def __init__(self) -> None:
        self._idle: list[np.ndarray] = []  # least recently released first
        self._idle_bytes = 0
        self._largest = 0
        self._lock = threading.RLock()  # a release can run inside ``empty`` (garbage collection)

    @property
    def idle_bytes(self) -> int:
        """Bytes held by idle buffers."""
        return self._idle_bytes

    def clear(self) -> None:
        """Free every idle buffer (buffers in use return later, as usual)."""
        with self._lock:
            self._idle, self._idle_bytes = [], 0

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (another thread of the parent may have held this one)."""
        self._lock = threading.RLock()

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype`` (no object dtype) on a recycled buffer when one is idle."""
        nbytes = math.prod(shape) * dtype.itemsize
        size = -(-nbytes // SIZE_CLASS_BYTES) * SIZE_CLASS_BYTES
        buffer = None
        with self._lock:
            self._largest = max(self._largest, size)
            for position in range(len(self._idle) - 1, -1, -1):  # the most recently released first
                if self._idle[position].nbytes == size:
                    buffer = self._idle.pop(position)
                    self._idle_bytes -= size
                    break
        if buffer is None:
            buffer = np.empty(size, np.uint8)
        handle: Any = (ctypes.c_uint8 * nbytes).from_buffer(cast(Any, buffer))  # the result's base, for NumPy
        weakref.finalize(handle, self._release, buffer).atexit = False
        return np.frombuffer(handle, dtype=dtype).reshape(shape)

    def _release(self, buffer: np.ndarray) -> None:
        with self._lock:
            self._idle.append(buffer)
            self._idle_bytes += buffer.nbytes
            limit = max(IDLE_BYTES_MIN, IDLE_COPIES * self._largest)
            same_size = [position for position, idle in enumerate(self._idle) if idle.nbytes == buffer.nbytes]
            if len(same_size) > IDLE_BUFFERS_PER_SIZE:
                self._idle_bytes -= self._idle.pop(same_size[0]).nbytes
            while self._idle_bytes > limit:
                self._idle_bytes -= self._idle.pop(0).nbytes


RECYCLED = RecyclingPool()
"""The process's pool (a forked child starts with a copy of the parent's idle buffers)."""
if sys.platform != "win32":
    os.register_at_fork(after_in_child=lambda: RECYCLED.after_fork())


def take_rows(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``array.take(index, axis=0)``, written into the active arena's buffer or a recycled one when large.

    The ``out=`` paths gather with ``mode="clip"`` (``mode="raise"`` with ``out=`` copies twice):
    sampler indices (the arena) are valid, and other large gathers check their bounds first.
    """
    if array.dtype == object:
        return array.take(index, axis=0)
    shape = (len(index), *array.shape[1:])
    arena = _ACTIVE.get()
    if arena is not None:
        out = arena.buffer(shape, array.dtype)
    elif math.prod(shape) * array.itemsize >= RECYCLE_MIN_BYTES and _inside(index, len(array)):
        out = RECYCLED.empty(shape, array.dtype)
    else:
        return array.take(index, axis=0)  # (outside rows: NumPy's own wrap-around or IndexError)
    return np.take(array, index, axis=0, out=out, mode="clip")


def _inside(index: np.ndarray, rows: int) -> bool:
    """Whether every index is in ``[0, rows)`` (two reductions: nothing next to a multi-megabyte gather)."""
    return not index.size or (int(index.min()) >= 0 and int(index.max()) < rows)


_NO_ARENA = contextlib.nullcontext()


def arena_context(arena: OutputArena | None) -> contextlib.AbstractContextManager[object]:
    """The arena itself as a context manager, or a shared no-op without one (no allocation per call)."""
    return _NO_ARENA if arena is None else arena
