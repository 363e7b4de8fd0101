"""``SpaceStorage``: where the samples of one space live, addressed by physical slot.

A storage answers one question, *where bytes live*; ring arithmetic belongs to the buffer.
Optional abilities are declared, never probed: ``is_mutable``, ``is_multiprocessing_safe``,
``is_growable`` (``capacity is None``), ``supports_columns``, ``has_expensive_reads``.
An unsupported call raises :class:`~unibatch.errors.UnsupportedOperationError`, a write to
read-only data :class:`~unibatch.errors.ReadOnlyError`.

The public ``get``/``set``/``get_flattened``/``set_flattened`` take every index form of DESIGN.md
§3 and normalise it with the shared normaliser (:func:`~unibatch.backends._indexing.normalize_rows`),
so an index means the same thing on every storage. Formats implement ``_get``/``_set`` (and
optionally ``_get_flattened``/``_set_flattened``, ``set_leaves``), which receive a normalised index:
an ``int``, a ``slice`` with step 1, or a 1-D integer array (NumPy when :attr:`reads_on_host`, else
the storage's backend), all inside ``[0, len)``. Buffers and compositions, which already hold
normalised indices, call these directly (no second check on the hot path). A format never
modifies the index it receives.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Generic

from typing_extensions import Self

from unibatch._typing import Array, BArrayType, BatchT, BDeviceType, BDtypeType, BRNGType
from unibatch.backends import ComputeBackend
from unibatch.backends._indexing import normalize_rows
from unibatch.errors import ClosedError, IndexOutOfRangeError, ReadOnlyError, UnsupportedOperationError
from unibatch.spaces import Space, batch_space, flatten_data, unflatten_data
from unibatch.storages._leaves import assemble

PathLike = str | os.PathLike[str]
StorageIndex = Any
"""A normalised index: ``int``, ``slice`` (step 1) or a 1-D integer array, inside ``[0, len)``."""


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
    _closed: bool = False
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

    # ------------------------------------------------------------------ data: any index form
    def get(self, index: Any) -> BatchT:
        """Values at ``index``: one value for an int, a batch otherwise.

        ``index`` is any form DESIGN.md §3 lists (int, slice with any step, ``...``, integer
        array or list, boolean mask of full length), counted in physical slots; negative indices
        count from the end. The caller's index array is never modified.

        Raises:
            IndexOutOfRangeError: an index outside ``[-len, len)`` or a mask of the wrong length.
            InvalidIndexError: an index of a form unibatch does not accept (bool, float, step 0...).
            ClosedError: the storage is closed.
        """
        return self._get(self._normalize(index))

    def set(self, index: Any, value: BatchT) -> None:
        """Write values (already validated against the space) at ``index`` (any form, as in :meth:`get`)."""
        self._check_writable("set")
        self._set(self._normalize(index), value)

    def get_flattened(self, index: Any) -> BArrayType:
        """Values at ``index`` flattened: ``(D,)`` for an int, ``(B, D)`` otherwise."""
        return self._get_flattened(self._normalize(index))

    def set_flattened(self, index: Any, value: Array) -> None:
        """Write flattened values at ``index`` (any form, as in :meth:`get`)."""
        self._check_writable("set_flattened")
        self._set_flattened(self._normalize(index), value)

    def _normalize(self, index: Any) -> StorageIndex:
        """``index`` checked and normalised by the shared normaliser (the public methods' only step)."""
        self._check_open()
        lagging = not self.is_mutable and self.is_growable  # a reader: the writer may have added rows since
        if lagging and isinstance(index, slice) and index.stop is not None and index.stop > len(self):
            self.refresh()
        try:
            return normalize_rows(index, len(self), self.backend, self.device, host=self.reads_on_host)
        except IndexOutOfRangeError:
            if not lagging:
                raise
            self.refresh()
            return normalize_rows(index, len(self), self.backend, self.device, host=self.reads_on_host)

    # ------------------------------------------------------------------ data: normalised indices
    @abstractmethod
    def _get(self, index: StorageIndex) -> BatchT:
        """Values at a normalised ``index``: one value for an int, a batch otherwise."""

    @abstractmethod
    def _set(self, index: StorageIndex, value: BatchT) -> None:
        """Write values (already validated against the space) at a normalised ``index``."""

    def set_leaves(self, index: int | slice, leaves: Sequence[Any]) -> None:
        """Write one row (an int) or a range of rows (a slice) given as leaves in flat order.

        The fast path of ``append`` and ``extend``: ``index`` is normalised (as for :meth:`_set`)
        and ``leaves`` are exactly what the space stores
        (:func:`~unibatch.spaces._exact.exact_leaves`), brought to the host first when
        :attr:`writes_host_leaves` says so. Same contract as :meth:`_set` otherwise; storages with
        one array per leaf override it to skip rebuilding the nested value.
        """
        self._set(index, assemble(self.single_instance_space, list(leaves)))

    def _get_flattened(self, index: StorageIndex) -> BArrayType:
        if isinstance(index, int):
            return flatten_data(self.single_instance_space, self._get(index))
        return flatten_data(self._batched_space, self._get(index), start_dim=1)

    def _set_flattened(self, index: StorageIndex, value: Array) -> None:
        if isinstance(index, int):
            self._set(index, unflatten_data(self.single_instance_space, value))
        else:
            self._set(index, unflatten_data(self._batched_space, value, start_dim=1))

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

    def refresh(self) -> None:
        """Read-only handles: see the rows a writer committed since this one opened (no-op by default)."""

    def close(self) -> None:
        """Release files and memory; idempotent. Later reads and writes raise :class:`ClosedError`.

        Subclasses that release something call ``super().close()``.
        """
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"{type(self).__name__} at {self.cache_filename} is closed")

    def _check_writable(self, operation: str) -> None:
        """Refuse a write to a closed or read-only storage (one attribute test each: it is on the hot path)."""
        if self._closed:
            raise ClosedError(f"{type(self).__name__} at {self.cache_filename} is closed; {operation} is not allowed")
        if not self.is_mutable:
            raise ReadOnlyError(f"{type(self).__name__} is read-only; {operation} is not allowed")

    def __repr__(self) -> str:
        size = "growable" if self.capacity is None else f"capacity={self.capacity}"
        return f"{type(self).__name__}({size}, space={self.single_instance_space!r})"
