"""Row reads and writes on h5py datasets (one hyperslab per block of rows), and values as stored rows.

h5py's fancy indexing (``dataset[[3, 9, 10]]``) builds one selection out of every row; on a chunked
dataset HDF5 then takes 280 ms to read 256 random rows of ``uint8[3, 84, 84]`` out of 2,000 (measured
with h5py 3.16 / HDF5 2.0), where a read per block of nearby rows takes 4 ms (a NumPy gather from
memory: 0.5 ms). So a read sorts and de-duplicates the requested rows, cuts them into blocks (rows
closer than :data:`GAP_BYTES` share a block, since reading a few unwanted rows is cheaper than another
call), reads each block into one buffer, and gathers the requested order, duplicates included, with a
single ``np.take``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from unibatch.backends import get_backend_or_none
from unibatch.errors import SpaceMismatchError
from unibatch.storages._hdf5_files import h5py_module
from unibatch.storages._leaves import Leaf

GAP_BYTES = 64 * 1024
"""Requested rows separated by fewer unwanted bytes than this are read in one call (about one call's cost)."""


@dataclass(frozen=True)
class RowSelection:
    """The rows of a request as HDF5 wants them: sorted and distinct, plus how to restore the request."""

    rows: np.ndarray
    """Sorted distinct rows, int64 ``(n,)``."""
    order: np.ndarray | None
    """For each requested row, its position in :attr:`rows`; None when the request is :attr:`rows` itself."""
    single: bool
    """Whether the request was one int (the result has no batch axis)."""


def select_rows(index: int | slice | np.ndarray) -> RowSelection:
    """The :class:`RowSelection` of a storage index already on the host."""
    if isinstance(index, slice):
        return RowSelection(np.arange(index.start or 0, index.stop, dtype=np.int64), None, False)
    if isinstance(index, np.ndarray):
        rows, order = np.unique(index.astype(np.int64, copy=False), return_inverse=True)
        return RowSelection(rows, None if len(rows) == len(index) and _is_sorted(index) else order, False)
    return RowSelection(np.array([int(index)], dtype=np.int64), None, True)


def read_rows(dataset: Any, selection: RowSelection, dtype: np.dtype) -> np.ndarray:
    """The rows of ``dataset`` in request order, as ``dtype`` (HDF5 converts): ``(B, *shape)`` or ``(*shape)``."""
    shape = tuple(dataset.shape[1:])
    if not len(selection.rows):
        return np.empty((0, *shape), dtype)
    row_bytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
    starts, stops, positions = _blocks(selection.rows, GAP_BYTES // row_bytes)
    buffer = np.empty((int((stops - starts).sum()), *shape), dtype)
    _transfer(dataset, starts, stops, buffer, write=False)
    gather = None if len(buffer) == len(selection.rows) else positions
    if selection.order is not None:
        gather = selection.order if gather is None else gather[selection.order]
    result = buffer if gather is None else np.take(buffer, gather, axis=0)
    return result[0, ...] if selection.single else result  # one row: an array, also of shape ()


def write_rows(dataset: Any, index: int | slice | np.ndarray, values: np.ndarray) -> None:
    """Write ``values`` (C-contiguous, the dataset's dtype, one row per requested row) at ``index``.

    An index array may be unsorted and repeat rows: as with NumPy assignment, the last value given
    for a row is the one stored.
    """
    if values.ndim == dataset.ndim and not len(values):
        return  # a batch of no rows
    if isinstance(index, slice):
        starts, stops = np.array([index.start or 0]), np.array([index.stop])
    elif isinstance(index, np.ndarray):
        order = np.argsort(index, kind="stable")
        ordered = index[order]
        last = np.append(ordered[1:] != ordered[:-1], True)  # the last of each run of equal rows
        rows = ordered[last].astype(np.int64, copy=False)
        values = values if len(rows) == len(index) and _is_sorted(index) else np.take(values, order[last], axis=0)
        starts, stops, _ = _blocks(rows, 0)
    else:
        starts, stops, values = np.array([int(index)]), np.array([int(index) + 1]), values[np.newaxis]
    _transfer(dataset, starts, stops, np.asarray(values, order="C"), write=True)


def requested_rows(index: slice | np.ndarray) -> int:
    """How many rows a slice or an index array asks for (duplicates counted)."""
    return index.stop - index.start if isinstance(index, slice) else len(index)


def leaf_array(leaf: Leaf, value: Any, count: int | None) -> np.ndarray:
    """``value`` as the C-contiguous array written to the leaf's dataset; raises before anything is written."""
    label = leaf.name or "value"
    expected = leaf.shape if count is None else (count, *leaf.shape)
    if leaf.is_text:
        array = encode_texts(leaf, value, label)
    else:
        backend = get_backend_or_none(value)
        array = np.asarray(backend.to_numpy(value) if backend is not None else value)
        if not np.can_cast(array.dtype, leaf.numpy_dtype, "same_kind"):
            raise SpaceMismatchError(f"{label}: expected values castable to {leaf.numpy_dtype}, got {array.dtype}")
    if array.shape != expected:
        try:
            array = np.broadcast_to(array, expected)
        except ValueError:
            raise SpaceMismatchError(f"{label}: expected shape {expected}, got {array.shape}") from None
    return np.asarray(array, dtype=array.dtype if leaf.is_text else leaf.numpy_dtype, order="C")


def encode_texts(leaf: Leaf, value: Any, label: str) -> np.ndarray:
    """Texts as fixed-length UTF-8 bytes, 4 bytes per character of ``max_length`` (always enough)."""
    texts = np.asarray(value, dtype=object)
    flat = texts.reshape(-1)
    wrong = next((item for item in flat if not isinstance(item, str)), None)
    if wrong is not None:
        raise SpaceMismatchError(f"{label}: expected str values, got {type(wrong).__name__}")
    unicode = texts.astype(str) if flat.size else np.zeros(texts.shape, "<U1")
    max_length = leaf.numpy_dtype.itemsize // 4
    lengths = np.char.str_len(unicode)
    if flat.size and int(lengths.max()) > max_length:
        raise SpaceMismatchError(
            f"{label}: expected texts of at most {max_length} characters, got {int(lengths.max())}"
        )
    return np.char.encode(unicode, "utf-8").astype(f"S{leaf.numpy_dtype.itemsize}")


def decode_texts(raw: np.ndarray) -> np.ndarray:
    """Stored texts (fixed-length bytes, or variable-length ``bytes``/``str`` in foreign files) as unicode."""
    if raw.dtype.kind == "S":
        return np.char.decode(raw, "utf-8")
    decoded = [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in raw.reshape(-1)]
    return np.array(decoded, dtype=str).reshape(raw.shape) if decoded else np.zeros(raw.shape, "<U1")


def _is_sorted(index: np.ndarray) -> bool:
    return bool(np.all(index[1:] > index[:-1]))


def _blocks(rows: np.ndarray, gap_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocks ``[start, stop)`` covering sorted distinct ``rows``, merged across gaps of up to ``gap_rows``.

    Returns the starts, the stops, and each row's position in the blocks laid end to end.
    """
    breaks = np.flatnonzero(np.diff(rows) > gap_rows + 1) + 1
    first = np.concatenate(([0], breaks))
    starts = rows[first]
    stops = rows[np.append(breaks - 1, len(rows) - 1)] + 1
    offsets = np.cumsum(stops - starts) - (stops - starts)
    block_of_row = np.repeat(np.arange(len(starts)), np.diff(np.append(first, len(rows))))
    return starts, stops, rows - starts[block_of_row] + offsets[block_of_row]


def _transfer(dataset: Any, starts: np.ndarray, stops: np.ndarray, buffer: np.ndarray, *, write: bool) -> None:
    """Read (or write) the blocks ``[starts[i], stops[i])`` of ``dataset`` from (into) ``buffer`` end to end."""
    h5s = h5py_module().h5s
    identifier = dataset.id
    file_space = identifier.get_space()
    shape = buffer.shape[1:]
    origin = (0,) * len(shape)
    memory_type = identifier.get_type() if buffer.dtype.kind == "S" else None  # fixed strings: byte for byte
    position = 0
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        count = stop - start
        file_space.select_hyperslab((start, *origin), (count, *shape))
        part = buffer[position : position + count]
        memory_space = h5s.create_simple(part.shape)
        if write:
            identifier.write(memory_space, file_space, part, memory_type)
        else:
            identifier.read(memory_space, file_space, part, memory_type)
        position += count
