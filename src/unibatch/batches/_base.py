"""``BatchBase``: a dataset-like collection of structured samples.

Public methods (``get_at``, ``set_at``, ``extend``...) normalise the index and validate values
once, at the boundary, then call one primitive per path that subclasses implement:

* ``_get(index, with_metadata)``: the only abstract read; returns ``(data, metadata)``.
* ``_get_flattened(index, with_metadata)``: defaults to flattening ``_get``; override for speed.
* ``_set``, ``_extend``, ``_append``, ``_remove`` (and the flattened ``_set_flattened``,
  ``_extend_flattened``): default to a named error, or to the structured primitive.

Structured and flattened paths never call each other in a loop, so a subclass that implements
only ``_get`` gets every read, and an unsupported operation raises
:class:`~unibatch.errors.ReadOnlyError` or :class:`~unibatch.errors.UnsupportedOperationError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import Self

from unibatch._typing import Array, BArrayType, BatchT, BDeviceType, BDtypeType, BRNGType
from unibatch.batches._indexing import NormalizedIndex, index_length, is_single, normalize_index
from unibatch.errors import ClosedError, ReadOnlyError, SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import (
    DictSpace,
    Space,
    batch_space,
    check_data,
    check_flat_values,
    concatenate,
    flat_dim,
    flatten_data,
)
from unibatch.spaces import unflatten_data as _unflatten

if TYPE_CHECKING:
    from unibatch.backends import ComputeBackend

Metadata = dict[str, Any] | None


class BatchBase(ABC, Generic[BatchT, BArrayType, BDeviceType, BDtypeType, BRNGType]):
    """Base interface for dataset-like collections of structured samples.

    Every write is validated before anything is written (DESIGN §3.11): structure, shapes and
    dtypes, and no value may change in the cast to the space's dtypes (``300`` into ``uint8``,
    ``1e300`` into ``float32``, ``2.7`` from a flat float row into an ``int64`` leaf raise
    :class:`~unibatch.errors.SpaceMismatchError`). With :attr:`check_bounds` writes also check
    the bounds of every ``BoxSpace`` leaf.

    Args:
        single_space: the space of one sample.
        single_metadata_space: the space of one sample's metadata (a ``DictSpace``), or None
            when the batch carries no metadata (then every metadata result is None).
    """

    is_mutable: bool = True
    check_bounds: bool = False
    """Whether writes also refuse values outside the bounds of a ``BoxSpace`` leaf (NaN always,
    ``inf`` unless the bound is infinite) with :class:`~unibatch.errors.SpaceMismatchError`,
    before anything is written. Off by default: it reads every value written (``append`` and
    ``extend`` then leave their compiled fast path). Set it per batch; persistent buffers keep
    it in their metadata from their next commit on."""
    _closed: bool = False
    """Set by ``close()`` of batches that own resources; writes then raise :class:`ClosedError`."""
    has_expensive_reads: bool = False
    """Whether reading a row costs much more than copying it (decoding video, remote storage);
    window views then read each distinct row once instead of every requested frame."""

    def __init__(self, single_space: Space, single_metadata_space: DictSpace | None = None) -> None:
        self.single_space = single_space
        self.single_metadata_space = single_metadata_space
        self._batched_space = batch_space(single_space, 1)
        self._flat_dim: int | None = None

    # ------------------------------------------------------------------ properties
    @property
    def backend(self) -> ComputeBackend:
        return self.single_space.backend

    @property
    def device(self) -> BDeviceType | None:
        return self.single_space.device

    @abstractmethod
    def __len__(self) -> int: ...

    # ------------------------------------------------------------------ primitives
    @abstractmethod
    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        """Structured samples at a normalised index; metadata only when asked (else None).

        For an index array the arrays returned belong to the caller: fresh, or read-only when
        shared (views rewrite them in place, never a source's own memory).
        """

    def _get_flattened(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Array, Metadata]:
        data, metadata = self._get(index, with_metadata)
        return self._flatten(index, data), metadata

    def _set(self, index: NormalizedIndex, value: Any) -> None:
        raise self._unsupported("set_at")

    def _set_flattened(self, index: NormalizedIndex, value: Array) -> None:
        self._set(index, self._unflatten(index, value))

    def _extend(self, value: Any) -> None:
        raise self._unsupported("extend")

    def _extend_flattened(self, value: Array) -> None:
        self._extend(_unflatten(self._batched_space, value, start_dim=1))

    def _append(self, value: Any) -> None:
        self._extend(concatenate(self.single_space, [value]))

    def _remove(self, index: NormalizedIndex) -> None:
        raise self._unsupported("remove_at")

    def _read_key(self, key: Sequence[str | int], in_metadata: bool, index: NormalizedIndex) -> Any | None:
        """The values of one field (or metadata key) at ``index`` when reading it alone is cheap.

        None means "not cheaper than reading whole rows"; window views then read rows instead.
        """
        return None

    def _unsupported(self, operation: str) -> Exception:
        if not self.is_mutable:
            return ReadOnlyError(f"{type(self).__name__} is read-only; {operation} is not allowed")
        return UnsupportedOperationError(f"{type(self).__name__} does not support {operation}")

    # ------------------------------------------------------------------ helpers for subclasses
    def _index(self, idx: Any) -> NormalizedIndex:
        return normalize_index(idx, len(self), self.backend, self.device)

    def _flatten(self, index: NormalizedIndex, data: Any) -> Array:
        if is_single(index):
            return flatten_data(self.single_space, data)
        return flatten_data(self._batched_space, data, start_dim=1)

    def _unflatten(self, index: NormalizedIndex, value: Array) -> Any:
        if is_single(index):
            return _unflatten(self.single_space, value)
        return _unflatten(self._batched_space, value, start_dim=1)

    def _check_writable(self, operation: str) -> None:
        """Refuse a write to a closed or read-only batch (one attribute test each: it is on the hot path)."""
        if self._closed:
            raise ClosedError(f"{type(self).__name__} is closed; {operation} is not allowed")
        if not self.is_mutable:
            raise ReadOnlyError(f"{type(self).__name__} is read-only; {operation} is not allowed")

    def _check_value(self, index: NormalizedIndex, value: Any) -> None:
        """Validate a structured value for ``index`` before anything is written."""
        if is_single(index):
            check_data(self.single_space, value, bounds=self.check_bounds)
            return
        (count,) = check_data(self.single_space, value, batch_ndim=1, bounds=self.check_bounds)
        if count != index_length(index):
            raise SpaceMismatchError(f"expected a batch of {index_length(index)} values for the index, got {count}")

    def _check_flat(self, value: Any, batch_ndim: int, count: int | None = None) -> int:
        """Validate a flattened value (``(D,)`` or ``(B, D)``); returns the batch size.

        Checks the shape, that every leaf keeps its values when its columns are cast back to
        the leaf's dtype (:func:`~unibatch.spaces.check_flat_values`), and with
        :attr:`check_bounds` the bounds.
        """
        if self._flat_dim is None:
            dim = flat_dim(self.single_space)
            if dim is None:
                raise UnsupportedOperationError(f"{self.single_space!r} has no flat form")
            self._flat_dim = dim
        expected = (self._flat_dim,) if batch_ndim == 0 else (count if count is not None else "B", self._flat_dim)
        if not self.backend.is_backendarray(value):
            raise SpaceMismatchError(f"expected a {self.backend.simplified_name} array of shape {expected}")
        shape = tuple(value.shape)
        if len(shape) != batch_ndim + 1 or shape[-1] != self._flat_dim or (count is not None and shape[0] != count):
            raise SpaceMismatchError(f"expected a flat value of shape {expected}, got {shape}")
        check_flat_values(self.single_space, value)
        if self.check_bounds:
            space = self.single_space if batch_ndim == 0 else self._batched_space
            structured = _unflatten(space, value, start_dim=batch_ndim)
            check_data(self.single_space, structured, batch_ndim=batch_ndim, bounds=True)
        return shape[0] if batch_ndim else 1

    # ------------------------------------------------------------------ reads
    def get_at(self, idx: Any) -> BatchT:
        """Fetch samples in their structured form (an int gives one sample, else a batch)."""
        return self._public_read(idx, self._get, False)[0]

    def get_at_with_metadata(self, idx: Any) -> tuple[BatchT, Metadata]:
        """Fetch structured samples together with their metadata (None without a metadata space)."""
        return self._public_read(idx, self._get, True)

    def get_flattened_at(self, idx: Any) -> BArrayType:
        """Fetch samples as flat arrays: ``(D,)`` for an int, ``(B, D)`` otherwise."""
        return self._public_read(idx, self._get_flattened, False)[0]

    def get_flattened_at_with_metadata(self, idx: Any) -> tuple[BArrayType, Metadata]:
        """Fetch flattened samples together with their metadata."""
        return self._public_read(idx, self._get_flattened, True)

    def _public_read(
        self, idx: Any, read: Callable[[NormalizedIndex, bool], tuple[Any, Metadata]], with_metadata: bool
    ) -> tuple[Any, Metadata]:
        """The one door of the public reads: normalise ``idx``, then ``read`` (``_get`` or ``_get_flattened``).

        Buffers that read beside a writer override it to retry a read the writer overtook.
        """
        return read(self._index(idx), with_metadata)

    def __getitem__(self, idx: Any) -> BatchT:
        return self.get_at(idx)

    # ------------------------------------------------------------------ writes
    def set_at(self, idx: Any, value: BatchT) -> None:
        """Overwrite existing samples with structured data (validated first)."""
        self._check_writable("set_at")
        index = self._index(idx)
        self._check_value(index, value)
        self._set(index, value)

    def set_flattened_at(self, idx: Any, value: BArrayType) -> None:
        """Overwrite existing samples with flattened data (validated first)."""
        self._check_writable("set_flattened_at")
        index = self._index(idx)
        if is_single(index):
            self._check_flat(value, 0)
        else:
            self._check_flat(value, 1, index_length(index))
        self._set_flattened(index, value)

    def __setitem__(self, idx: Any, value: BatchT) -> None:
        self.set_at(idx, value)

    def append(self, value: BatchT) -> None:
        """Append one structured sample."""
        self._check_writable("append")
        check_data(self.single_space, value, bounds=self.check_bounds)
        self._append(value)

    def append_flattened(self, value: BArrayType) -> None:
        """Append one flattened sample of shape ``(D,)``."""
        self._check_writable("append_flattened")
        self._check_flat(value, 0)
        self._extend_flattened(value[None])  # type: ignore[index]

    def extend(self, value: BatchT) -> None:
        """Append a batch of structured samples (leading axis = number of samples)."""
        self._check_writable("extend")
        (count,) = check_data(self.single_space, value, batch_ndim=1, bounds=self.check_bounds)
        if count:
            self._extend(value)

    def extend_flattened(self, value: BArrayType) -> None:
        """Append a batch of flattened samples of shape ``(B, D)``."""
        self._check_writable("extend_flattened")
        if self._check_flat(value, 1):
            self._extend_flattened(value)

    def remove_at(self, idx: Any) -> None:
        """Remove one or more samples."""
        self._check_writable("remove_at")
        self._remove(self._index(idx))

    def __delitem__(self, idx: Any) -> None:
        self.remove_at(idx)

    def extend_from(self, other: BatchBase, chunk_size: int = 8, tqdm: bool = False) -> None:
        """Copy every sample of ``other`` into this batch in chunks of ``chunk_size`` rows.

        With ``tqdm=True`` a progress bar (rows and rows/s) is shown; it needs ``unibatch[cli]``.
        """
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        total = len(other)
        progress = None
        if tqdm:
            from unibatch._optional import require

            progress = require("tqdm", "cli").tqdm(total=total, unit="rows", desc="extend_from")
        try:
            for start in range(0, total, chunk_size):
                stop = min(start + chunk_size, total)
                self.extend(other.get_at(slice(start, stop)))
                if progress is not None:
                    progress.update(stop - start)
        finally:
            if progress is not None:
                progress.close()

    # ------------------------------------------------------------------ views and lifecycle
    def get_slice(self, idx: Any) -> BatchBase:
        """A lazy view over the samples at ``idx`` (an int gives a one-row view)."""
        from unibatch.batches.subindex import SubIndexedBatch

        return SubIndexedBatch(self, idx)

    def get_column(self, nested_keys: Sequence[str | int]) -> BatchBase:
        """A lazy read-only view of the field at ``nested_keys`` inside each sample."""
        from unibatch.batches.subitem import SubItemBatch

        return SubItemBatch(self, nested_keys)

    def close(self) -> None:
        """Release resources held by this object (views hold none; sources are never closed)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(len={len(self)}, space={self.single_space!r})"
