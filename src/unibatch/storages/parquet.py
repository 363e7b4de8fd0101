"""``ParquetStorage``: low-dimensional tabular data in Parquet part files, the LeRobot / Hugging Face format.

Layout of the storage directory::

    parquet.json         {"format_version", "capacity", "length", "rows_per_file", "separator",
                          "compression": {column: codec}, "leaves": [{"column", "dtype", "shape"}],
                          "parts": [{"file", "start", "stop"}], "next_serial"}
    part-000000.parquet  rows [start, stop) of every leaf, one row group, at most rows_per_file rows
    part-000001.parquet  ...

One column per leaf, named by its key path joined with ``separator`` (``obs.state``; a space
that is not a dict is the column ``data``): numbers and booleans as primitive columns,
multi-dimensional numbers as ``arrow.fixed_shape_tensor`` columns (booleans as nested
``fixed_size_list``), texts as strings, so ``pyarrow.parquet.read_table`` and other Parquet
readers see the data as it is.

Part files are immutable: every write goes to a new file (``part-<serial>.parquet``). Rows
written since the last :meth:`~ParquetStorage.flush` stay in memory (readable at once): the
growable tail, and whole copies of the part files (or, at fixed capacity, of the
``rows_per_file`` cells) whose rows were overwritten. ``flush`` writes those as new files,
then replaces ``parquet.json`` atomically (the commit point), then deletes the files it no
longer lists; a writer holding ``SPILL_FILES`` files' worth of unflushed rows flushes by
itself. A flush of the growable tail merges it with the partial files before it that are not
larger than it, so each row is rewritten O(log(rows_per_file / rows per flush)) times and
few partial files exist. Fixed-capacity slots never written read as zeros; their files are
written when a row of their cell is. Reads decode each column of a part file once (the file
memory-mapped, Arrow to NumPy without a copy for numbers) into a per-process cache of
``cache_bytes``, then gather with one ``np.take`` per (file, leaf). Uniform sampling over more
decoded data than the cache holds decodes files again on every batch: size the cache to the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from typing_extensions import Self

from unibatch.backends import ComputeBackend, get_backend_or_none
from unibatch.errors import SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import BinarySpace, BoxSpace, DictSpace, Space, TextSpace
from unibatch.spaces._dtypes import fits, scalar_fits
from unibatch.storages import _parquet_arrow as arrow
from unibatch.storages._atomic import fsync_directory
from unibatch.storages._base import PathLike, SpaceStorage, StorageIndex
from unibatch.storages._column import LeafColumnStorage
from unibatch.storages._directories import new_directory, parse_capacity, removes_on_failure
from unibatch.storages._leaves import Leaf, assemble, host_index, leaf_table, split_value, texts_to_objects
from unibatch.storages._parquet_layout import (
    SIDECAR,
    UNBOUNDED,
    ColumnCache,
    Part,
    Segment,
    cell,
    check_leaves,
    chunks,
    copy_immutable,
    default_rows_per_file,
    group_positions,
    leaf_records,
    locate,
    merge_start,
    read_parquet_sidecar,
    write_sidecar,
)
from unibatch.storages._registry import register_storage

DEFAULT_COMPRESSION = "zstd"
DEFAULT_CACHE_BYTES = 1 << 30
"""Decoded columns kept per process (least recently used files leave first)."""
SPILL_FILES = 4
"""A writer holding this many files' worth of unflushed rows flushes on its own (bounded memory)."""
READ_ATTEMPTS = 4
"""A reader whose part file was replaced by a writer re-reads ``parquet.json`` this many times at most."""


Source = Part | Segment


