"""Where the rows of a :class:`~unibatch.storages.parquet.ParquetStorage` live, and the arithmetic over them.

A storage's rows are covered by disjoint *ranges* ``[start, stop)``: part files listed in
``parquet.json`` (:class:`Part`), or rows held in memory until the next flush (:class:`Segment`).
Pure functions find the range of each requested row, group a request by range without a Python
loop per row, and plan which rows a flush writes to which files.
"""

from __future__ import annotations

import os
import shutil
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unibatch.errors import FormatVersionError, SpaceMismatchError
from unibatch.storages._atomic import atomic_write_json, read_sidecar
from unibatch.storages._leaves import Leaf
from unibatch.storages._safe_paths import resolve_all_inside

SIDECAR = "parquet.json"
FORMAT_VERSION = 1
MAX_ROWS_PER_FILE = 16_384
TARGET_FILE_BYTES = 64 << 20
"""Default ``rows_per_file``: as many rows as fit in 64 MiB, at most 16,384."""
UNBOUNDED = np.iinfo(np.int64).max
"""``stop`` of the growable tail, whose end moves with every append."""


@dataclass(frozen=True)
class Part:
    """One committed part file holding rows ``[start, stop)``; ``file`` is relative to the storage directory."""

    start: int
    stop: int
    file: str

    @property
    def rows(self) -> int:
        return self.stop - self.start


def locate(starts: np.ndarray, stops: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The range holding each row, ``-1`` where no range does.

    Args:
        starts: ``int64[R]`` sorted range starts.
        stops: ``int64[R]`` range stops (``stops[i] <= starts[i + 1]``).
        rows: ``int64[B]`` row numbers.

    Returns:
        ``int64[B]`` range positions.

    >>> locate(np.array([0, 4]), np.array([4, 6]), np.array([5, 0, 7])).tolist()
    [1, 0, -1]
    """
    if not len(starts):
        return np.full(len(rows), -1, dtype=np.int64)
    found = np.searchsorted(starts, rows, side="right") - 1
    outside = (found < 0) | (rows >= stops[np.maximum(found, 0)])
    return np.where(outside, -1, found)


def group_positions(ranges: np.ndarray) -> list[tuple[int, np.ndarray | None]]:
    """Split a request by range: ``(range, positions in the request)``, ``None`` when it is all one range.

    >>> [(r, None if p is None else p.tolist()) for r, p in group_positions(np.array([1, 0, 1]))]
    [(0, [1]), (1, [0, 2])]
    """
    if not len(ranges) or ranges.min() == ranges.max():
        return [(int(ranges[0]) if len(ranges) else -1, None)]
    order = np.argsort(ranges, kind="stable")
    ordered = ranges[order]
    cuts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    bounds = [0, *cuts.tolist(), len(order)]
    return [(int(ordered[a]), order[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def cell(row: int, rows_per_file: int, capacity: int) -> tuple[int, int]:
    """The file-sized cell ``[start, stop)`` of a fixed-capacity storage that holds ``row``.

    >>> cell(9, 4, 10)
    (8, 10)
    """
    start = row - row % rows_per_file
    return start, min(start + rows_per_file, capacity)


def merge_start(parts: Sequence[Part], tail_start: int, length: int, rows_per_file: int) -> int:
    """First row a flush of the growable tail ``[tail_start, length)`` rewrites.

    A partial part file just before the rows to write is merged into them when it is not larger
    than they are. Each row is therefore rewritten O(log(rows_per_file / rows per flush)) times and
    only that many partial files exist, however small the flushes (a binary counter).

    >>> parts = [Part(0, 8, "a"), Part(8, 10, "b"), Part(10, 11, "c")]
    >>> merge_start(parts, 11, 12, 8), merge_start(parts, 11, 11, 8), merge_start(parts, 11, 14, 8)
    (8, 11, 8)
    """
    start = tail_start
    for part in reversed([p for p in parts if p.stop <= tail_start]):
        if part.stop != start or part.rows >= rows_per_file or part.rows > length - start:
            break
        start = part.start
    return start


def chunks(start: int, stop: int, rows_per_file: int) -> list[tuple[int, int]]:
    """``[start, stop)`` cut into consecutive files of at most ``rows_per_file`` rows.

    >>> chunks(3, 12, 4)
    [(3, 7), (7, 11), (11, 12)]
    """
    return [(a, min(a + rows_per_file, stop)) for a in range(start, stop, rows_per_file)]


# ---------------------------------------------------------------------- rows in memory
@dataclass
class Segment:
    """Rows ``[start, stop)`` held in memory until the next flush: one writable array per leaf."""

    start: int
    stop: int
    arrays: list[np.ndarray]

    @classmethod
    def zeros(cls, leaves: Sequence[Leaf], start: int, stop: int) -> Segment:
        return cls(start, stop, [np.zeros((stop - start, *leaf.shape), leaf.numpy_dtype) for leaf in leaves])

    def resize(self, stop: int) -> None:
        """Grow (zero-filled, doubling the allocation) or shrink to end at ``stop``."""
        rows, old = stop - self.start, self.stop - self.start
        if self.arrays and rows > len(self.arrays[0]):
            self.arrays = [_grown(array, max(rows, 2 * len(array))) for array in self.arrays]
        for array in self.arrays:
            array[old:rows] = 0
        self.stop = stop

    def rows(self) -> list[np.ndarray]:
        return [array[: self.stop - self.start] for array in self.arrays]


def _grown(array: np.ndarray, rows: int) -> np.ndarray:
    grown = np.zeros((rows, *array.shape[1:]), array.dtype)
    grown[: len(array)] = array
    return grown


class ColumnCache:
    """Decoded ``(file, leaf position) -> array`` of part files, least recently used out first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple[str, int]) -> np.ndarray | None:
        array = self._items.get(key)
        if array is not None:
            self._items.move_to_end(key)
        return array

    def put(self, key: tuple[str, int], array: np.ndarray) -> None:
        self._bytes += array.nbytes - (self._items[key].nbytes if key in self._items else 0)
        self._items[key] = array
        while self._bytes > self.max_bytes and len(self._items) > 1:
            self._bytes -= self._items.popitem(last=False)[1].nbytes

    def drop(self, file: str) -> None:
        """Forget the columns of a deleted file."""
        for key in [key for key in self._items if key[0] == file]:
            self._bytes -= self._items.pop(key).nbytes

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


