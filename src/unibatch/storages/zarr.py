"""``ZarrStorage``: chunked, compressed Zarr v3 arrays, one per leaf, on local disk or any fsspec URL.

Layout of the storage, a Zarr v3 group at ``cache_path`` (a directory, a ``file://`` URL, or an
fsspec URL such as ``memory://x`` or ``s3://bucket/x``)::

    zarr.json            group metadata; attributes["unibatch"] = {"format_version", "capacity",
                         "length", "options": {"chunk_rows": {leaf: rows}, "compression",
                         "compression_level", "initial_rows"}, "leaves": [{"name", "dtype", "shape"}]}
    action/zarr.json     one array per leaf: shape (rows, *leaf_shape), chunks (chunk_rows, *leaf_shape)
    action/c/0/0         one compressed chunk of chunk_rows rows (all-zero chunks are not written)
    obs/zarr.json        nested dict keys (and tuple positions) are nested groups
    obs/image/...
    note/...             text leaves: variable-length UTF-8 strings
    data/...             the array of a space that is itself a leaf

A growable storage allocates rows ahead (doubling; a resize rewrites only the arrays'
``zarr.json``) and ``flush()`` records its ``length`` in the attributes: rows past the recorded
length are never visible to a reopened storage.

Crash safety and readers: local paths and ``file://`` URLs use zarr's ``LocalStore``, which
writes every chunk and metadata document to a temporary file and renames it into place, so a
concurrent reader, or a reopen after the writer is killed at any point, sees each chunk whole,
old or new (a killed writer may leave ``*.partial`` files, which zarr ignores). A write to part
of a chunk re-encodes the whole chunk with its other rows unchanged, so committed neighbours of
an overwritten row never tear. ``flush()`` fsyncs the chunks and metadata written since the
last flush, then replaces the attributes. Object stores (S3, GCS) and ``memory://`` replace each
object whole; other fsspec file systems may write in place and are not crash-safe.
``memory://`` lives in one process, so it is not multiprocessing safe.

Reads and writes: an index array is one orthogonal selection per leaf (zarr groups the rows by
chunk, decodes each chunk once and returns rows in request order, duplicates included). A chunk
is decoded whole and zarr spends about 0.3 ms per chunk on top of the decode, so a batch of B
random rows costs about B chunk reads once the storage holds many more than B chunks. Small
chunks make those reads cheap; large chunks make writes cheap (a write of part of a chunk
re-encodes all of it) and suit object stores. The default, at most 256 KiB of raw rows per
chunk in a power of two of rows (8 rows of a 3x84x84 uint8 image, 65536 scalars), sits between;
set ``chunk_rows`` per leaf for another trade. The storage pickles as its location and options
and reopens lazily, also after a fork.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from typing_extensions import Self

from unibatch.backends import get_backend_or_none
from unibatch.errors import CorruptDataError, FormatVersionError, SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import Space
from unibatch.storages import _zarr_store as stores
from unibatch.storages._atomic import check_format_version
from unibatch.storages._base import PathLike, SpaceStorage, StorageIndex
from unibatch.storages._column import LeafColumnStorage
from unibatch.storages._directories import parse_capacity, removes_on_failure
from unibatch.storages._leaves import Leaf, assemble, host_index, leaf_table, split_value, texts_to_objects
from unibatch.storages._registry import register_storage
from unibatch.storages._safe_paths import resolve_inside

FORMAT_VERSION = 1
ATTRIBUTE = "unibatch"
DEFAULT_INITIAL_ROWS = 1024
EMPTY_CHUNKS = "empty_chunks_written"
"""Option recorded by storages whose arrays store every chunk written, zeros too, so a missing
chunk inside the written rows is a lost chunk (``verify`` reports it), not rows of zeros."""
COPY_BLOCK_BYTES = 64 << 20
"""``dumps`` to another location copies each leaf in blocks of about this many raw bytes."""


@register_storage("zarr")
class ZarrStorage(SpaceStorage):
    """Values of a space in a Zarr v3 group, one chunked and compressed array per leaf.

    Use :meth:`create` and :meth:`load_from`; the constructor opens an existing group.
    ``cache_filename`` is a ``Path`` for local storages and the URL string otherwise.
    """

    supports_columns = True
    has_expensive_reads = True
    is_persistent = True

    def __init__(
        self,
        single_instance_space: Space,
        location: str,
        *,
        read_only: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        local_cache: stores.LocalCache | None = None,
    ) -> None:
        super().__init__(single_instance_space)
        self._location = location
        self._storage_options = dict(storage_options or {})
        self._local_cache = local_cache
        self._local_root = stores.local_path(location)
        self.cache_filename = self._local_root if self._local_root is not None else location
        self.is_mutable = not read_only
        self.is_multiprocessing_safe = stores.protocol(location) != "memory"
        self._leaves = leaf_table(single_instance_space)
        self._dirty: set[str] = set()  # local store keys written since the last flush
        self._group: Any = None
        self._arrays: list[Any] | None = None
        self._pid: int | None = None  # the process that opened the arrays
        group = _open_group(location, read_only, self._storage_options, local_cache)
        document = _read_document(group, location)
        _check_leaves(document, self._leaves, location)
        self.capacity, self._recorded_length = _parse_sizes(document, location)
        self._options = document["options"]
        self._length = self._recorded_length
        self._rows = _check_arrays(self._attach(group), self._leaves, self.capacity, self._length, location)

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
        chunk_rows: int | Mapping[str, int] | None = None,
        compression: str | None = "zstd",
        compression_level: int | None = None,
        initial_rows: int = DEFAULT_INITIAL_ROWS,
        storage_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Create an empty Zarr v3 group at ``cache_path`` with one array per leaf.

        Args:
            single_instance_space: the space of one value.
            capacity: number of rows, or None for a growable storage.
            cache_path: a directory (must not exist or be empty), a ``file://`` or an fsspec URL.
            multiprocessing: accepted for API compatibility; the group is shared through its location.
            chunk_rows: rows per chunk: an int for every leaf, or a dict keyed by leaf path
                (``"obs/image"``) with ``"*"`` for the others; None: at most 256 KiB per chunk.
            compression: ``"zstd"``, ``"blosc"`` (lz4 with byte shuffle) or None.
            compression_level: zstd 1-22 (default 3) or blosc 0-9 (default 5).
            initial_rows: rows allocated at first for a growable storage (doubles as needed).
            storage_options: fsspec options for a URL (credentials...); never written to the store.
            *args: refused (the signature is the reference's).
            **kwargs: refused (the signature is the reference's).
        """
        if args or kwargs:
            raise TypeError(f"ZarrStorage.create got unexpected arguments {args or ''} {sorted(kwargs)}")
        if cache_path is None:
            raise UnsupportedOperationError("ZarrStorage needs a cache_path (a directory or an fsspec URL)")
        capacity = parse_capacity(capacity)
        if isinstance(initial_rows, bool) or not isinstance(initial_rows, int) or initial_rows < 1:
            raise ValueError(f"initial_rows must be a positive int, got {initial_rows!r}")
        leaves = leaf_table(single_instance_space)
        stores.check_leaves(leaves)
        compression, compression_level = stores.parse_compression(compression, compression_level)
        options = {
            "chunk_rows": stores.parse_chunk_rows(chunk_rows, leaves, capacity),
            "compression": compression,
            "compression_level": compression_level,
            "initial_rows": initial_rows,
            EMPTY_CHUNKS: True,
        }
        location = os.fspath(cache_path)
        rows = capacity if capacity is not None else initial_rows
        _write_group(location, storage_options, _document(capacity, 0, options, leaves), leaves, rows, overwrite=False)
        _fsync_location(location)
        return cls(single_instance_space, location, read_only=False, storage_options=storage_options)

    @classmethod
    def load_from(
        cls,
        path: PathLike,
        single_instance_space: Space,
        *,
        capacity: int | None = None,
        read_only: bool = True,
        multiprocessing: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        local_cache: PathLike | None = None,
        local_cache_bytes: int | None = None,
        **kwargs: Any,
    ) -> Self:
        """Open the storage at ``path`` (a directory or URL); its leaves must match ``single_instance_space``.

        ``local_cache``: a directory where a read-only storage keeps every object it reads (zarr's
        ``CacheStore``; at most ``local_cache_bytes``), for data on an object store that no longer
        changes, such as committed episodes. Cached objects are never refreshed.
        """
        if kwargs:
            raise TypeError(f"ZarrStorage.load_from got unexpected arguments {sorted(kwargs)}")
        cache = None if local_cache is None else stores.LocalCache(os.fspath(local_cache), local_cache_bytes)
        storage = cls(
            single_instance_space,
            os.fspath(path),
            read_only=read_only,
            storage_options=storage_options,
            local_cache=cache,
        )
        if capacity is not None and storage.capacity != capacity:
            raise SpaceMismatchError(f"{path} holds capacity {storage.capacity}, expected {capacity}")
        return storage

    # ------------------------------------------------------------------ arrays
    def _open(self) -> list[Any]:
        """The arrays of the leaves, opened again in a new process (after unpickling or a fork)."""
        if self._arrays is None or self._pid != os.getpid():
            return self._attach(
                _open_group(self._location, not self.is_mutable, self._storage_options, self._local_cache)
            )
        return self._arrays

    def _attach(self, group: Any) -> list[Any]:
        arrays = [_child_array(group, leaf, self._location) for leaf in self._leaves]
        self._group, self._arrays, self._pid = group, arrays, os.getpid()
        return arrays

    def _refresh_rows(self) -> None:
        """Re-read the arrays' shapes (another process may have grown them)."""
        self._arrays = None
        self._rows = _allocated_rows(self._open())

    def _arrays_covering(self, rows: int) -> list[Any]:
        """The arrays, re-read when a row past our allocation is asked for."""
        if rows > self._rows:
            self._refresh_rows()
            if rows > self._rows:
                raise IndexError(f"row {rows - 1} is beyond the {self._rows} rows of {self._location}")
        return self._open()

    def __len__(self) -> int:
        return self._length

    def _resize(self, length: int) -> None:
        if length > self._rows:
            self._refresh_rows()  # never shrink arrays another process has grown
        if length > self._rows:
            self._grow(max(length, 2 * self._rows))
        self._length = length

    def _grow(self, rows: int) -> None:
        for array in self._open():
            if array.shape[0] < rows:
                array.resize((rows, *array.shape[1:]))
                if self._local_root is not None:
                    self._dirty.add(f"{array.path}/zarr.json")
        self._rows = rows

    # ------------------------------------------------------------------ data
    def _get(self, index: StorageIndex) -> Any:
        return assemble(self.single_instance_space, self._get_leaves(range(len(self._leaves)), index))

    def _get_leaves(self, positions: Sequence[int], index: StorageIndex) -> list[Any]:
        on_host = host_index(index)
        arrays = self._arrays_covering(_rows_needed(on_host, self._length))
        return [self._to_backend(self._leaves[position], _read(arrays[position], on_host)) for position in positions]

    def _to_backend(self, leaf: Leaf, value: np.ndarray) -> Any:
        if leaf.is_text:
            return texts_to_objects(value)
        return self.backend.from_numpy(value, device=self.device)

    def _set(self, index: StorageIndex, value: Any) -> None:
        self._check_writable("set")
        self._set_leaves(range(len(self._leaves)), index, split_value(self.single_instance_space, value))

    def _set_leaves(self, positions: Sequence[int], index: StorageIndex, values: list[Any]) -> None:
        """Check and convert every leaf value first, then write: a bad value leaves the store unchanged."""
        on_host = host_index(index)
        rows = None if not isinstance(on_host, (slice, np.ndarray)) else _selection_rows(on_host, self._length)
        prepared = [_prepare(self._leaves[p], value, rows) for p, value in zip(positions, values, strict=True)]
        if isinstance(on_host, np.ndarray):
            on_host, prepared = _last_writes(on_host, prepared)
        arrays = self._arrays_covering(_rows_needed(on_host, self._length))
        for position, leaf_value in zip(positions, prepared, strict=True):
            _write(arrays[position], on_host, leaf_value)
            self._mark_chunks_written(arrays[position], on_host)

    def get_column(self, nested_keys: Sequence[str]) -> SpaceStorage:
        return LeafColumnStorage(self, nested_keys)

    # ------------------------------------------------------------------ persistence
    def _mark_chunks_written(self, array: Any, index: Any) -> None:
        """Remember the chunk files a local write replaced, for the next flush to fsync."""
        if self._local_root is None:
            return
        rows = array.chunks[0]
        if isinstance(index, slice):
            chunks: Any = range((index.start or 0) // rows, (_rows_needed(index, self._length) - 1) // rows + 1)
        elif isinstance(index, np.ndarray):
            chunks = np.unique(index // rows).tolist()
        else:
            chunks = (index // rows,)
        tail = (0,) * (array.ndim - 1)
        self._dirty.update(f"{array.path}/{array.metadata.encode_chunk_key((int(c), *tail))}" for c in chunks)

    def flush(self) -> None:
        """Fsync the chunks and metadata written since the last flush (local), then record the length."""
        if not self.is_mutable:
            return
        if self._local_root is not None:
            stores.fsync_files(self._local_root, self._dirty)
            self._dirty.clear()
        if self._length != self._recorded_length:
            self._open()
            self._group.update_attributes({ATTRIBUTE: self._document(self._length)})
            if self._local_root is not None:
                stores.fsync_files(self._local_root, ["zarr.json"])
            self._recorded_length = self._length

    def _document(self, length: int) -> dict[str, Any]:
        return _document(self.capacity, length, self._options, self._leaves)

    def dumps(self, path: PathLike) -> None:
        """Flush in place, or write a complete copy to ``path`` (a directory or URL)."""
        self.flush()
        target = os.fspath(path)
        if stores.same_location(target, self._location):
            return
        same_protocol = stores.protocol(target) == stores.protocol(self._location)
        options = self._storage_options if same_protocol else None
        rows = len(self)
        overwrite = _holds_storage(target, options)
        copies = _write_group(target, options, self._document(rows), self._leaves, rows, overwrite=overwrite)
        for leaf, source, copy in zip(self._leaves, self._open(), copies, strict=True):
            block = max(COPY_BLOCK_BYTES // max(leaf.row_bytes, 1) // copy.chunks[0], 1) * copy.chunks[0]
            for start in range(0, rows, block):
                copy[start : start + block] = source[start : min(start + block, rows)]
        _fsync_location(target)

    def check_stored(self, slots: np.ndarray) -> list[str]:
        """The chunks of ``slots`` lost from a local group (one line each); remote groups are not listed.

        Only storages created with every chunk stored (:data:`EMPTY_CHUNKS`) are checked: in older
        ones a chunk of zeros was never written.
        """
        if self._local_root is None or not self._options.get(EMPTY_CHUNKS) or not slots.size:
            return []
        return [f"chunk {key} is missing" for key in missing_chunks(self._open(), self._local_root, slots)]

    def close(self) -> None:
        super().close()
        self._group = None
        self._arrays = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_group=None, _arrays=None, _pid=None, _dirty=set())
        return state


# ---------------------------------------------------------------------- the group
def _document(capacity: int | None, length: int, options: dict[str, Any], leaves: list[Leaf]) -> dict[str, Any]:
    """The ``unibatch`` attribute: everything needed to reopen the storage without options."""
    return {
        "format_version": FORMAT_VERSION,
        "capacity": capacity,
        "length": length if capacity is None else capacity,
        "options": options,
        "leaves": [{"name": leaf.name, "dtype": leaf.numpy_dtype.str, "shape": list(leaf.shape)} for leaf in leaves],
    }


def _write_group(
    location: str,
    storage_options: Mapping[str, Any] | None,
    document: dict[str, Any],
    leaves: list[Leaf],
    rows: int,
    *,
    overwrite: bool,
) -> list[Any]:
    """Create the group (attributes ``document``) and an empty array of ``rows`` rows per leaf; return the arrays."""
    zarr = stores.zarr_module()
    store = stores.open_store(location, False, storage_options)
    try:
        group = zarr.open_group(store, mode="w" if overwrite else "w-", attributes={ATTRIBUTE: document})
    except FileExistsError as error:
        raise FileExistsError(f"{location} already exists and is not empty") from error
    options = document["options"]
    codecs = stores.compressors(options["compression"], options["compression_level"])
    return [
        group.create_array(
            stores.array_name(leaf),
            shape=(rows, *leaf.shape),
            chunks=(options["chunk_rows"][leaf.name], *(max(size, 1) for size in leaf.shape)),
            dtype=str if leaf.is_text else leaf.numpy_dtype,
            compressors=codecs,
            config={"write_empty_chunks": True},
        )
        for leaf in leaves
    ]


def _fsync_location(location: str) -> None:
    """Make a freshly written local group durable (object stores are when a write returns)."""
    local = stores.local_path(location)
    if local is not None:
        stores.fsync_tree(local)


def _open_group(
    location: str, read_only: bool, storage_options: Mapping[str, Any], local_cache: stores.LocalCache | None = None
) -> Any:
    zarr = stores.zarr_module()
    try:
        store = stores.open_store(location, read_only, storage_options, local_cache)
        return zarr.open_group(store, mode="r" if read_only else "r+")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{location} is not a zarr storage: no zarr group there") from error


def _holds_storage(location: str, storage_options: Mapping[str, Any] | None) -> bool:
    """Whether ``location`` already holds a ``ZarrStorage`` (which ``dumps`` may replace)."""
    try:
        group = _open_group(location, True, storage_options or {})
    except (FileNotFoundError, ValueError):
        return False
    return ATTRIBUTE in group.attrs


def _read_document(group: Any, location: str) -> dict[str, Any]:
    document = group.attrs.asdict().get(ATTRIBUTE)
    if not isinstance(document, dict):
        raise FormatVersionError(f"{location} is a zarr group without unibatch metadata (attribute {ATTRIBUTE!r})")
    return check_format_version(document, location, FORMAT_VERSION)


def _parse_sizes(document: dict[str, Any], location: str) -> tuple[int | None, int]:
    """``(capacity, length)`` of the ``unibatch`` attribute, with its options checked to be an object.

    Raises:
        CorruptDataError: a value of the wrong type, or a length outside ``[0, capacity]``.
    """
    capacity, length, options = document.get("capacity"), document.get("length"), document.get("options")
    if not (capacity is None or (type(capacity) is int and capacity > 0)) or type(length) is not int:
        raise CorruptDataError(f"{location}: capacity {capacity!r} and length {length!r} must be integers")
    if length < 0 or (capacity is not None and length != capacity) or not isinstance(options, dict):
        raise CorruptDataError(
            f"{location}: impossible length {length} for capacity {capacity} (or options {options!r} not an object)"
        )
    return capacity, length


def missing_chunks(arrays: list[Any], root: Any, slots: np.ndarray) -> list[str]:
    """The chunk files of ``slots`` (physical rows) absent from the local group at ``root``."""
    missing = []
    for array in arrays:
        rows_per_chunk = array.chunks[0]
        for chunk in np.unique(slots // rows_per_chunk).tolist():
            key = array.metadata.encode_chunk_key((chunk,) + (0,) * (array.ndim - 1))
            if not (root / array.path / key).exists():
                missing.append(
                    f"{array.path}/{key} (rows {chunk * rows_per_chunk} to {(chunk + 1) * rows_per_chunk - 1})"
                )
    return missing


def _check_leaves(document: dict[str, Any], leaves: list[Leaf], location: str) -> None:
    try:
        stored = [(leaf["name"], np.dtype(leaf["dtype"]).str, tuple(leaf["shape"])) for leaf in document["leaves"]]
    except (KeyError, TypeError, ValueError) as error:
        raise CorruptDataError(f"{location}: malformed leaves entry ({error!r})") from error
    expected = [(leaf.name, leaf.numpy_dtype.str, leaf.shape) for leaf in leaves]
    if stored != expected:
        raise SpaceMismatchError(f"{location} stores leaves {stored}, but the space has {expected}")


def _child_array(group: Any, leaf: Leaf, location: str) -> Any:
    name = stores.array_name(leaf)
    local = stores.local_path(location)
    if local is not None:  # the array's directory and its chunks' stay inside the group (also through symlinks)
        resolve_inside(local, f"{name}/c", source=local / "zarr.json")
    try:
        array = group[name]
    except KeyError:
        raise FileNotFoundError(f"{location} has no array {name!r} for leaf {leaf.name!r}") from None
    return array.with_config({"write_empty_chunks": True})  # a chunk of zeros is stored, not deleted


def _check_arrays(arrays: list[Any], leaves: list[Leaf], capacity: int | None, length: int, location: str) -> int:
    """The rows allocated in every array, after checking their shapes hold the leaves and the length."""
    for array, leaf in zip(arrays, leaves, strict=True):
        rows = array.shape[0]
        if array.shape[1:] != leaf.shape or (rows != capacity if capacity is not None else rows < length):
            wanted = f"({capacity}" if capacity is not None else f"(at least {length}"
            raise SpaceMismatchError(
                f"{location}: array {array.path!r} has shape {array.shape}, expected {wanted}, *{leaf.shape})"
            )
    return _allocated_rows(arrays)


def _allocated_rows(arrays: list[Any]) -> int:
    return min(array.shape[0] for array in arrays) if arrays else 0


# ---------------------------------------------------------------------- rows
def _selection_rows(index: slice | np.ndarray, length: int) -> int:
    if isinstance(index, slice):
        return (index.stop if index.stop is not None else length) - (index.start or 0)
    return len(index)


def _rows_needed(index: Any, length: int) -> int:
    """One past the largest row ``index`` touches."""
    if isinstance(index, slice):
        return index.stop if index.stop is not None else length
    if isinstance(index, np.ndarray):
        return int(index.max()) + 1 if index.size else 0
    return int(index) + 1


def _read(array: Any, index: Any) -> np.ndarray:
    if isinstance(index, np.ndarray):
        return array.get_orthogonal_selection((index,))
    return np.asarray(array[index])


def _write(array: Any, index: Any, value: np.ndarray) -> None:
    if isinstance(index, np.ndarray):
        array.set_orthogonal_selection((index,), value)
    else:
        array[index] = value


def _prepare(leaf: Leaf, value: Any, rows: int | None) -> np.ndarray:
    """``value`` on the host with the leaf's dtype and the selection's shape, or an error naming both.

    Args:
        leaf: the leaf written.
        value: its value, of any backend; texts as ``str`` or arrays of ``str``.
        rows: rows selected, or None for one row.

    Returns:
        An array of shape ``(rows, *leaf.shape)`` (or ``leaf.shape``) and the leaf's dtype.
    """
    backend = get_backend_or_none(value)
    array = np.asarray(backend.to_numpy(value) if backend is not None else value)
    where = leaf.name or "value"
    if leaf.is_text:
        if array.dtype.kind not in "UTO" or (
            array.dtype.kind == "O" and not all(isinstance(x, str) for x in array.flat)
        ):
            raise SpaceMismatchError(f"{where}: expected text (str), got {array.dtype}")
    elif np.can_cast(array.dtype, leaf.numpy_dtype, "same_kind"):
        array = array.astype(leaf.numpy_dtype, copy=False)
    else:
        raise SpaceMismatchError(
            f"{where}: expected dtype {leaf.numpy_dtype} (or one that casts to it), got {array.dtype}"
        )
    expected = leaf.shape if rows is None else (rows, *leaf.shape)
    try:
        return np.broadcast_to(array, expected)
    except ValueError:
        raise SpaceMismatchError(f"{where}: expected shape {expected}, got {array.shape}") from None


def _last_writes(index: np.ndarray, values: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The rows of ``index`` sorted, each with its last value (as NumPy assignment keeps the last)."""
    unique, first_from_end = np.unique(index[::-1], return_index=True)
    if len(unique) == len(index):
        return index, values
    keep = len(index) - 1 - first_from_end
    return unique, [value[keep] for value in values]