@register_storage("parquet")
class ParquetStorage(SpaceStorage):
    """Values of a space as Parquet part files, fixed or growable capacity (see the module docstring).

    Rows written since the last :meth:`flush` live in memory only: ``close`` does not flush, and
    a writable storage cannot be shared with other processes (open read-only copies instead).
    Use :meth:`create` and :meth:`load_from`; the constructor opens an existing directory
    (``sidecar`` describes files written by another tool, see :func:`open_parquet_storage`).
    """

    supports_columns = True
    is_persistent = True
    cache_filename: Path

    def __init__(
        self,
        single_instance_space: Space,
        path: PathLike,
        sidecar: dict[str, Any] | None = None,
        *,
        read_only: bool = True,
        foreign: bool = False,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        super().__init__(single_instance_space)
        self.cache_filename = Path(path)
        sidecar = read_parquet_sidecar(self.cache_filename) if sidecar is None else sidecar
        self.is_mutable = not read_only
        self.is_multiprocessing_safe = read_only
        self._foreign = foreign
        self._leaves = leaf_table(single_instance_space)
        self._separator = str(sidecar["separator"])
        self._columns = arrow.column_names(single_instance_space, self._separator)
        self._types = [arrow.arrow_type(leaf, c) for leaf, c in zip(self._leaves, self._columns, strict=True)]
        check_leaves(sidecar, self._columns, self._leaves, self.cache_filename)
        self.capacity = sidecar["capacity"]
        self._rows_per_file = int(sidecar["rows_per_file"])
        self._codecs: dict[str, arrow.Codec] = dict(sidecar["compression"])
        self._cache = ColumnCache(cache_bytes)
        self._segments: dict[int, Segment] = {}
        self._tail: Segment | None = None
        self._table: tuple[np.ndarray, np.ndarray, list[Source]] | None = None
        self._adopt(sidecar)

    def _adopt(self, sidecar: dict[str, Any]) -> None:
        """Take the committed parts and length of a sidecar as this storage's state."""
        self._parts = [Part(int(p["start"]), int(p["stop"]), str(p["file"])) for p in sidecar["parts"]]
        self._length = self._recorded_length = int(sidecar["length"])
        self._next_serial = int(sidecar["next_serial"])
        self._table = None

    # ------------------------------------------------------------------ construction
    @classmethod
    @removes_on_failure
    def create(
        cls,
        single_instance_space: Space,
        *args: Any,
        capacity: int | None,
        cache_path: PathLike | None = None,
        multiprocessing: bool = False,
        rows_per_file: int | None = None,
        compression: arrow.Codec | dict[str, arrow.Codec] = DEFAULT_COMPRESSION,
        separator: str = ".",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        **kwargs: Any,
    ) -> Self:
        """Create the directory ``cache_path`` with an empty storage (no part file yet).

        Args:
            single_instance_space: the space of one value (boxes, binaries, texts, in dicts and tuples).
            capacity: number of rows, or None for a growable storage.
            cache_path: the directory to create (must not exist or be empty).
            multiprocessing: must be False: unflushed rows live in this process.
            rows_per_file: most rows in a part file; None: as many as fit in 64 MiB, at most 16,384.
            compression: ``"zstd"``, ``"snappy"``, ``"lz4"``, ``"gzip"``, ``"brotli"``, None, or
                ``{column: codec}`` (unlisted columns get ``"zstd"``).
            separator: joins the keys of a leaf into its column name.
            cache_bytes: decoded columns kept in memory by this process (not stored).
            *args: refused (the signature is the reference's).
            **kwargs: refused (the signature is the reference's).
        """
        if args or kwargs:
            raise TypeError(f"ParquetStorage.create got unexpected arguments {args or ''} {sorted(kwargs)}")
        if cache_path is None:
            raise UnsupportedOperationError("ParquetStorage needs a cache_path (use MemoryStorage for memory)")
        _refuse_sharing(multiprocessing, read_only=False)
        capacity = parse_capacity(capacity)
        if rows_per_file is not None and rows_per_file <= 0:
            raise ValueError(f"rows_per_file must be positive or None, got {rows_per_file}")
        if not isinstance(separator, str) or not separator:
            raise ValueError(f"separator must be a non-empty string, got {separator!r}")
        leaves = leaf_table(single_instance_space)
        columns = arrow.column_names(single_instance_space, separator)
        for leaf, column in zip(leaves, columns, strict=True):
            arrow.arrow_type(leaf, column)
        sidecar = {
            "capacity": capacity,
            "length": 0 if capacity is None else capacity,
            "rows_per_file": rows_per_file or default_rows_per_file(leaves),
            "separator": separator,
            "compression": arrow.parse_compression(compression, columns, DEFAULT_COMPRESSION),
            "leaves": leaf_records(columns, leaves),
            "parts": [],
            "next_serial": 0,
        }
        path = new_directory(cache_path)
        write_sidecar(path, sidecar)
        return cls(single_instance_space, path, sidecar, read_only=False, cache_bytes=cache_bytes)

    @classmethod
    def load_from(
        cls,
        path: PathLike,
        single_instance_space: Space,
        *,
        capacity: int | None = None,
        read_only: bool = True,
        multiprocessing: bool = False,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        **kwargs: Any,
    ) -> Self:
        """Open the storage at ``path``; its leaves (and ``capacity``, if given) must match.

        A writable storage deletes part files that ``parquet.json`` does not list (left by a
        writer killed during a flush).
        """
        if kwargs:
            raise TypeError(f"ParquetStorage.load_from got unexpected arguments {sorted(kwargs)}")
        _refuse_sharing(multiprocessing, read_only)
        storage = cls(single_instance_space, path, read_only=read_only, cache_bytes=cache_bytes)
        if capacity is not None and storage.capacity != capacity:
            raise SpaceMismatchError(f"{path} holds capacity {storage.capacity}, expected {capacity}")
        if not read_only:
            storage._delete_unlisted_files()
        return storage

    @staticmethod
    def build_space_from_parquet_file(
        path: PathLike, *, backend: ComputeBackend | None = None, device: Any = None
    ) -> tuple[int, int, DictSpace]:
        """``(count, capacity, space)`` of a ``ParquetStorage`` or of Parquet files written by another tool.

        As the original: ``count`` and ``capacity`` are both the number of rows (committed rows
        of a ``ParquetStorage``), and ``space`` is :func:`infer_parquet_space`'s, on NumPy unless
        ``backend`` is given. An empty storage gives ``(0, 0, space)``.
        """
        if backend is None:
            from unibatch.backends import backend_from_name

            backend = backend_from_name("numpy")
        root, files = _parquet_files(Path(path))
        space = infer_parquet_space(path, backend, device=device)
        if (root / SIDECAR).exists() and Path(path).is_dir():
            count = int(read_parquet_sidecar(root)["length"])
        else:
            count = sum(arrow.count_rows(root / file) for file in files)
        return count, count, space

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickle as the path (a read-only storage: other processes reopen the same files)."""
        if self.is_mutable:
            raise UnsupportedOperationError(
                "a writable ParquetStorage holds unflushed rows in this process; flush it and pickle a read-only one"
            )
        return _reopen, (self.cache_filename, self.single_instance_space, self._foreign, self._cache.max_bytes)

    # ------------------------------------------------------------------ size
    def __len__(self) -> int:
        return self._length

    def _resize(self, length: int) -> None:
        self._check_writable("resize")
        tail = self._tail if self._tail is not None else Segment.zeros(self._leaves, self._length, self._length)
        if length < tail.start:
            tail = self._tail_ending_at(length)
        tail.resize(length)
        self._tail, self._length, self._table = tail, length, None
        self._segments = {start: s for start, s in self._segments.items() if start < tail.start}

    def _tail_ending_at(self, length: int) -> Segment:
        """A new tail for a storage cut to ``length``: rows ``[start, length)`` of the part holding row ``length``."""
        for part in self._parts:
            if part.start < length < part.stop:
                kept = [np.array(column[: length - part.start]) for column in self._part_rows(part)]
                return Segment(part.start, length, kept)
        return Segment.zeros(self._leaves, length, length)

    # ------------------------------------------------------------------ reads
    def _get(self, index: StorageIndex) -> Any:
        return assemble(self.single_instance_space, self._get_leaves(range(len(self._leaves)), index))

    def _get_leaves(self, positions: Sequence[int], index: StorageIndex) -> list[Any]:
        on_host = host_index(index)
        rows = self._rows(on_host)
        values = self._read(list(positions), rows)
        if not isinstance(on_host, (slice, np.ndarray)):
            values = [value[0] for value in values]
        return [self._to_backend(self._leaves[p], value) for p, value in zip(positions, values, strict=True)]

    def _rows(self, on_host: Any) -> np.ndarray:
        """Requested rows as ``int64[B]``; a read-only storage first picks up rows committed since it opened."""
        if isinstance(on_host, slice):
            stop = self._length if on_host.stop is None else on_host.stop
            rows = np.arange(on_host.start or 0, stop, dtype=np.int64)
        else:
            rows = np.asarray(on_host, dtype=np.int64).reshape(-1)
        if not self.is_mutable and not self._foreign and rows.size and int(rows.max()) >= self._length:
            self.refresh()
        return rows

    def _read(self, positions: list[int], rows: np.ndarray) -> list[np.ndarray]:
        """Gather, re-reading ``parquet.json`` when a writer replaced a part file this reader still lists."""
        attempt = 1
        while True:
            try:
                return self._gather(positions, rows)
            except FileNotFoundError:
                if self.is_mutable or self._foreign or attempt >= READ_ATTEMPTS:
                    raise
                attempt += 1
                self.refresh()

    def _gather(self, positions: list[int], rows: np.ndarray) -> list[np.ndarray]:
        """One ``np.take`` per (range, leaf), scattered into the request order; rows no range holds read as zeros."""
        starts, stops, sources = self._sources()
        if len(sources) == 1 and starts[0] == 0 and stops[0] >= self._length:  # one file holds every row
            return [np.take(column, rows, axis=0) for column in self._source_rows(sources[0], positions)]
        ranges = locate(starts, stops, rows)
        groups = group_positions(ranges)
        if len(groups) == 1 and groups[0][0] >= 0:
            found = groups[0][0]
            local = rows - starts[found]
            return [np.take(column, local, axis=0) for column in self._source_rows(sources[found], positions)]
        leaves = [self._leaves[p] for p in positions]
        out = [np.zeros((len(rows), *leaf.shape), leaf.numpy_dtype) for leaf in leaves]
        for found, where in groups:
            if found >= 0:
                local = rows[where] - starts[found]
                for target, column in zip(out, self._source_rows(sources[found], positions), strict=True):
                    target[where] = np.take(column, local, axis=0)
        return out

    def _sources(self) -> tuple[np.ndarray, np.ndarray, list[Source]]:
        """Disjoint ranges holding the current rows, sorted: unflushed segments, the tail, and the parts they leave."""
        if self._table is None:
            tail_start = self._tail.start if self._tail is not None else UNBOUNDED
            visible = [p for p in self._parts if p.start not in self._segments and p.start < tail_start]
            sources: list[Source] = sorted([*visible, *self._segments.values()], key=lambda s: s.start)
            stops = [s.stop for s in sources]
            if self._tail is not None:
                sources.append(self._tail)
                stops.append(UNBOUNDED)  # the tail's end moves with every append
            starts = np.array([s.start for s in sources], dtype=np.int64)
            self._table = (starts, np.array(stops, dtype=np.int64), sources)
        return self._table

    def _source_rows(self, source: Source, positions: list[int]) -> list[np.ndarray]:
        if isinstance(source, Segment):
            return [source.arrays[p] for p in positions]
        return self._part_columns(source, positions)

    def _part_columns(self, part: Part, positions: list[int]) -> list[np.ndarray]:
        """Columns of a part file, decoding the ones not cached with one read of the file."""
        found: dict[int, np.ndarray] = {}
        missing = []
        for p in positions:
            cached = self._cache.get((part.file, p))
            if cached is None:
                missing.append(p)
            else:
                found[p] = cached
        if missing:
            columns = [self._columns[p] for p in missing]
            leaves = [self._leaves[p] for p in missing]
            arrays = arrow.read_part(self.cache_filename / part.file, columns, leaves, part.rows)
            for p, array in zip(missing, arrays, strict=True):
                found[p] = array
                self._cache.put((part.file, p), array)
        return [found[p] for p in positions]

    def _part_rows(self, part: Part) -> list[np.ndarray]:
        """Current rows of a part: its unflushed copy if it has one, else the file."""
        segment = self._segments.get(part.start)
        return segment.rows() if segment is not None else self._part_columns(part, list(range(len(self._leaves))))

    def _to_backend(self, leaf: Leaf, value: np.ndarray) -> Any:
        if leaf.is_text:
            return texts_to_objects(value)
        return self.backend.from_numpy(value, device=self.device)

    def refresh(self) -> None:
        """Re-read ``parquet.json`` (read-only storages): rows and files committed by a writer since."""
        if self.is_mutable or self._foreign:
            return  # a writer sees its own rows; a foreign file is not written by unibatch
        self._adopt(read_parquet_sidecar(self.cache_filename))

    # ------------------------------------------------------------------ writes
    def _set(self, index: StorageIndex, value: Any) -> None:
        self._set_leaves(range(len(self._leaves)), index, split_value(self.single_instance_space, value))

    def set_leaves(self, index: int | slice, leaves: Sequence[Any]) -> None:
        self._set_leaves(range(len(self._leaves)), index, list(leaves))

    def _set_leaves(self, positions: Sequence[int], index: StorageIndex, values: list[Any]) -> None:
        """Validate every value, bring the rows' ranges into memory, then write (nothing changes on an error)."""
        self._check_writable("set")
        rows = self._rows(host_index(index))
        arrays = [self._prepare(p, v, len(rows)) for p, v in zip(positions, values, strict=True)]
        self._hold_in_memory(rows)
        starts, stops, sources = self._sources()
        for found, where in group_positions(locate(starts, stops, rows)):
            segment = cast(Segment, sources[found])  # every row is in memory now
            local = rows - segment.start if where is None else rows[where] - segment.start
            for p, array in zip(positions, arrays, strict=True):
                segment.arrays[p][local] = array if where is None else array[where]
        if self._pending_rows() >= SPILL_FILES * self._rows_per_file:
            self.flush()

    def _prepare(self, position: int, value: Any, rows: int) -> np.ndarray:
        """``value`` as NumPy ``(rows, *leaf.shape)``; raises SpaceMismatchError naming the column otherwise."""
        leaf, column = self._leaves[position], self._columns[position]
        backend = get_backend_or_none(value)
        array = np.asarray(backend.to_numpy(value) if backend is not None else value)
        if leaf.is_text:
            array, longest = array.astype(str), cast(TextSpace, leaf.space).max_length
            if array.size and int(np.char.str_len(array).max()) > longest:
                raise SpaceMismatchError(f"column {column!r}: expected texts of at most {longest} characters")
        elif not (
            scalar_fits(value, leaf.numpy_dtype)
            if isinstance(value, (bool, int, float, np.generic))
            else fits(array.dtype, leaf.numpy_dtype)
        ):
            raise SpaceMismatchError(f"column {column!r}: expected dtype {leaf.numpy_dtype}, got {array.dtype}")
        try:
            return np.broadcast_to(array, (rows, *leaf.shape))
        except ValueError:
            raise SpaceMismatchError(
                f"column {column!r}: expected shape {(rows, *leaf.shape)} or {leaf.shape}, got {array.shape}"
            ) from None

    def _hold_in_memory(self, rows: np.ndarray) -> None:
        """Copy into memory the part files (or zero cells, at fixed capacity) holding ``rows``."""
        starts, stops, sources = self._sources()
        ranges = locate(starts, stops, rows)
        for found in np.unique(ranges).tolist():
            source = sources[found] if found >= 0 else None
            if isinstance(source, Part):
                self._add_segment(Segment(source.start, source.stop, [np.array(c) for c in self._part_rows(source)]))
        missing = rows[ranges < 0]
        if missing.size and self.capacity is not None:
            for row in np.unique(missing - missing % self._rows_per_file).tolist():
                self._add_segment(Segment.zeros(self._leaves, *cell(row, self._rows_per_file, self.capacity)))

    def _add_segment(self, segment: Segment) -> None:
        self._segments[segment.start] = segment
        self._table = None

    def _pending_rows(self) -> int:
        tail = 0 if self._tail is None else self._tail.stop - self._tail.start
        return tail + sum(s.stop - s.start for s in self._segments.values())

    def get_column(self, nested_keys: Sequence[str]) -> SpaceStorage:
        return LeafColumnStorage(self, nested_keys)

    # ------------------------------------------------------------------ persistence
    def flush(self) -> None:
        """Write unflushed rows as new part files, commit ``parquet.json``, then delete replaced files."""
        if not self.is_mutable or not (
            self._segments or self._tail is not None or self._length != self._recorded_length
        ):
            return
        tail_from, writes = self._tail_writes()
        writes += [(s.start, s.stop, s.rows()) for s in self._segments.values() if s.start < tail_from]
        written = [self._write_file(start, stop, arrays) for start, stop, arrays in writes]
        fsync_directory(self.cache_filename)
        kept = [p for p in self._parts if p.start not in self._segments and p.start < tail_from]
        parts = sorted(kept + written, key=lambda p: p.start)
        write_sidecar(self.cache_filename, self._sidecar(parts, self._length))
        for part in set(self._parts) - set(parts):
            (self.cache_filename / part.file).unlink(missing_ok=True)
            self._cache.drop(part.file)
        self._segments, self._tail = {}, None
        self._parts, self._recorded_length, self._table = parts, self._length, None

    def _tail_writes(self) -> tuple[int, list[tuple[int, int, list[np.ndarray]]]]:
        """First row a flush of the growable tail rewrites, and its files: the tail and the partial files it absorbs."""
        if self._tail is None:
            return UNBOUNDED, []
        before = [p for p in self._parts if p.stop <= self._tail.start]
        start = merge_start(before, self._tail.start, self._length, self._rows_per_file)
        pieces = [self._part_rows(p) for p in before if p.start >= start] + [self._tail.rows()]
        columns = pieces[0] if len(pieces) == 1 else [np.concatenate(leaf) for leaf in zip(*pieces, strict=True)]
        files = chunks(start, self._length, self._rows_per_file)
        return start, [(a, b, [c[a - start : b - start] for c in columns]) for a, b in files]

    def _write_file(self, start: int, stop: int, arrays: list[np.ndarray]) -> Part:
        """Write rows ``[start, stop)`` to a new part file and keep their columns cached (read-only)."""
        name = f"part-{self._next_serial:06d}.parquet"
        self._next_serial += 1
        arrow.write_part(self.cache_filename / name, self._columns, self._types, arrays, self._codecs)
        for position, array in enumerate(arrays):
            view = array.view()
            view.flags.writeable = False
            self._cache.put((name, position), view)
        return Part(start, stop, name)

    def _sidecar(self, parts: list[Part], length: int) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "length": length,
            "rows_per_file": self._rows_per_file,
            "separator": self._separator,
            "compression": self._codecs,
            "leaves": leaf_records(self._columns, self._leaves),
            "parts": [{"file": p.file, "start": p.start, "stop": p.stop} for p in parts],
            "next_serial": self._next_serial,
        }

    def _delete_unlisted_files(self) -> None:
        listed = {p.file for p in self._parts}
        for path in self.cache_filename.glob("part-*.parquet"):
            if path.name not in listed:
                path.unlink(missing_ok=True)

    def dumps(self, path: PathLike) -> None:
        """Flush in place, or write a complete copy to the directory ``path`` (part files hard-linked when possible)."""
        self.flush()
        target = Path(path)
        if target.resolve() == self.cache_filename.resolve():
            return
        target.mkdir(parents=True, exist_ok=True)
        for part in self._parts:
            copy_immutable(self.cache_filename / part.file, target / part.file)
        fsync_directory(target)
        write_sidecar(target, self._sidecar(self._parts, self._recorded_length))

    def close(self) -> None:
        """Drop cached columns and unflushed rows (call :meth:`flush` first to keep them); idempotent."""
        super().close()
        self._cache.clear()
        self._segments, self._tail, self._table = {}, None, None