# ---------------------------------------------------------------------- parquet.json and part files
def default_rows_per_file(leaves: Sequence[Leaf]) -> int:
    """As many rows as fit in ``TARGET_FILE_BYTES``, at most ``MAX_ROWS_PER_FILE``."""
    row_bytes = max(sum(leaf.row_bytes for leaf in leaves), 1)
    return int(min(MAX_ROWS_PER_FILE, max(TARGET_FILE_BYTES // row_bytes, 1)))


def leaf_records(columns: Sequence[str], leaves: Sequence[Leaf]) -> list[dict[str, Any]]:
    """The ``leaves`` entry of ``parquet.json``: column name, NumPy dtype string and shape of each leaf."""
    return [
        {"column": c, "dtype": leaf.numpy_dtype.str, "shape": list(leaf.shape)}
        for c, leaf in zip(columns, leaves, strict=True)
    ]


def write_sidecar(path: Path, sidecar: dict[str, Any]) -> None:
    """Replace ``path/parquet.json`` atomically: the commit point of a flush."""
    atomic_write_json(path / SIDECAR, {"format_version": FORMAT_VERSION, **sidecar})


def read_parquet_sidecar(path: Path) -> dict[str, Any]:
    """``path/parquet.json``, refusing newer format versions and files that lack a field."""
    sidecar = read_sidecar(path / SIDECAR, "parquet", FORMAT_VERSION)
    required = ("capacity", "length", "rows_per_file", "separator", "compression", "leaves", "parts", "next_serial")
    missing = [key for key in required if key not in sidecar]
    if missing:
        raise FormatVersionError(f"{path / SIDECAR} lacks {missing}; it was not written by ParquetStorage")
    parts = sidecar["parts"]
    if not isinstance(parts, list) or not all(isinstance(part, dict) for part in parts):
        raise FormatVersionError(f"{path / SIDECAR}: parts must be a list of {{'file', 'start', 'stop'}} objects")
    resolve_all_inside(path, [part.get("file") for part in parts], source=path / SIDECAR)
    return sidecar


def check_leaves(sidecar: dict[str, Any], columns: Sequence[str], leaves: Sequence[Leaf], path: Path) -> None:
    """Raise :class:`SpaceMismatchError` naming stored and expected leaves when they differ."""
    stored = [(leaf["column"], np.dtype(leaf["dtype"]).str, tuple(leaf["shape"])) for leaf in sidecar["leaves"]]
    expected = [(c, leaf.numpy_dtype.str, leaf.shape) for c, leaf in zip(columns, leaves, strict=True)]
    if stored != expected:
        raise SpaceMismatchError(f"{path} stores columns {stored}, but the space has {expected}")


def copy_immutable(source: Path, target: Path) -> None:
    """Hard-link a part file (it never changes once written), or copy and fsync it across file systems."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        fsync_file(target)


def fsync_file(path: Path) -> None:
    """Make a written file's bytes durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
