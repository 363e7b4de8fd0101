"""``MemoryStorage``: one array per leaf in memory, on any backend and device."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import Self

from unibatch.spaces import Space
from unibatch.storages._base import PathLike, SpaceStorage, StorageIndex
from unibatch.storages._column import LeafColumnStorage
from unibatch.storages._directories import parse_capacity, removes_on_failure
from unibatch.storages._host_reads import copy_rows
from unibatch.storages._host_rows import HostRows
from unibatch.storages._leaves import Leaf, assemble, assign_leaves, host_index, leaf_table, split_value
from unibatch.storages._packed import PackedRows
from unibatch.storages._registry import register_storage
from unibatch.storages.memmap import MemmapStorage

DEFAULT_INITIAL_ROWS = 1024
SHARED_MEMORY_ROOT = "/dev/shm"


@register_storage("memory")
class MemoryStorage(SpaceStorage):
    """Arrays of shape ``(rows, *leaf_shape)`` on the space's backend and device.

    Text leaves are NumPy object arrays on every backend. A growable storage doubles its
    allocation as it grows. With ``multiprocessing=True`` :meth:`create` returns a
    :class:`MemmapStorage` in a temporary directory of shared memory (``/dev/shm``), which
    forked and spawned processes map without copying; it is deleted when closed.
    """

    supports_columns = True

    def __init__(
        self,
        single_instance_space: Space,
        arrays: list[Any],
        capacity: int | None,
        length: int,
        packed: np.ndarray | None = None,
    ) -> None:
        super().__init__(single_instance_space)
        self._leaves = leaf_table(single_instance_space)
        self._all_leaves = tuple(range(len(self._leaves)))
        self._arrays = arrays
        self._packed = packed  # the packed rows that some of ``arrays`` are views of (see _packed.py)
        self._packing = PackedRows.of(self._leaves) if packed is not None else None
        self._views: list[np.ndarray] | None = None
        self._find_host_views()
        self.capacity = capacity
        self._length = length

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
    ) -> Any:
        """Allocate zero-filled arrays for ``capacity`` rows (``None``: growable)."""
        if args or kwargs:
            raise TypeError(f"MemoryStorage.create got unexpected arguments {args or ''} {sorted(kwargs)}")
        capacity = parse_capacity(capacity)
        if multiprocessing:
            root = SHARED_MEMORY_ROOT if Path(SHARED_MEMORY_ROOT).is_dir() else None
            directory = Path(tempfile.mkdtemp(prefix="unibatch-", dir=root)) / "storage"
            shared = MemmapStorage.create(
                single_instance_space, capacity=capacity, cache_path=directory, initial_rows=initial_rows
            )
            shared._owner_pid, shared._temporary_root = os.getpid(), directory.parent
            return shared
        rows = capacity if capacity is not None else max(int(initial_rows), 1)
        arrays, packed = _allocate_leaves(leaf_table(single_instance_space), rows)
        return cls(single_instance_space, arrays, capacity, 0 if capacity is None else capacity, packed)

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
        """Read a storage written by :meth:`dumps` (the memmap layout) into memory."""
        source = MemmapStorage.load_from(path, single_instance_space, capacity=capacity, read_only=True)
        length = len(source)
        storage = cls.create(single_instance_space, capacity=source.capacity, initial_rows=max(length, 1))
        if source.capacity is None:
            storage._resize(length)
        if length:
            storage.set(slice(0, length), source._get(slice(0, length)))
        storage.is_mutable = not read_only
        source.close()
        return storage

    def __len__(self) -> int:
        return self._length

    def _find_host_views(self) -> None:
        """NumPy views of every leaf array when the backend has them (NumPy, PyTorch on the CPU), else None.

        Reads and writes then go through ``np.take`` and NumPy assignment and hand results to the
        backend without a copy: no per-op dispatch and no intra-op thread pool on the hot path.
        """
        views = [array if leaf.is_text else self.backend.host_view(array) for leaf, array in self._leaf_arrays()]
        self._views = None if any(view is None for view in views) else [view for view in views if view is not None]
        self._wraps = [
            None if leaf.is_text else self.backend.fresh_host_wrapper(leaf.numpy_dtype, self.device)
            for leaf in self._leaves
        ]
        self._host = None if self._views is None else HostRows(self._views, self._packing, self._packed, self._wraps)
        self.writes_host_leaves = self._host is not None

    @property
    def reads_on_host(self) -> bool:  # type: ignore[override]
        return self._host is not None

    def _leaf_arrays(self) -> list[tuple[Leaf, Any]]:
        return list(zip(self._leaves, self._arrays, strict=True))

    def _resize(self, length: int) -> None:
        rows = self._arrays[0].shape[0] if self._arrays else 0
        if length > rows:
            grown = max(length, 2 * rows)
            packing, packed = self._packing, self._packed
            arrays, self._packed = _allocate_leaves(self._leaves, grown, packing)
            keep = self._length
            if packing is not None and packed is not None and self._packed is not None:
                self._packed[:keep] = packed[:keep]
            self._arrays = [
                array if packing is not None and position in packing.positions else _grow(leaf, old, array, keep)
                for position, (leaf, old, array) in enumerate(zip(self._leaves, self._arrays, arrays, strict=True))
            ]
            self._find_host_views()
        self._length = length

    def _get(self, index: StorageIndex) -> Any:
        return assemble(self.single_instance_space, self._get_leaves(self._all_leaves, index))

    def _get_leaves(self, positions: Sequence[int], index: StorageIndex) -> list[Any]:
        host = self._host
        if host is not None:
            return host.read(tuple(positions), host_index(index))
        values = []
        for position in positions:
            leaf, array = self._leaves[position], self._arrays[position]
            if leaf.is_text:
                values.append(copy_rows(array, host_index(index)))
            elif isinstance(index, (int, slice)):
                values.append(self.backend.xp.asarray(array[index], copy=True))
            else:
                values.append(self.backend.xp.take(array, index, axis=0))
        return values

    def _set(self, index: StorageIndex, value: Any) -> None:
        self._check_writable("set")
        self._set_leaves(range(len(self._leaves)), index, split_value(self.single_instance_space, value))

    def set_leaves(self, index: int | slice, leaves: Sequence[Any]) -> None:
        host = self._host
        if host is None:
            super().set_leaves(index, leaves)
            return
        self._check_writable("set")
        host.write(index, leaves)

    def _set_leaves(self, positions: Sequence[int], index: StorageIndex, values: list[Any]) -> None:
        views = self._views
        if views is not None:
            assign_leaves(views, positions, host_index(index), values)
            return
        at = self.backend.at
        for position, leaf_value in zip(positions, values, strict=True):
            if self._leaves[position].is_text:
                self._arrays[position][host_index(index)] = leaf_value
            else:
                self._arrays[position] = at(self._arrays[position])[index].set(leaf_value)

    def get_column(self, nested_keys: Sequence[str]) -> SpaceStorage:
        return LeafColumnStorage(self, nested_keys)

    def clear(self) -> None:
        if self.capacity is None:
            self._check_writable("clear")
            self._length = 0

    def __getstate__(self) -> dict[str, Any]:
        """Host leaves travel as their NumPy memory (the packed rows whole); every view is derived again on arrival.

        Pickling a PyTorch tensor for another process moves it into shared memory, which would
        leave this storage's NumPy views on freed memory; and views of the packed rows pickled
        one by one would no longer be one array.
        """
        state = dict(self.__dict__)
        state["_host"] = None
        views = self._views
        if views is not None:
            packed = set(self._packing.positions) if self._packing is not None and self._packed is not None else set()
            state["_arrays"] = [None if position in packed else view for position, view in enumerate(views)]
            state["_views"] = None
            state["_host_arrays"] = True
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        host = state.pop("_host_arrays", False)
        self.__dict__.update(state)
        if host:
            self._arrays = [
                _share_host(leaf, self._packed_field(position) if array is None else array)
                for position, (leaf, array) in enumerate(zip(self._leaves, self._arrays, strict=True))
            ]
        self._find_host_views()

    def _packed_field(self, position: int) -> np.ndarray:
        if self._packing is None or self._packed is None:
            raise ValueError(f"leaf {position} was pickled as packed, but the storage has no packed rows")
        return self._packing.field(self._packed, position)

    def dumps(self, path: PathLike) -> None:
        """Write the rows to ``path`` in the memmap layout (reload with :meth:`load_from`)."""
        if (Path(path) / "memmap.json").is_file():  # an earlier dump of this storage: replace it
            shutil.rmtree(path)
        target = MemmapStorage.create(
            self.single_instance_space, capacity=self.capacity, cache_path=path, initial_rows=max(self._length, 1)
        )
        if self.capacity is None:
            target._resize(self._length)
        if self._length:
            target._set(slice(0, self._length), self.get(slice(0, self._length)))
        target.flush()
        target.close()


def _allocate_leaves(
    leaves: list[Leaf], rows: int, packing: PackedRows | None = None
) -> tuple[list[Any], np.ndarray | None]:
    """Zero-filled arrays for every leaf; the small ones as views of packed rows when the backend shares host memory.

    Returns the arrays and the packed rows (None when nothing is packed).
    """
    packing = packing or PackedRows.of(leaves)
    if packing is not None:
        packed = packing.allocate(rows)
        shared = {position: _share(leaves[position], packing.field(packed, position)) for position in packing.positions}
        if all(array is not None for array in shared.values()):
            arrays = [shared[i] if i in shared else _allocate(leaf, rows) for i, leaf in enumerate(leaves)]
            return arrays, packed
    return [_allocate(leaf, rows) for leaf in leaves], None


def _share_host(leaf: Leaf, host: np.ndarray) -> Any:
    """A host array (NumPy memory of a leaf that had host views) as the leaf's backend array, sharing it."""
    return host if leaf.is_text else leaf.space.backend.from_numpy(host, device=leaf.space.device)