# ---------------------------------------------------------------------- helpers
def _refuse_sharing(multiprocessing: bool, read_only: bool) -> None:
    if multiprocessing and not read_only:
        raise UnsupportedOperationError(
            "a writable ParquetStorage keeps unflushed rows in one process; share read-only copies instead"
        )


def _reopen(path: Path, space: Space, foreign: bool, cache_bytes: int) -> ParquetStorage:
    if foreign:
        return _open_files(path, space, cache_bytes)
    return ParquetStorage.load_from(path, space, cache_bytes=cache_bytes)


# ---------------------------------------------------------------------- Parquet written by other tools
def _parquet_files(path: Path) -> tuple[Path, list[str]]:
    """The root directory and the sorted relative paths of a Parquet file or of every one under a directory."""
    if path.is_file():
        return path.parent, [path.name]
    if (path / SIDECAR).exists():  # a ParquetStorage: only its committed files
        return path, [str(p["file"]) for p in read_parquet_sidecar(path)["parts"]]
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"{path} holds no .parquet file")
    return path, files


def _open_files(path: PathLike, space: Space, cache_bytes: int = DEFAULT_CACHE_BYTES) -> ParquetStorage:
    """A read-only, fixed-capacity storage over Parquet files of another tool, columns named by ``space``'s keys."""
    root, files = _parquet_files(Path(path))
    parts: list[dict[str, Any]] = []
    start = 0
    for file in files:
        rows = arrow.count_rows(root / file)
        parts.append({"file": file, "start": start, "stop": start + rows})
        start += rows
    leaves = leaf_table(space)
    columns = arrow.column_names(space, ".")
    sidecar = {
        "capacity": start,
        "length": start,
        "rows_per_file": max([p["stop"] - p["start"] for p in parts] + [1]),
        "separator": ".",
        "compression": dict.fromkeys(columns),
        "leaves": leaf_records(columns, leaves),
        "parts": parts,
        "next_serial": 0,
    }
    return ParquetStorage(space, root, sidecar, read_only=True, foreign=True, cache_bytes=cache_bytes)


