"""``SpaceStorage``: where the samples of one space live, addressed by physical slot.

A storage answers one question, *where bytes live*; ring arithmetic belongs to the buffer.
Optional abilities are declared, never probed: ``is_mutable``, ``is_multiprocessing_safe``,
``is_growable`` (``capacity is None``), ``supports_columns``, ``has_expensive_reads``.
An unsupported call raises :class:`~unibatch.errors.UnsupportedOperationError`, a write to
read-only data :class:`~unibatch.errors.ReadOnlyError`.

Indices given to ``get``/``set`` are already checked by the caller: an ``int``, a ``slice``
with step 1, or a 1-D integer array of the storage's backend, all inside ``[0, len)``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Generic

from typing_extensions import Self

from unibatch._typing import Array, BArrayType, BatchT, BDeviceType, BDtypeType, BRNGType
from unibatch.backends import ComputeBackend
from unibatch.errors import ReadOnlyError, UnsupportedOperationError
from unibatch.spaces import Space, batch_space, flatten_data, unflatten_data
from unibatch.storages._leaves import assemble

PathLike = str | os.PathLike[str]
StorageIndex = Any
"""``int``, ``slice`` (step 1) or a 1-D integer backend array, inside ``[0, len)``."""


class SpaceStorage(ABC, Generic[BatchT, BArrayType, BDeviceType, BDtypeType, BRNGType]):
    """Abstract storage of values of ``single_instance_space``, addressed by physical slot."""

    single_file_ext: ClassVar[str | None] = None
    """File extension when the storage is one file (``".hdf5"``); None for a directory."""
    registered_name: ClassVar[str | None] = None
    """The name under which metadata records this class (see ``register_storage``)."""
    supports_columns: ClassVar[bool] = False
    """Whether :meth:`get_column` returns a storage over one field."""
    has_expensive_reads: ClassVar[bool] = False
    """Whether a row read costs much more than a copy (decoding, remote I/O)."""
    is_persistent: ClassVar[bool] = False
    """Whether writes land in files in place (``flush`` makes them durable); otherwise a
    persistent buffer saves snapshots with ``dumps``."""

    capacity: int | None = None
    cache_filename: PathLike | None = None
    is_multiprocessing_safe: bool = False
    is_mutable: bool = True
    writes_host_leaves: bool = False
    """Whether :meth:`set_leaves` takes host leaves (NumPy arrays, Python and NumPy scalars) rather
    than the space's backend arrays: true for storages that write through NumPy arrays."""
    reads_on_host: bool = False
    """Whether :meth:`get` gathers host (NumPy) arrays: index arithmetic is then cheapest on a
    NumPy index, so callers bring index arrays to the host before mapping them."""

    def __init__(self, single_instance_space: Space) -> None:
        self.single_instance_space = single_instance_space
        self._batched_space = batch_space(single_instance_space, 1)

    # ------------------------------------------------------------------ properties
    @property
    def backend(self) -> ComputeBackend:
        return self.single_instance_space.backend

    @property
    def device(self) -> BDeviceType | None:
        return self.single_instance_space.device

    @property
    def is_growable(self) -> bool:
        """Whether the capacity is unlimited (``extend_length``/``shrink_length`` resize)."""
        return self.capacity is None

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        single_instance_space: Space,
        *args: Any,
        capacity: int | None,
        cache_path: PathLike | None = None,
        multiprocessing: bool = False,
        **kwargs: Any,
    ) -> Self:
        """Create an empty storage; ``capacity=None`` makes it growable."""
        raise UnsupportedOperationError(f"{cls.__name__} cannot be created")

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
        """Open a storage previously written to ``path``."""
        raise UnsupportedOperationError(f"{cls.__name__} cannot be loaded from disk")

    # ------------------------------------------------------------------ size
    def __len__(self) -> int:
        if self.capacity is None:
            raise UnsupportedOperationError(f"{type(self).__name__} must define __len__ for growable storage")
        return self.capacity

    def extend_length(self, length: int) -> None:
        """Grow a growable storage by ``length`` rows; ignored at fixed capacity."""
        if self.capacity is None and length > 0:
            self._check_writable("extend_length")
            self._resize(len(self) + int(length))

    def shrink_length(self, length: int) -> None:
        """Shrink a growable storage by ``length`` rows; ignored at fixed capacity."""
        if self.capacity is None and length > 0:
            self._check_writable("shrink_length")
            self._resize(max(len(self) - int(length), 0))

    def _resize(self, length: int) -> None:
        raise UnsupportedOperationError(f"{type(self).__name__} cannot grow or shrink")

    def check_stored(self, slots: Any) -> list[str]:
        """Losses found without reading the rows at ``slots`` (``int64[N]`` physical rows), one line each.

        For ``unibatch verify``: a format whose reads cannot tell a lost piece from stored zeros
        (a deleted Zarr chunk) lists the lost pieces here. None by default.
        """
        return []

    # ------------------------------------------------------------------ data
    @abstractmethod
    def get(self, index: StorageIndex) -> BatchT:
        """Values at ``index``: one value for an int, a batch otherwise."""

    @abstractmethod
    def set(self, index: StorageIndex, value: BatchT) -> None:
        """Write values (already validated against the space) at ``index``."""

    def set_leaves(self, index: int | slice, leaves: Sequence[Any]) -> None:
        """Write one row (an int) or a range of rows (a slice) given as leaves in flat order.

        The fast path of ``append`` and ``extend``: ``leaves`` are exactly what the space stores
        (:func:`~unibatch.spaces._exact.exact_leaves`), brought to the host first when
        :attr:`writes_host_leaves` says so. Same contract as :meth:`set` otherwise; storages with
        one array per leaf override it to skip rebuilding the nested value.
        """
        self.set(index, assemble(self.single_instance_space, list(leaves)))

    def get_flattened(self, index: StorageIndex) -> BArrayType:
        """Values at ``index`` flattened: ``(D,)`` for an int, ``(B, D)`` otherwise."""
        if isinstance(index, int):
            return flatten_data(self.single_instance_space, self.get(index))
        return flatten_data(self._batched_space, self.get(index), start_dim=1)

    def set_flattened(self, index: StorageIndex, value: Array) -> None:
        """Write flattened values at ``index``."""
        if isinstance(index, int):
            self.set(index, unflatten_data(self.single_instance_space, value))
        else:
            self.set(index, unflatten_data(self._batched_space, value, start_dim=1))

    def get_column(self, nested_keys: Sequence[str]) -> SpaceStorage:
        """A storage over the field at ``nested_keys`` sharing this storage's data."""
        raise UnsupportedOperationError(f"{type(self).__name__} has no column access")

    def clear(self) -> None:
        """Forget all rows: a growable storage shrinks to 0; a fixed one keeps its slots."""
        if self.capacity is None and len(self):
            self.shrink_length(len(self))

    # ------------------------------------------------------------------ persistence and lifecycle
    @abstractmethod
    def dumps(self, path: PathLike) -> None:
        """Persist the storage to ``path`` (its own location, or a copy elsewhere)."""

    def flush(self) -> None:
        """Make written rows durable where they are (no-op for memory)."""

    def close(self) -> None:
        """Release files and memory; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_writable(self, operation: str) -> None:
        if not self.is_mutable:
            raise ReadOnlyError(f"{type(self).__name__} is read-only; {operation} is not allowed")

    def __repr__(self) -> str:
        size = "growable" if self.capacity is None else f"capacity={self.capacity}"
        return f"{type(self).__name__}({size}, space={self.single_instance_space!r})"
