"""``HDF5Storage``: the values of a space in one HDF5 file (h5py), one writer and any number of SWMR readers.

Layout of the file::

    /                 attribute "unibatch": JSON {"format_version", "capacity", "leaves": [{"name",
                      "dataset", "dtype", "shape", "compression", "compression_opts", "chunk_rows"}, ...]}
    /obs/image        dataset (rows, 3, 84, 84) uint8, chunks (chunk_rows, 3, 84, 84)
    /obs/state        dict keys are groups, leaves are datasets named by their key
    /note             a text leaf: fixed-length UTF-8, 4 bytes per character of max_length, NUL padded
    /data             the only dataset when the space is not a dict (or tuple: "0", "1", ...)

Rows run along the first axis of every dataset: ``capacity`` rows at a fixed capacity; a growable
storage starts with 0 rows (``maxshape`` ``None``) and resizes its datasets, so the length *is* the
datasets' length and nothing else has to be written while readers look on.

A read sorts and de-duplicates the requested rows, reads each block of nearby rows with one HDF5
call and restores the requested order with one ``np.take`` (see ``_hdf5_io.py``). A write with an
index array sorts it; a row given twice keeps the last value, as in NumPy. Unfiltered datasets are
read and written without a chunk cache (HDF5 then moves only the selected rows); compressed ones
keep a few chunks cached, since a chunk is decompressed whole.

The writer opens the file in SWMR mode right away; ``flush()`` flushes HDF5 and fsyncs the file, after
which readers in other processes (``read_only=True``, opened with ``swmr=True``) see every row written
so far. A writer killed at any point leaves a file that readers open as it was at the last flush, and
that a new writer reopens after clearing the killed one's write marks (see ``_hdf5_files.py``).

Under SWMR, HDF5 never frees the space of a rewritten compressed chunk (a reader may still use it), so
rewriting compressed rows (a ring, or flushes in the middle of a chunk) grows the file: a gzip ring
grows by about its own size at every wrap. Uncompressed chunks are rewritten in place;
compress data written once (``dumps`` writes a compact copy).

:func:`open_hdf5_storage` reads any HDF5 file (a robomimic demo, say) as a read-only storage
with a space inferred from its datasets.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from typing_extensions import Self

from unibatch.backends import ComputeBackend
from unibatch.errors import (
    FormatVersionError,
    IndexOutOfRangeError,
    SpaceMismatchError,
    UnsafePathError,
    UnsupportedOperationError,
    UnsupportedSpaceError,
)
from unibatch.spaces import BinarySpace, BoxSpace, DictSpace, Space, TextSpace
from unibatch.spaces._tree import nest_paths
from unibatch.storages._atomic import check_format_version, fsync_directory
from unibatch.storages._base import PathLike, SpaceStorage, StorageIndex
from unibatch.storages._column import LeafColumnStorage
from unibatch.storages._directories import parse_capacity, removes_on_failure
from unibatch.storages._hdf5_files import (
    WriterLock,
    create_file,
    h5py_module,
    open_dataset,
    open_reader,
    open_writer,
)
from unibatch.storages._hdf5_io import (
    RowSelection,
    decode_texts,
    leaf_array,
    read_rows,
    requested_rows,
    select_rows,
    write_rows,
)
from unibatch.storages._leaves import Leaf, assemble, host_index, leaf_table, split_value, texts_to_objects
from unibatch.storages._registry import register_storage
from unibatch.storages._safe_paths import temporary_name

if TYPE_CHECKING:
    from unibatch._typing import Device

FORMAT_VERSION = 1
METADATA_ATTRIBUTE = "unibatch"
ROOT_DATASET = "data"
"""Dataset name of a space that is a single leaf."""
COMPRESSIONS = (None, "gzip", "lzf")
CHUNK_BYTES = 1 << 20
"""Default chunk size of an uncompressed leaf: reads never touch more than the rows they ask for."""
COMPRESSED_CHUNK_BYTES = 64 << 10
"""Default chunk size of a compressed leaf: a random row decompresses its whole chunk (3x faster than 1 MiB)."""
CACHED_CHUNKS = 4
COPY_BYTES = 64 << 20
"""Bytes of one leaf moved per step when :meth:`HDF5Storage.dumps` copies a storage."""

_log = logging.getLogger(__name__)
_INHERITED: list[Any] = []
"""Handles a forked child inherited: kept alive and never closed there (closing would flush from the child)."""


@dataclass(frozen=True)
class _LeafLayout:
    """Where and how a leaf is stored."""

    dataset: str
    compression: str | None
    compression_opts: int | None
    chunk_rows: int


@dataclass
class _OpenFile:
    """The h5py handles of one process."""

    file: Any
    datasets: list[Any]
    memory_dtypes: list[np.dtype]
    lock: WriterLock | None
    pid: int


@register_storage("hdf5")
class HDF5Storage(SpaceStorage):
    """Values of a space in one HDF5 file, fixed or growable capacity; readers in other processes via SWMR.

    Use :meth:`create` and :meth:`load_from`; the constructor opens an existing file. With ``group``
    it reads a file unibatch did not write: the leaves are the datasets under ``group`` (read-only).

    One process writes a file; readers anywhere open it with ``read_only=True`` and see the rows of
    every ``flush()`` before they opened; a growable reader refreshes by itself when asked for rows
    beyond its length, and :meth:`refresh` shows rows rewritten in place. A read-only storage pickles
    as its path and reopens in the new process (also after a fork); a writable one pickles as a
    read-only reader of its file and refuses to be used from a forked child.
    """

    single_file_ext = ".hdf5"
    supports_columns = True
    is_persistent = True
    cache_filename: Path

    def __init__(
        self, single_instance_space: Space, path: PathLike, *, read_only: bool = True, group: str | None = None
    ) -> None:
        super().__init__(single_instance_space)
        if group is not None and not read_only:
            raise UnsupportedOperationError("HDF5Storage writes only files it created; open a group read-only")
        self.cache_filename = Path(path)
        self.is_mutable = not read_only
        self.is_multiprocessing_safe = read_only
        self.skipped_datasets: tuple[str, ...] = ()
        """Datasets under ``group`` left out of the space (see :func:`open_hdf5_storage`)."""
        self._group = group
        self._leaves = leaf_table(single_instance_space)
        self._layouts = [_LeafLayout(_dataset_path(group, leaf), None, None, 0) for leaf in self._leaves]
        self._length = 0
        self._closed = False
        self._open_file: _OpenFile | None = self._open()

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
        compression: str | None | Mapping[str, str | None] = None,
        compression_opts: int | None | Mapping[str, int | None] = None,
        chunk_rows: int | None | Mapping[str, int | None] = None,
        **kwargs: Any,
    ) -> Self:
        """Create the HDF5 file ``cache_path`` and open it for writing.

        Each option is one value for every leaf, or a dict keyed by leaf path (``"obs/image"``;
        ``"data"`` for a space that is one leaf) with ``"*"`` for the leaves not named.

        Args:
            single_instance_space: the space of one value.
            capacity: number of rows, or None for a growable storage (datasets start with 0 rows).
            cache_path: the file to create (must not exist).
            multiprocessing: must be False: a file has one writer; other processes open it read-only.
            compression: ``"gzip"``, ``"lzf"`` or None (the default: fastest random reads).
            compression_opts: gzip level 0-9 (None: h5py's default, 4); None for the others.
            chunk_rows: rows per chunk; None picks about 1 MiB chunks (64 KiB when compressed).
            *args: refused (the signature is the reference's).
            **kwargs: refused (the signature is the reference's).
        """
        if args or kwargs:
            raise TypeError(f"HDF5Storage.create got unexpected arguments {args or ''} {sorted(kwargs)}")
        if cache_path is None:
            raise UnsupportedOperationError("HDF5Storage needs a cache_path (the .hdf5 file to create)")
        if multiprocessing:
            raise UnsupportedOperationError(
                "HDF5Storage has one writer and cannot be shared for writing; "
                "other processes open the file with load_from(..., read_only=True) and read through SWMR"
            )
        capacity = parse_capacity(capacity)
        path = Path(cache_path)
        if path.exists():
            raise FileExistsError(f"{path} already exists")
        leaves = leaf_table(single_instance_space)
        layouts = _leaf_layouts(leaves, capacity, compression, compression_opts, chunk_rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        _new_file(path, leaves, layouts, capacity, capacity or 0).close()
        return cls(single_instance_space, path, read_only=False)

    @classmethod
    def load_from(
        cls,
        path: PathLike,
        single_instance_space: Space,
        *,
        capacity: int | None = None,
        read_only: bool = True,
        multiprocessing: bool = False,
        **kwargs: Any,
    ) -> Self:
        """Open the storage file ``path``; its leaves must match ``single_instance_space``.

        ``read_only=False`` opens it for writing (also after a writer was killed); that fails while
        another process writes it. ``multiprocessing`` needs ``read_only``.
        """
        if kwargs:
            raise TypeError(f"HDF5Storage.load_from got unexpected arguments {sorted(kwargs)}")
        if multiprocessing and not read_only:
            raise UnsupportedOperationError(
                "a writable HDF5Storage cannot be shared between processes (one writer per file); "
                "open it with read_only=True in the other processes"
            )
        storage = cls(single_instance_space, path, read_only=read_only)
        if capacity is not None and storage.capacity != capacity:
            storage.close()
            raise SpaceMismatchError(f"{path} holds capacity {storage.capacity}, expected {capacity}")
        return storage

    # ------------------------------------------------------------------ files
    def _open(self) -> _OpenFile:
        lock = None
        if self.is_mutable:
            file, lock = open_writer(self.cache_filename)
        else:
            file = open_reader(self.cache_filename, swmr=self._group is None)
        try:
            if self._group is None:
                self._read_metadata(file)
            datasets = [_open_leaf_dataset(file, layout.dataset, self.cache_filename) for layout in self._layouts]
            self._check_datasets(datasets)
        except BaseException:
            file.close()
            if lock is not None:
                lock.release()
            raise
        memory_dtypes = [
            dataset.dtype if leaf.is_text else leaf.numpy_dtype
            for leaf, dataset in zip(self._leaves, datasets, strict=True)
        ]
        if self.capacity is None:
            self._length = min((len(dataset) for dataset in datasets), default=self._length)
        return _OpenFile(file, datasets, memory_dtypes, lock, os.getpid())

    def _read_metadata(self, file: Any) -> None:
        """Check the file's ``unibatch`` attribute against the space; take capacity and layouts from it."""
        metadata = _parse_metadata(file.attrs.get(METADATA_ATTRIBUTE), self.cache_filename)
        stored = [(leaf["name"], np.dtype(leaf["dtype"]).str, tuple(leaf["shape"])) for leaf in metadata["leaves"]]
        expected = [(leaf.name, leaf.numpy_dtype.str, leaf.shape) for leaf in self._leaves]
        if stored != expected:
            raise SpaceMismatchError(f"{self.cache_filename} stores leaves {stored}, but the space has {expected}")
        self.capacity = metadata["capacity"]
        self._layouts = [
            _LeafLayout(leaf["dataset"], leaf["compression"], leaf["compression_opts"], leaf["chunk_rows"])
            for leaf in metadata["leaves"]
        ]

    def _check_datasets(self, datasets: list[Any]) -> None:
        for leaf, layout, dataset in zip(self._leaves, self._layouts, datasets, strict=True):
            if dataset.ndim < 1 or tuple(dataset.shape[1:]) != leaf.shape:
                raise SpaceMismatchError(
                    f"{self.cache_filename}: dataset {layout.dataset!r} has shape {dataset.shape}, "
                    f"expected (rows, *{leaf.shape})"
                )
        lengths = sorted({len(dataset) for dataset in datasets})
        if self._group is not None:
            if len(lengths) > 1:
                raise SpaceMismatchError(f"{self.cache_filename}: the datasets have different lengths {lengths}")
            self.capacity = lengths[0] if lengths else 0
        elif self.capacity is not None and lengths and lengths != [self.capacity]:
            raise SpaceMismatchError(f"{self.cache_filename}: datasets of {lengths} rows, capacity {self.capacity}")

    def _handle(self) -> _OpenFile:
        """This process's handles: opened again in a forked child (which never touches its parent's)."""
        self._check_open()
        opened = self._open_file
        if opened is not None and opened.pid == os.getpid():
            return opened
        if opened is not None:
            _INHERITED.append(opened)
            self._open_file = None
            if self.is_mutable:
                raise UnsupportedOperationError(
                    f"{self.cache_filename} is open for writing in process {opened.pid}; another process "
                    "reads it through a pickled copy or load_from(..., read_only=True)"
                )
        self._open_file = self._open()
        return self._open_file

    def __len__(self) -> int:
        return self._length if self.capacity is None else self.capacity

    def _resize(self, length: int) -> None:
        self._check_writable("resize")
        for leaf, dataset in zip(self._leaves, self._handle().datasets, strict=True):
            dataset.resize((length, *leaf.shape))
        self._length = length

    def refresh(self) -> None:
        """Read-only: see what the writer flushed since this storage opened (new rows, rewritten chunks)."""
        if self.is_mutable or self._group is not None:
            return  # a writer sees its own rows; a foreign file is not written by unibatch
        opened = self._handle()
        for dataset in opened.datasets:
            dataset.refresh()
        if self.capacity is None:
            self._length = min((len(dataset) for dataset in opened.datasets), default=0)

    # ------------------------------------------------------------------ data
    def _get(self, index: StorageIndex) -> Any:
        return assemble(self.single_instance_space, self._get_leaves(range(len(self._leaves)), index))

    def _get_leaves(self, positions: Sequence[int], index: StorageIndex) -> list[Any]:
        selection = select_rows(self._host_index(index))
        opened = self._handle()
        self._ensure_rows(selection)
        values = []
        for position in positions:
            value = read_rows(opened.datasets[position], selection, opened.memory_dtypes[position])
            values.append(self._to_backend(self._leaves[position], value))
        return values

    def _host_index(self, index: StorageIndex) -> int | slice | np.ndarray:
        on_host = host_index(index)
        if isinstance(on_host, slice):
            if on_host.stop is not None and on_host.stop > len(self):
                self.refresh()  # a reader of a growable file: the writer may have added rows since
                if on_host.stop > len(self):
                    raise IndexOutOfRangeError(f"rows up to {on_host.stop - 1} are out of range for length {len(self)}")
            start, stop, _ = on_host.indices(len(self))
            return slice(start, max(start, stop))
        return on_host if isinstance(on_host, np.ndarray) else int(on_host)

    def _ensure_rows(self, selection: RowSelection) -> None:
        """A reader of a growable file: refresh when asked for rows the writer added since."""
        needed = int(selection.rows[-1]) + 1 if len(selection.rows) else 0
        if needed > len(self):
            self.refresh()
        if needed > len(self):
            raise IndexOutOfRangeError(f"row {needed - 1} is out of range for length {len(self)}")

    def _to_backend(self, leaf: Leaf, value: np.ndarray) -> Any:
        if leaf.is_text:
            return texts_to_objects(decode_texts(value))
        return self.backend.from_numpy(value, device=self.device)

    def _set(self, index: StorageIndex, value: Any) -> None:
        self._check_writable("set")
        self._set_leaves(range(len(self._leaves)), index, split_value(self.single_instance_space, value))

    def _set_leaves(self, positions: Sequence[int], index: StorageIndex, values: list[Any]) -> None:
        """Check and convert every leaf value first, then write: a bad value leaves the file untouched."""
        on_host = self._host_index(index)
        count = None if isinstance(on_host, int) else requested_rows(on_host)
        arrays = [
            leaf_array(self._leaves[position], value, count) for position, value in zip(positions, values, strict=True)
        ]
        self._check_in_range(on_host)
        opened = self._handle()
        for position, array in zip(positions, arrays, strict=True):
            write_rows(opened.datasets[position], on_host, array)

    def _check_in_range(self, index: int | slice | np.ndarray) -> None:
        if isinstance(index, np.ndarray):
            bad = index[(index < 0) | (index >= len(self))]
            if len(bad):
                raise IndexOutOfRangeError(f"index {int(bad[0])} is out of range for length {len(self)}")
        elif isinstance(index, int) and not 0 <= index < len(self):
            raise IndexOutOfRangeError(f"index {index} is out of range for length {len(self)}")

    def get_column(self, nested_keys: Sequence[str]) -> SpaceStorage:
        return LeafColumnStorage(self, nested_keys)

    # ------------------------------------------------------------------ persistence
    def flush(self) -> None:
        """Write every row so far to the file and fsync it; SWMR readers then see them."""
        if not self.is_mutable:
            return
        file = self._handle().file
        file.flush()
        os.fsync(file.id.get_vfd_handle())

    def dumps(self, path: PathLike) -> None:
        """Flush in place, or write a complete copy (same options, current rows) to the file ``path``."""
        self.flush()
        target = Path(path)
        if target.exists() and target.resolve() == self.cache_filename.resolve():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = temporary_name(target)  # random; HDF5 creates it exclusively (O_EXCL: no symlink followed)
        foreign = self._group is not None
        layouts = _leaf_layouts(self._leaves, self.capacity, None, None, None) if foreign else self._layouts
        try:
            with _new_file(temporary, self._leaves, layouts, self.capacity, len(self)) as copy:
                for position, layout in enumerate(layouts):
                    self._copy_leaf(position, copy[layout.dataset])
                copy.flush()
                os.fsync(copy.id.get_vfd_handle())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        os.replace(temporary, target)
        fsync_directory(target.parent)

    def _copy_leaf(self, position: int, target: Any) -> None:
        leaf = self._leaves[position]
        opened = self._handle()
        step = max(COPY_BYTES // max(leaf.row_bytes, 1), 1)
        for start in range(0, len(self), step):
            rows = slice(start, min(start + step, len(self)))
            values = read_rows(opened.datasets[position], select_rows(rows), opened.memory_dtypes[position])
            write_rows(target, rows, leaf_array(leaf, decode_texts(values) if leaf.is_text else values, len(values)))

    def close(self) -> None:
        """Close the file (a writer flushes it) and release the writer lock; idempotent."""
        if self._closed:
            return
        super().close()
        opened, self._open_file = self._open_file, None
        if opened is None:
            return
        if opened.pid != os.getpid():
            _INHERITED.append(opened)
            return
        opened.file.close()
        if opened.lock is not None:
            opened.lock.release()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_open_file=None, is_mutable=False, is_multiprocessing_safe=True)
        return state

    def __repr__(self) -> str:
        size = "growable" if self.capacity is None else f"capacity={self.capacity}"
        mode = "writable" if self.is_mutable else "read-only"
        group = "" if self._group is None else f", group={self._group!r}, skipped={list(self.skipped_datasets)}"
        return f"HDF5Storage({str(self.cache_filename)!r}, {size}, {mode}{group}, space={self.single_instance_space!r})"


# ---------------------------------------------------------------------- files and layouts
def _dataset_path(group: str | None, leaf: Leaf) -> str:
    """The dataset of a leaf: its key path (``ROOT_DATASET`` for a bare leaf), under ``group`` for foreign files."""
    if group is None:
        return leaf.name or ROOT_DATASET
    if not leaf.name:
        return group
    return f"{group.rstrip('/')}/{leaf.name}"


def _open_leaf_dataset(file: Any, name: str, path: Path) -> Any:
    _refuse_external_links(file, name, path)
    node = file.get(name)
    if node is None or not isinstance(node, h5py_module().Dataset):
        raise SpaceMismatchError(f"{path} has no dataset {name!r}")
    _refuse_other_files(node, name, path)
    cache_bytes = 0
    if node.id.get_create_plist().get_nfilters():
        cache_bytes = CACHED_CHUNKS * int(np.prod(node.chunks, dtype=np.int64)) * node.dtype.itemsize
    del node  # HDF5 shares an open dataset, chunk cache included: close it before opening it with its own
    return open_dataset(file, name, cache_bytes=cache_bytes)


def _refuse_external_links(file: Any, name: str, path: Path) -> None:
    """Refuse a dataset path that goes through an external link (to another file) at any of its groups."""
    parts = [part for part in name.split("/") if part]
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        link = file.get(prefix, getlink=True)
        if isinstance(link, h5py_module().ExternalLink):
            raise UnsafePathError(
                f"{path}: dataset {name!r} goes through an external link {prefix!r} to {link.filename!r}; "
                "unibatch reads datasets stored in the file"
            )
        if link is None:
            return


def _refuse_other_files(dataset: Any, name: str, path: Path) -> None:
    """Refuse a dataset whose bytes live in another file: an external link, external storage, a virtual dataset.

    Each names a file path inside the HDF5 file (untrusted like any persisted state), which HDF5
    would open, read-write for a writer, wherever it points.
    """
    elsewhere = None
    if os.path.realpath(dataset.file.filename) != os.path.realpath(path):
        elsewhere = f"an external link to {dataset.file.filename!r}"
    elif dataset.external:
        elsewhere = f"external storage in {[entry[0] for entry in dataset.external]}"
    elif dataset.is_virtual:
        elsewhere = f"a virtual dataset over {sorted({source.file_name for source in dataset.virtual_sources()})}"
    if elsewhere is not None:
        raise UnsafePathError(f"{path}: dataset {name!r} is {elsewhere}; unibatch reads datasets stored in the file")


def _new_file(path: Path, leaves: list[Leaf], layouts: list[_LeafLayout], capacity: int | None, rows: int) -> Any:
    """A new file with the metadata attribute and every dataset (``rows`` rows), open for writing."""
    h5py = h5py_module()
    file = create_file(path)
    try:
        described: list[dict[str, Any]] = []
        for leaf, layout in zip(leaves, layouts, strict=True):
            described.append(
                {"name": leaf.name, "dtype": leaf.numpy_dtype.str, "shape": list(leaf.shape), **layout.__dict__}
            )
            file.create_dataset(
                layout.dataset,
                shape=(rows, *leaf.shape),
                maxshape=(capacity, *leaf.shape),
                chunks=(layout.chunk_rows, *leaf.shape),
                dtype=h5py.string_dtype("utf-8", leaf.numpy_dtype.itemsize) if leaf.is_text else leaf.numpy_dtype,
                compression=layout.compression,
                compression_opts=layout.compression_opts,
            )
        metadata = {"format_version": FORMAT_VERSION, "capacity": capacity, "leaves": described}
        file.attrs[METADATA_ATTRIBUTE] = json.dumps(metadata, sort_keys=True)
    except BaseException:
        file.close()
        path.unlink(missing_ok=True)
        raise
    return file


def _parse_metadata(raw: Any, path: Path) -> dict[str, Any]:
    if raw is None:
        raise FormatVersionError(
            f"{path} is not an HDF5Storage file (no {METADATA_ATTRIBUTE!r} attribute on '/'); "
            "read other HDF5 files with open_hdf5_storage, open_hdf5_as_replay_buffer or HDF5Storage(..., group=...)"
        )
    try:
        metadata = json.loads(raw)
    except (TypeError, json.JSONDecodeError) as error:
        raise FormatVersionError(f"{path}: the {METADATA_ATTRIBUTE!r} attribute is not valid JSON: {error}") from error
    return check_format_version(metadata, path, FORMAT_VERSION)


def _leaf_layouts(
    leaves: list[Leaf], capacity: int | None, compression: Any, compression_opts: Any, chunk_rows: Any
) -> list[_LeafLayout]:
    names = [leaf.name or ROOT_DATASET for leaf in leaves]
    compressions = _per_leaf("compression", compression, names)
    levels = _per_leaf("compression_opts", compression_opts, names)
    rows = _per_leaf("chunk_rows", chunk_rows, names)
    return [
        _leaf_layout(leaf, name, compressions[name], levels[name], rows[name], capacity)
        for leaf, name in zip(leaves, names, strict=True)
    ]


def _per_leaf(option: str, value: Any, names: list[str]) -> dict[str, Any]:
    """One value per leaf from a scalar or a dict keyed by leaf path with ``"*"`` as the default."""
    if not isinstance(value, Mapping):
        return dict.fromkeys(names, value)
    unknown = sorted(set(value) - set(names) - {"*"})
    if unknown:
        raise SpaceMismatchError(f"{option} names {unknown}, which are not leaves; the leaves are {names}")
    return {name: value.get(name, value.get("*")) for name in names}


def _leaf_layout(
    leaf: Leaf, name: str, compression: Any, level: Any, chunk_rows: Any, capacity: int | None
) -> _LeafLayout:
    _parse_compression(name, compression, level)
    if 0 in leaf.shape:
        raise UnsupportedSpaceError(
            f"HDF5Storage cannot chunk leaf {name!r}: it accepts no zero-length axis, got {leaf.shape}"
        )
    rows = _parse_chunk_rows(name, chunk_rows, leaf.row_bytes, compressed=compression is not None)
    return _LeafLayout(name, compression, level, min(rows, capacity or rows))


def _parse_compression(name: str, compression: Any, level: Any) -> None:
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression of {name!r} must be one of {COMPRESSIONS}, got {compression!r}")
    if compression == "gzip":
        if level is not None and (isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9):
            raise ValueError(f"compression_opts of {name!r} (gzip) must be a level 0-9 or None, got {level!r}")
    elif level is not None:
        raise ValueError(f"compression_opts of {name!r} must be None with compression {compression!r}, got {level!r}")


def _parse_chunk_rows(name: str, chunk_rows: Any, row_bytes: int, *, compressed: bool) -> int:
    """Rows per chunk: as given, or about ``CHUNK_BYTES`` (``COMPRESSED_CHUNK_BYTES`` when compressed)."""
    if chunk_rows is None:
        return max((COMPRESSED_CHUNK_BYTES if compressed else CHUNK_BYTES) // row_bytes, 1)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows <= 0:
        raise ValueError(f"chunk_rows of {name!r} must be a positive int or None, got {chunk_rows!r}")
    return chunk_rows


# ---------------------------------------------------------------------- foreign files
def infer_hdf5_space(
    path: PathLike, backend: ComputeBackend, *, group: str = "/", device: Device | None = None
) -> tuple[Space, tuple[str, ...]]:
    """The space of the datasets under ``group`` of any HDF5 file, and the datasets left out.

    Every dataset whose first axis has the common row count (the one most datasets share) is a
    leaf: integers become ``BoxSpace`` over the dtype's range, floats over ``(-inf, inf)``, booleans
    ``BinarySpace``, 1-D strings ``TextSpace``; sub-groups become nested dicts. Other datasets
    (scalars, another length, compound or other types) are left out and returned by name.

    Raises:
        FileNotFoundError: the file or ``group`` does not exist.
        SpaceMismatchError: no dataset under ``group`` can be a leaf.
    """
    h5py = h5py_module()
    path = Path(path)
    with open_reader(path, swmr=False) as file:
        node = file.get(group)
        if node is None:
            raise FileNotFoundError(f"{path} has no group or dataset {group!r}")
        found: list[tuple[str, Any]] = [("", node)] if isinstance(node, h5py.Dataset) else []
        if not found:
            node.visititems(lambda name, item: found.append((name, item)) if isinstance(item, h5py.Dataset) else None)
        usable: dict[str, tuple[int, Space]] = {}
        for name, dataset in found:
            space = _dataset_space(dataset, backend, device)
            if space is not None:
                usable[name] = (dataset.shape[0], space)
    if not usable:
        raise SpaceMismatchError(f"{path}: no dataset under {group!r} has rows of numbers, booleans or strings")
    counts = Counter(rows for rows, _ in usable.values())
    rows = max(counts, key=lambda n: (counts[n], n))
    chosen = {name: space for name, (n, space) in usable.items() if n == rows}
    skipped = tuple(sorted({name for name, _ in found} - set(chosen)))
    if skipped:
        _log.debug("%s: left out datasets %s (not %d rows of a supported type)", path, list(skipped), rows)
    if "" in chosen:
        return chosen[""], skipped
    return DictSpace(backend, nest_paths(chosen), device=device), skipped


def _dataset_space(dataset: Any, backend: ComputeBackend, device: Device | None) -> Space | None:
    """The space of one row of ``dataset``, or None when it cannot be a leaf."""
    h5py = h5py_module()
    if dataset.ndim < 1:
        return None
    shape, dtype = tuple(dataset.shape[1:]), dataset.dtype
    text = h5py.check_string_dtype(dtype)
    if text is not None:
        if shape:
            return None
        longest = text.length if text.length is not None else _longest_text(dataset)
        return TextSpace(backend, max(int(longest), 1), device=device)
    if dtype.kind == "b":
        return BinarySpace(backend, shape, device=device)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return BoxSpace(backend, int(info.min), int(info.max), dtype.newbyteorder("=").name, device=device, shape=shape)
    if dtype.kind == "f":
        return BoxSpace(backend, -np.inf, np.inf, dtype.newbyteorder("=").name, device=device, shape=shape)
    return None


def _longest_text(dataset: Any) -> int:
    texts = decode_texts(np.asarray(dataset[()], dtype=object))
    return int(np.char.str_len(texts).max()) if texts.size else 1


def open_hdf5_storage(
    path: PathLike, backend: ComputeBackend, *, group: str = "/", device: Device | None = None
) -> HDF5Storage:
    """Any HDF5 file (a robomimic demo, ...) as a read-only storage over the datasets under ``group``.

    The space is :func:`infer_hdf5_space`'s; the datasets it leaves out are listed in
    ``storage.skipped_datasets`` (and its repr).
    :func:`unibatch.integrations.foreign_files.open_hdf5_as_replay_buffer` wraps it in a buffer.

    Args:
        path: the HDF5 file.
        backend: backend of the values read.
        group: the group whose datasets are the leaves (``"data/demo_0"``), or one dataset.
        device: device of the values read.

    >>> import tempfile, h5py, numpy as np
    >>> from unibatch import NumpyComputeBackend as np_backend
    >>> path = Path(tempfile.mkdtemp()) / "demo.hdf5"
    >>> with h5py.File(path, "w") as file:
    ...     file["data/demo_0/actions"] = np.zeros((4, 7))
    ...     file["data/demo_0/obs/eef_pos"] = np.ones((4, 3))
    ...     file["data/demo_0/states"] = np.ones((5, 2))
    >>> storage = open_hdf5_storage(path, np_backend, group="data/demo_0")
    >>> batch = storage.get(np.array([3, 1, 3]))
    >>> len(storage), batch["actions"].shape, batch["obs"]["eef_pos"].shape, storage.skipped_datasets
    (4, (3, 7), (3, 3), ('states',))
    >>> storage.close()
    """
    space, skipped = infer_hdf5_space(path, backend, group=group, device=device)
    storage = HDF5Storage(space, path, group=group)
    storage.skipped_datasets = skipped
    return storage