def infer_parquet_space(
    path: PathLike, backend: ComputeBackend, *, device: Any = None, columns: Sequence[str] | None = None
) -> DictSpace:
    """The flat ``DictSpace`` (one key per column) of a Parquet file or a directory of them.

    A ``ParquetStorage`` with no part file yet (an empty growable one) has its space read from
    the leaves ``parquet.json`` records: unbounded boxes, binaries and texts of the stored length.

    Args:
        path: a ``.parquet`` file, or a directory searched recursively.
        backend: backend of the space.
        device: device of the space.
        columns: the columns to include (default: all, which must all have a supported type).

    Raises:
        FileNotFoundError: ``path`` holds no Parquet file and no ``parquet.json``.
        SpaceMismatchError: a column in ``columns`` is not stored.
    """
    root, files = _parquet_files(Path(path))
    if not files:  # a ParquetStorage without rows: its sidecar describes the columns
        return _space_of_leaves(read_parquet_sidecar(root)["leaves"], backend, device, columns, root)
    return arrow.infer_space([root / f for f in files], backend, device, columns)


def _space_of_leaves(
    records: Sequence[dict[str, Any]], backend: ComputeBackend, device: Any, columns: Sequence[str] | None, root: Path
) -> DictSpace:
    """The flat space of the ``leaves`` of ``parquet.json`` (column, NumPy dtype string, shape)."""
    by_column = {record["column"]: record for record in records}
    names = list(by_column) if columns is None else list(columns)
    unknown = [name for name in names if name not in by_column]
    if unknown:
        raise SpaceMismatchError(f"{root / SIDECAR} has no column {unknown}; its columns are {list(by_column)}")
    spaces: dict[str, Space] = {}
    for name in names:
        dtype, shape = np.dtype(by_column[name]["dtype"]), tuple(by_column[name]["shape"])
        if dtype.kind == "U":
            spaces[name] = TextSpace(backend, dtype.itemsize // 4, device=device)
        elif dtype.kind == "b":
            spaces[name] = BinarySpace(backend, shape, device=device)
        else:
            spaces[name] = BoxSpace(backend, -np.inf, np.inf, dtype, device=device, shape=shape)
    return DictSpace(backend, spaces, device=device)


def open_parquet_storage(
    path: PathLike, backend: ComputeBackend, *, device: Any = None, columns: Sequence[str] | None = None
) -> ParquetStorage:
    """Parquet data written by another tool (LeRobot, Hugging Face datasets, pandas) as a read-only storage.

    Files are read in sorted path order; each row is one sample whose keys are column names.
    :func:`unibatch.integrations.foreign_files.open_parquet_as_replay_buffer` wraps it in a buffer.

    Args:
        path: a ``.parquet`` file, or a directory searched recursively.
        backend: backend of the values read.
        device: device of the values read.
        columns: the columns to include (default: all; see :func:`infer_parquet_space`).
    """
    space = infer_parquet_space(path, backend, device=device, columns=columns)
    return _open_files(path, space)
