"""Index arithmetic of window views: frames, clipping, fill positions. Pure functions of integer arrays.

It runs in the view's *index space*: NumPy itself when the backend's arrays have host views
(NumPy, PyTorch on the CPU), where a small array operation costs a fraction of a dispatched
tensor operation and index arrays cross to the backend without copies; the backend's own
namespace otherwise (JAX, devices), where nothing synchronises with the host.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from unibatch._typing import Array, Device
from unibatch.backends import ComputeBackend, NumpyComputeBackend


class WindowIndex:
    """The index space of a window view with frame ``offsets`` (strictly increasing, containing 0).

    >>> from unibatch import NumpyComputeBackend as nb
    >>> index = WindowIndex(nb, None, [-2, -1, 0])
    >>> frames = index.frames(np.array([0, 5]))
    >>> frames.tolist(), index.clip(frames, 6).tolist()
    ([[-2, -1, 0], [3, 4, 5]], [[0, 0, 0], [3, 4, 5]])
    """

    def __init__(self, backend: ComputeBackend, device: Device | None, offsets: Sequence[int]) -> None:
        self.backend, self.device = backend, device
        self.centre = list(offsets).index(0)
        probe = backend.asarray([0], dtype=backend.default_index_dtype, device=device)
        self.on_host = backend.host_view(probe) is not None
        self._ops: ComputeBackend = NumpyComputeBackend if self.on_host else backend  # clip, cumulative_max
        self._to_backend = backend.fresh_host_wrapper(np.dtype(np.int64), device) if self.on_host else None
        self.xp: Any = np if self.on_host else backend.xp
        self.offsets = self.to_index(backend.asarray(list(offsets), dtype=backend.default_index_dtype, device=device))
        self.positions = self.xp.arange(len(offsets), dtype=self.offsets.dtype, **self.device_keyword())

    def device_keyword(self) -> dict[str, Any]:
        """``device=`` for array creation in the index space (NumPy before 2.0 takes none)."""
        return {} if self.on_host else {"device": self.device}

    def to_index(self, x: Array) -> Any:
        """A backend array in the index space (a view on the host)."""
        if not self.on_host or isinstance(x, np.ndarray):
            return x
        return self.backend.host_view(x)

    def to_backend(self, x: Any) -> Array:
        """A fresh index-space array as the backend's (no copy on the host; PyTorch wraps it)."""
        return x if self._to_backend is None else self._to_backend(x)

    def as_bool(self, mask: Any) -> Any:
        """An index-space mask as booleans (a mask function may answer with 0/1 integers)."""
        if self.on_host and mask.dtype == np.bool_:
            return mask
        return mask != 0

    def frames(self, rows: Any) -> Any:
        """``(B, T)`` source frames of the windows centred on ``rows`` (``(B,)``, index space)."""
        return rows[:, None] + self.offsets[None, :]

    def clip(self, frames: Any, length: int) -> Any:
        """Frames moved into ``[0, length)``: out-of-range frames are invalid, so any valid row will do."""
        return self._ops.clip(frames, 0, max(length - 1, 0))

    def fill_positions(self, valid: Any) -> Any:
        """:func:`fill_positions` of a ``(B, T)`` index-space mask."""
        return fill_positions(self.xp, self._ops.cumulative_max, valid, self.centre, self.positions)


def fill_positions(xp: Any, cumulative_max: Callable[..., Any], valid: Any, centre: int, positions: Any) -> Any:
    """For each ``(b, t)`` of a ``(B, T)`` mask: the window position whose frame fills it (``t`` itself when valid).

    Before the centre the nearest valid position at or after ``t``, after it the nearest at or
    before ``t``; the centre counts as valid. Two running maxima, no in-place writes. ``xp`` is an
    array namespace (NumPy itself on the host) and ``positions`` is ``arange(T)`` in it.

    >>> fill_positions(np, np.maximum.accumulate, np.array([[True, False, True, False, False]]), 2, np.arange(5))
    array([[0, 2, 2, 2, 2]])
    """
    size = int(valid.shape[1])
    usable = valid | (positions == centre)
    # After the centre: the last usable position at or before t (a running maximum).
    last_at_or_before = cumulative_max(xp.where(usable, positions, -1), axis=1)
    # Before the centre: the first usable position at or after t (the same, on the reversed window).
    reversed_last = cumulative_max(xp.where(xp.flip(usable, axis=1), positions, -1), axis=1)
    first_at_or_after = size - 1 - xp.flip(reversed_last, axis=1)
    return xp.where(positions < centre, first_at_or_after, last_at_or_before)


def fill_moves(mask: np.ndarray, centre: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Flat ``(destination, source)`` frame positions (``b * T + t``) that filling a ``(B, T)`` host mask moves.

    The rule of :func:`fill_positions`, looked up for the invalid frames alone: in the flat order
    of usable frames (valid ones and every centre), a frame before its centre takes the next
    usable frame and one after it the previous; the centre in between keeps both inside the
    window. None when nothing moves.

    >>> fill_moves(np.array([[False, True, True], [True, True, False]]), 1)
    (array([0, 5]), array([1, 4]))
    """
    usable = mask.copy()
    usable[:, centre] = True
    moved = np.flatnonzero(~usable)
    if not moved.size:
        return None
    kept = np.flatnonzero(usable)
    after = np.searchsorted(kept, moved)  # the first usable frame after each moved one
    before_centre = moved % mask.shape[1] < centre
    return moved, kept[np.where(before_centre, after, after - 1)]