def _share(leaf: Leaf, view: np.ndarray) -> Any:
    """``view`` as an array of the leaf's backend sharing its memory, or None (a device, or JAX, would copy)."""
    backend = leaf.space.backend
    wrapped = backend.from_numpy(view, device=leaf.space.device)
    host = backend.host_view(wrapped)
    return wrapped if host is not None and np.shares_memory(host, view) else None


def _allocate(leaf: Leaf, rows: int) -> Any:
    """Zero-filled rows of one leaf: NumPy memory shared with the backend where it can be (CPU).

    NumPy asks the kernel for huge pages on large allocations: 256 random 21 KB rows gather in
    430 µs from them against 610 µs from a backend's own 4 KiB-paged allocation (PyTorch's).
    """
    if leaf.is_text:
        return np.full((rows, *leaf.shape), "", dtype=object)
    space = leaf.space
    if _share(leaf, np.zeros(1, dtype=leaf.numpy_dtype)) is not None:  # a probe: JAX or a device would copy
        return space.backend.from_numpy(np.zeros((rows, *leaf.shape), dtype=leaf.numpy_dtype), device=space.device)
    return space.backend.xp.zeros((rows, *leaf.shape), dtype=space.dtype, device=space.device)


def _grow(leaf: Leaf, array: Any, grown: Any, keep: int) -> Any:
    """``grown`` (a fresh allocation) with the first ``keep`` rows of ``array``."""
    if keep:
        if leaf.is_text:
            grown[:keep] = array[:keep]
        else:
            grown = leaf.space.backend.at(grown)[:keep].set(array[:keep])
    return grown
