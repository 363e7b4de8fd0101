"""Reused output buffers: an opt-in arena that host gathers write into instead of fresh arrays.

A fresh result costs page faults: the kernel zeroes every new page, about 7 ms for an 87 MB window
batch, as much as the gather itself. A sampler made with ``reuse_outputs=N`` owns an
:class:`OutputArena` and activates it (a context variable) while it reads: host gathers of rows
(:func:`take_rows`) then write into the arena's buffers. The k-th gather of a call uses slot
``(call % N, k)``, so the arrays of a call stay valid until N more calls have been made.
"""

from __future__ import annotations

import contextlib
import contextvars

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


def take_rows(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``array.take(index, axis=0)``, written into the active arena's buffer when a sampler reads.

    Sampler-made indices are valid, so the arena path gathers with ``mode="clip"`` (``mode="raise"``
    with ``out=`` copies twice).
    """
    arena = _ACTIVE.get()
    if arena is None or array.dtype == object:
        return array.take(index, axis=0)
    out = arena.buffer((len(index), *array.shape[1:]), array.dtype)
    return np.take(array, index, axis=0, out=out, mode="clip")


_NO_ARENA = contextlib.nullcontext()


def arena_context(arena: OutputArena | None) -> contextlib.AbstractContextManager[object]:
    """The arena itself as a context manager, or a shared no-op without one (no allocation per call)."""
    return _NO_ARENA if arena is None else arena
