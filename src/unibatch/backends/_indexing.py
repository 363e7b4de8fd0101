"""The one place where every index form is normalised (DESIGN.md decision 1).

Batches (``unibatch.batches``) and storages (``unibatch.storages``) both normalise through this
module, so an index means the same thing everywhere. A Python ``int``, a NumPy integer scalar
and a 0-d integer array of any backend mean one sample; slices, ``...``, 1-D integer arrays of
any backend and 1-D boolean masks of full length mean a batch. Negative indices count from the
end. Batch primitives only ever see the result: an ``int`` in ``[0, length)`` or a 1-D integer
array of the batch's backend with values in ``[0, length)``. Storages (:func:`normalize_rows`)
also keep a step-1 slice as a slice, so formats can read contiguous rows in one request.
"""

from __future__ import annotations

import operator
from types import EllipsisType
from typing import Any, TypeAlias

import numpy as np

from unibatch._typing import Array, Device
from unibatch.backends import ComputeBackend, NumpyComputeBackend, convert, get_backend_or_none
from unibatch.errors import IndexOutOfRangeError, InvalidIndexError

NormalizedIndex: TypeAlias = int | Array
"""An ``int`` in ``[0, length)`` (one sample) or a 1-D integer backend array (a batch)."""


def is_single(index: NormalizedIndex) -> bool:
    """Whether a normalised index addresses one sample (unbatched result)."""
    return isinstance(index, int)


def normalize_index(index: Any, length: int, backend: ComputeBackend, device: Device | None = None) -> NormalizedIndex:
    """Check ``index`` against ``length`` and bring it to the normalised form.

    Args:
        index: any accepted index form (see the module docstring).
        length: the number of addressable samples.
        backend: the backend of the returned index array.
        device: the device of the returned index array (None: the backend's default).

    Returns:
        An ``int`` in ``[0, length)`` or a 1-D integer array of ``backend`` in ``[0, length)``.

    Raises:
        IndexOutOfRangeError: an index outside ``[-length, length)``, naming it and the length.
        InvalidIndexError: a bool, float, string, multi-dimensional array and the like.

    >>> from unibatch import NumpyComputeBackend as np_backend
    >>> normalize_index(-1, 5, np_backend), normalize_index(slice(1, None, 2), 5, np_backend).tolist()
    (4, [1, 3])
    """
    if isinstance(index, (bool, np.bool_)):
        raise InvalidIndexError(f"a bool is not an index (got {index!r}); use an int or a boolean mask array")
    if isinstance(index, (int, np.integer)):
        return _check_int(int(index), length)
    if isinstance(index, slice):
        return backend.asarray(
            _slice_positions(*_slice_bounds(index, length)), dtype=backend.default_index_dtype, device=device
        )
    if isinstance(index, EllipsisType):
        return backend.asarray(np.arange(length), dtype=backend.default_index_dtype, device=device)
    source = get_backend_or_none(index)
    if source is None:
        flags = [isinstance(i, (bool, np.bool_)) for i in index] if isinstance(index, (list, tuple)) else []
        if any(flags) and not all(flags):
            raise InvalidIndexError(f"an index list mixes bools and integers: {index!r}")
        if isinstance(index, (list, tuple)) and all(isinstance(i, (int, np.integer, bool, np.bool_)) for i in index):
            array = np.asarray(index)
            return _normalize_array(array if array.size else array.astype(np.int64), length, backend, device)
        raise InvalidIndexError(
            f"unsupported index {index!r} ({type(index).__name__}); expected an int, slice, ..., "
            "or a 1-D integer or boolean array"
        )
    return _normalize_array(index, length, backend, device)


def normalize_rows(
    index: Any, length: int, backend: ComputeBackend, device: Device | None = None, *, host: bool = False
) -> int | slice | Array:
    """Like :func:`normalize_index`, but a slice of step 1 (and ``...``) stays a slice.

    What a storage's public ``get``/``set`` calls before its format reads or writes: formats read
    a contiguous range in one request.

    Args:
        index: any accepted index form (see the module docstring).
        length: the number of rows.
        backend: the backend of a returned index array.
        device: the device of a returned index array.
        host: return index arrays as NumPy arrays (storages that gather on the host).

    Returns:
        An ``int`` in ``[0, length)``, a ``slice(start, stop)`` with ``0 <= start <= stop <= length``
        and no step, or a 1-D integer array with values in ``[0, length)``, never the caller's array.

    >>> from unibatch import NumpyComputeBackend as np_backend
    >>> normalize_rows(slice(-2, None), 5, np_backend), normalize_rows(..., 5, np_backend)
    (slice(3, 5, None), slice(0, 5, None))
    """
    if isinstance(index, slice):
        start, stop, step = _slice_bounds(index, length)
        if step == 1:
            return slice(start, max(start, stop))
        positions = _slice_positions(start, stop, step)
        return positions if host else backend.asarray(positions, dtype=backend.default_index_dtype, device=device)
    if isinstance(index, EllipsisType):
        return slice(0, length)
    if host:
        return normalize_index(index, length, NumpyComputeBackend)
    return normalize_index(index, length, backend, device)


def _slice_bounds(index: slice, length: int) -> tuple[int, int, int]:
    if index.step == 0:
        raise InvalidIndexError(f"slice step cannot be zero: {index!r}")
    try:
        return index.indices(length)
    except TypeError:
        raise InvalidIndexError(f"slice bounds must be integers or None, got {index!r}") from None


def _slice_positions(start: int, stop: int, step: int) -> np.ndarray:
    positions = range(start, stop, step)
    if len(positions) <= 1:  # the step may not fit int64
        return np.asarray(list(positions), dtype=np.int64)
    return np.arange(positions.start, positions.stop, positions.step, dtype=np.int64)


def _check_int(index: int, length: int) -> int:
    if not -length <= index < length:
        raise IndexOutOfRangeError(f"index {index} is out of range for length {length}")
    return index + length if index < 0 else index


def _normalize_array(index: Array, length: int, backend: ComputeBackend, device: Device | None) -> NormalizedIndex:
    source = get_backend_or_none(index) or backend
    dtype_name = source.dtype_name(index.dtype)
    if index.ndim == 0:
        if dtype_name == "bool" or not dtype_name.startswith(("int", "uint")):
            raise InvalidIndexError(f"a 0-d index must be an integer, got dtype {dtype_name}")
        return _check_int(operator.index(source.to_numpy(index).item()), length)
    if index.ndim != 1:
        raise InvalidIndexError(f"an index array must be 1-D, got shape {tuple(index.shape)}")
    if dtype_name == "bool":
        if index.shape[0] != length:
            raise IndexOutOfRangeError(f"a boolean mask must have the length {length}, got {index.shape[0]}")
        index = source.xp.nonzero(index)[0]
    elif not dtype_name.startswith(("int", "uint")):
        raise InvalidIndexError(f"an index array must hold integers or booleans, got dtype {dtype_name}")
    index = convert(index, backend, device)
    if index.shape[0] == 0:
        return backend.xp.astype(index, backend.default_index_dtype)
    xp = backend.xp
    low, high = int(xp.min(index)), int(xp.max(index))
    if low < -length or high >= length:
        bad = low if low < -length else high
        raise IndexOutOfRangeError(f"index {bad} is out of range for length {length}")
    index = xp.astype(index, backend.default_index_dtype)
    return xp.where(index < 0, index + length, index) if low < 0 else index


def index_length(index: Array) -> int:
    """How many samples a normalised batch index addresses."""
    return int(index.shape[0])
