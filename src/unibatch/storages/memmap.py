"""``MemmapStorage``: the embedded default for persistence, raw memory-mapped files (small leaves packed).

Layout of the storage directory::

    memmap.json        {"format_version", "capacity", "rows", "length", "leaves": [...], "packed": {...}}
    packed.bin         rows x packed row: the leaves of at most 1 KiB a row side by side (see _packed.py)
    leaf_003.bin       rows x leaf bytes of every other leaf, row-major, no header (offset 0 is page aligned)
    ...

Format version 2 added ``packed.bin`` (``"packed"`` gives its leaves, field offsets and row size);
version 1 directories, one file per leaf, still open.

Reads gather straight from the mapped files (page-cache speed, no decoding): one gather of whole
packed rows for the small leaves and one ``np.take`` per other leaf, handed to the space's backend
(zero-copy for PyTorch).
The storage pickles as its path, so forked and spawned processes reopen the same files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import Self

from unibatch.errors import CorruptDataError, SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import Space
from unibatch.storages._atomic import atomic_write_json, read_sidecar
from unibatch.storages._base import PathLike, SpaceStorage, StorageIndex
from unibatch.storages._column import LeafColumnStorage
from unibatch.storages._directories import new_directory, parse_capacity, removes_on_failure
from unibatch.storages._host_rows import HostRows
from unibatch.storages._integrity import check_file_sizes
from unibatch.storages._leaves import (
    Leaf,
    assemble,
    assign_leaves,
    host_index,
    leaf_table,
    split_value,
    texts_to_objects,
)
from unibatch.storages._packed import PackedRows
from unibatch.storages._registry import register_storage
from unibatch.storages._safe_paths import open_data_file, refuse_symlink

SIDECAR = "memmap.json"
FORMAT_VERSION = 2
PACKED_FILE = "packed.bin"
FileEntry = tuple[str, np.dtype, tuple[int, ...], int]
"""A file of the storage: name, dtype, row shape and bytes per row."""
DEFAULT_INITIAL_ROWS = 1024


@register_storage("memmap")
class MemmapStorage(SpaceStorage):
    """Values of a space in memory-mapped raw files, fixed or growable capacity.

    Use :meth:`create` and :meth:`load_from`; the constructor opens an existing directory.
    """

    is_multiprocessing_safe = True
    supports_columns = True
    is_persistent = True
    reads_on_host = True
    writes_host_leaves = True
    cache_filename: Path

    def __init__(
        self, single_instance_space: Space, path: PathLike, *, read_only: bool = True, owns_directory: bool = False
    ) -> None:
        super().__init__(single_instance_space)
        self.cache_filename = Path(path)
        self.is_mutable = not read_only
        self._owner_pid = os.getpid() if owns_directory else None
        self._temporary_root: Path | None = None
        self._leaves = leaf_table(single_instance_space)
        self._all_leaves = tuple(range(len(self._leaves)))
        self._arrays: list[np.ndarray] | None = None
        self._host: HostRows | None = None  # reads and writes of the current maps
        self._wraps = [
            texts_to_objects if leaf.is_text else self.backend.fresh_host_wrapper(leaf.numpy_dtype, self.device)
            for leaf in self._leaves
        ]
        sidecar = _read_sidecar(self.cache_filename)
        _check_leaves(sidecar, self._leaves, self.cache_filename)
        self._packing = _parse_packing(sidecar, self._leaves, self.cache_filename)
        self._packed_rows: np.ndarray | None = None
        self._maps: list[np.memmap] = []  # the maps under _arrays (flushed by flush)
        for name, _, _, _ in self._files():
            refuse_symlink(self.cache_filename / name)  # also opened with O_NOFOLLOW: never written through a link
        self.capacity, self._rows, length = _parse_sizes(sidecar, self.cache_filename / SIDECAR)
        check_file_sizes(
            self.cache_filename, [(name, row_bytes) for name, _, _, row_bytes in self._files()], self._rows
        )
        self._length = length if self.capacity is None else self.capacity
        self._recorded = (self._rows, int(sidecar["length"]))  # what the sidecar on disk says

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
        initial_rows: int = DEFAULT_INITIAL_ROWS,
        **kwargs: Any,
    ) -> Self:
        """Create the directory ``cache_path`` with zero-filled (sparse) files for ``capacity`` rows.

        Args:
            single_instance_space: the space of one value.
            capacity: number of rows, or None for a growable storage.
            cache_path: the directory to create (must not exist or be empty).
            multiprocessing: accepted for API compatibility; memmaps are always shareable.
            initial_rows: rows allocated at first for a growable storage (doubles as needed).
            *args: refused (the signature is the reference's).
            **kwargs: refused (the signature is the reference's).
        """
        if args or kwargs:
            raise TypeError(f"MemmapStorage.create got unexpected arguments {args or ''} {sorted(kwargs)}")
        if cache_path is None:
            raise UnsupportedOperationError("MemmapStorage needs a cache_path (use MemoryStorage for memory)")
        capacity = parse_capacity(capacity)
        path = new_directory(cache_path)
        rows = capacity if capacity is not None else max(int(initial_rows), 1)
        leaves = leaf_table(single_instance_space)
        packing = PackedRows.of(leaves)
        for name, _, _, row_bytes in _files(leaves, packing):
            with open(path / name, "wb") as handle:
                handle.truncate(rows * row_bytes)
        _write_sidecar(path, capacity, rows, 0, leaves, packing)
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
        """Open the storage at ``path``; its leaves must match ``single_instance_space``."""
        if kwargs:
            raise TypeError(f"MemmapStorage.load_from got unexpected arguments {sorted(kwargs)}")
        storage = cls(single_instance_space, path, read_only=read_only)
        if capacity is not None and storage.capacity != capacity:
            raise SpaceMismatchError(f"{path} holds capacity {storage.capacity}, expected {capacity}")
        return storage

    # ------------------------------------------------------------------ files
    def _files(self) -> list[FileEntry]:
        return _files(self._leaves, self._packing)

    def _open(self) -> list[np.ndarray]:
        """Plain ndarray views of every leaf (the ``np.memmap`` subclass costs per index operation).

        Packed leaves are field views of the packed rows, kept in ``_packed_rows``.
        """
        if self._arrays is None:
            mode: Any = "r" if not self.is_mutable else "r+"
            mapped = {}
            for name, dtype, shape, _ in self._files():
                with open_data_file(self.cache_filename / name, writable=self.is_mutable) as handle:
                    mapped[name] = np.memmap(handle, dtype=dtype, mode=mode, shape=(self._rows, *shape))
            packing = self._packing
            self._packed_rows = mapped[PACKED_FILE].view(np.ndarray) if packing is not None else None
            self._arrays = [
                packing.field(self._packed_rows, i)
                if packing is not None and self._packed_rows is not None and i in packing.positions
                else mapped[_file_name(i)].view(np.ndarray)
                for i in range(len(self._leaves))
            ]
            self._maps = list(mapped.values())
        return self._arrays

    def _host_rows(self) -> HostRows:
        """The reads and writes of the current maps (made again when the files are mapped again)."""
        arrays = self._open()
        host = self._host
        if host is None or host.arrays is not arrays:
            host = self._host = HostRows(arrays, self._packing, self._packed_rows, self._wraps)
        return host

    def _ensure_rows(self, needed: int) -> None:
        """Another process may have grown the files: remap when a row beyond ours is asked for."""
        if needed > self._rows:
            self._refresh_rows()
            if needed > self._rows:
                raise IndexError(f"row {needed - 1} is beyond the {self._rows} rows of {self.cache_filename}")

    def _refresh_rows(self) -> None:
        """Take the allocated rows from the file sizes (the truth when several processes share them)."""
        sized = next(((name, row_bytes) for name, _, _, row_bytes in self._files() if row_bytes), None)
        if sized is None:
            return
        rows = os.path.getsize(self.cache_filename / sized[0]) // sized[1]
        if rows != self._rows:
            self._rows, self._arrays = rows, None

    def __len__(self) -> int:
        return self._length

    def _resize(self, length: int) -> None:
        if length > self._rows:
            self._refresh_rows()  # never shrink files another process has grown
        if length > self._rows:
            rows = max(length, 2 * self._rows)
            self._arrays = None
            for name, _, _, row_bytes in self._files():
                with open_data_file(self.cache_filename / name, writable=True) as handle:
                    handle.truncate(rows * row_bytes)
            self._rows = rows
            _write_sidecar(self.cache_filename, self.capacity, rows, self._length, self._leaves, self._packing)
            self._recorded = (rows, self._length)
        self._length = length

    # ------------------------------------------------------------------ data
    def _get(self, index: StorageIndex) -> Any:
        return assemble(self.single_instance_space, self._get_leaves(self._all_leaves, index))

    def _get_leaves(self, positions: Sequence[int], index: StorageIndex) -> list[Any]:
        on_host = host_index(index)
        if self.capacity is None:
            self._ensure_rows(_max_row(on_host) + 1)
        return self._host_rows().read(tuple(positions), on_host)

    def _set(self, index: StorageIndex, value: Any) -> None:
        self._check_writable("set")
        self._set_leaves(range(len(self._leaves)), index, split_value(self.single_instance_space, value))

    def set_leaves(self, index: int | slice, leaves: Sequence[Any]) -> None:
        self._check_writable("set")
        self._host_rows().write(index, leaves)

    def _set_leaves(self, positions: Sequence[int], index: StorageIndex, values: list[Any]) -> None:
        assign_leaves(self._open(), positions, host_index(index), values)

    def get_column(self, nested_keys: Sequence[str]) -> SpaceStorage:
        return LeafColumnStorage(self, nested_keys)

    def clear(self) -> None:
        if self.capacity is None:
            self._check_writable("clear")
            self._length = 0

    # ------------------------------------------------------------------ persistence
    def flush(self) -> None:
        """Msync the mapped files and record the current length in the sidecar."""
        if not self.is_mutable:
            return
        for mapped in self._maps if self._arrays is not None else []:
            mapped.flush()
        if (self._rows, self._length) != self._recorded:
            _write_sidecar(self.cache_filename, self.capacity, self._rows, self._length, self._leaves, self._packing)
            self._recorded = (self._rows, self._length)

    def dumps(self, path: PathLike) -> None:
        """Flush in place, or copy the files to a new directory ``path``."""
        self.flush()
        target = Path(path)
        if target.resolve() == self.cache_filename.resolve():
            return
        target.mkdir(parents=True, exist_ok=True)
        for name, _, _, _ in self._files():
            shutil.copyfile(self.cache_filename / name, target / name)
        _write_sidecar(target, self.capacity, self._rows, self._length, self._leaves, self._packing)

    def close(self) -> None:
        super().close()
        self._arrays = self._packed_rows = None
        if self._owner_pid is not None and self._owner_pid == os.getpid():  # never from a forked child
            shutil.rmtree(self._temporary_root or self.cache_filename, ignore_errors=True)
            self._owner_pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = state["_packed_rows"] = None
        state["_maps"] = []
        state["_host"] = None
        state["_owner_pid"] = None  # only the creating process deletes a temporary directory
        return state


def _file_name(position: int) -> str:
    return f"leaf_{position:03d}.bin"


def _files(leaves: list[Leaf], packing: PackedRows | None) -> list[FileEntry]:
    """``(file name, dtype, row shape, row bytes)`` of every file: the packed rows, then each other leaf."""
    files: list[FileEntry] = [] if packing is None else [(PACKED_FILE, packing.dtype, (), packing.dtype.itemsize)]
    for position, leaf in enumerate(leaves):
        if packing is None or position not in packing.positions:
            files.append((_file_name(position), leaf.numpy_dtype, leaf.shape, leaf.row_bytes))
    return files


def _max_row(index: Any) -> int:
    if isinstance(index, slice):
        return index.stop - 1 if index.stop is not None else -1
    if isinstance(index, np.ndarray):
        return int(index.max()) if index.size else -1
    return int(index)


def _write_sidecar(
    path: Path, capacity: int | None, rows: int, length: int, leaves: list[Leaf], packing: PackedRows | None
) -> None:
    atomic_write_json(
        path / SIDECAR,
        {
            "format_version": FORMAT_VERSION,
            "packed": None if packing is None else packing.to_json(),
            "capacity": capacity,
            "rows": rows,
            "length": length,
            "leaves": [
                {"name": leaf.name, "dtype": leaf.numpy_dtype.str, "shape": list(leaf.shape)} for leaf in leaves
            ],
        },
    )


def _read_sidecar(path: Path) -> dict[str, Any]:
    return read_sidecar(path / SIDECAR, "memmap", FORMAT_VERSION)


def _parse_sizes(sidecar: dict[str, Any], where: Path) -> tuple[int | None, int, int]:
    """``(capacity, rows, length)`` of the sidecar: rows allocated in the files, rows in use.

    Raises:
        CorruptDataError: a value is not an integer, or ``0 <= length <= rows`` (and ``rows ==
            capacity`` for a fixed capacity) does not hold.
    """
    capacity, rows, length = (sidecar.get(key) for key in ("capacity", "rows", "length"))
    if type(rows) is not int or type(length) is not int or not (capacity is None or type(capacity) is int):
        raise CorruptDataError(
            f"{where}: capacity, rows and length must be integers, got {capacity!r}, {rows!r}, {length!r}"
        )
    if not 0 <= length <= rows or (capacity is not None and (capacity <= 0 or rows != capacity)):
        raise CorruptDataError(
            f"{where}: impossible sizes capacity={capacity}, rows={rows}, length={length} "
            "(expected 0 <= length <= rows, rows == capacity > 0 for a fixed capacity)"
        )
    return capacity, rows, length


def _parse_packing(sidecar: dict[str, Any], leaves: list[Leaf], path: Path) -> PackedRows | None:
    """The packed-row layout of the sidecar (None before format version 2), checked against the space."""
    stored = sidecar.get("packed")
    if not stored:
        return None
    try:
        positions, offsets, itemsize = stored["leaves"], stored["offsets"], stored["itemsize"]
        fields = sorted(zip(offsets, positions, strict=True))
        end = 0
        for offset, position in fields:
            leaf = leaves[position] if type(position) is int and 0 <= position < len(leaves) else None
            if leaf is None or leaf.is_text or type(offset) is not int or offset < end:
                raise ValueError(f"leaf {position!r} at offset {offset!r}")
            end = offset + leaf.row_bytes
        if type(itemsize) is not int or end > itemsize or len(set(positions)) != len(positions):
            raise ValueError(f"itemsize {itemsize!r}")
        return PackedRows.from_json(stored, leaves)
    except (KeyError, TypeError, ValueError) as error:
        raise CorruptDataError(f"{path / SIDECAR}: impossible packed layout {stored!r} ({error})") from error


def _check_leaves(sidecar: dict[str, Any], leaves: list[Leaf], path: Path) -> None:
    try:
        stored = [(leaf["name"], np.dtype(leaf["dtype"]).str, tuple(leaf["shape"])) for leaf in sidecar["leaves"]]
    except (KeyError, TypeError, ValueError) as error:
        raise CorruptDataError(f"{path / SIDECAR}: malformed leaves entry ({error!r})") from error
    expected = [(leaf.name, leaf.numpy_dtype.str, leaf.shape) for leaf in leaves]
    if stored != expected:
        raise SpaceMismatchError(f"{path} stores leaves {stored}, but the space has {expected}")
