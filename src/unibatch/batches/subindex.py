"""``SubIndexedBatch``: a lazy view over a fixed subset of another batch's samples."""

from __future__ import annotations

from typing import Any

from unibatch._typing import Array, BArrayType, BatchT, BDeviceType, BDtypeType, BRNGType
from unibatch.batches._base import BatchBase, Metadata
from unibatch.batches._indexing import NormalizedIndex, index_length, is_single, normalize_index
from unibatch.errors import UnsupportedOperationError


class SubIndexedBatch(BatchBase[BatchT, BArrayType, BDeviceType, BDtypeType, BRNGType]):
    """The samples ``batch[sub_indexes]``, read and written through to ``batch``.

    ``sub_indexes`` is any index form: an int (negative too) gives a one-row view; a slice,
    an integer array or a boolean mask give a snapshot of those positions; ``...`` gives a
    live view that follows the length of ``batch`` (and can be extended).

    >>> from unibatch.testing import InMemoryBatch
    >>> source = InMemoryBatch.from_range(5)
    >>> view = source.get_slice(slice(1, None, 2))
    >>> len(view), int(view.get_at(-1)["x"])
    (2, 3)
    """

    def __init__(self, batch: BatchBase, sub_indexes: Any) -> None:
        super().__init__(batch.single_space, batch.single_metadata_space)
        self.batch = batch
        self.sub_indexes = sub_indexes
        self._table: Array | None = None
        if sub_indexes is not Ellipsis:
            index = normalize_index(sub_indexes, len(batch), batch.backend, batch.device)
            if is_single(index):
                index = batch.backend.asarray([index], dtype=batch.backend.default_index_dtype, device=batch.device)
            self._table = index

    @property
    def is_mutable(self) -> bool:  # type: ignore[override]
        return self.batch.is_mutable

    @property
    def has_expensive_reads(self) -> bool:  # type: ignore[override]
        """As the source's: window views then read each distinct row once."""
        return self.batch.has_expensive_reads

    def __len__(self) -> int:
        return len(self.batch) if self._table is None else index_length(self._table)

    def _parent_index(self, index: NormalizedIndex) -> NormalizedIndex:
        if self._table is None:
            return index
        if is_single(index):
            return int(self._table[index])
        return self.backend.xp.take(self._table, index, axis=0)

    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        return self.batch._get(self._parent_index(index), with_metadata)

    def _get_flattened(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Array, Metadata]:
        return self.batch._get_flattened(self._parent_index(index), with_metadata)

    def _read_key(self, key: Any, in_metadata: bool, index: NormalizedIndex) -> Any | None:
        return self.batch._read_key(key, in_metadata, self._parent_index(index))

    def _set(self, index: NormalizedIndex, value: Any) -> None:
        self.batch._set(self._parent_index(index), value)

    def _set_flattened(self, index: NormalizedIndex, value: Array) -> None:
        self.batch._set_flattened(self._parent_index(index), value)

    def _extend(self, value: Any) -> None:
        self._require_live("extend")
        self.batch._extend(value)

    def _extend_flattened(self, value: Array) -> None:
        self._require_live("extend_flattened")
        self.batch._extend_flattened(value)

    def _remove(self, index: NormalizedIndex) -> None:
        self._require_live("remove_at")
        self.batch._remove(index)

    def _require_live(self, operation: str) -> None:
        if self._table is not None:
            raise UnsupportedOperationError(f"{operation} needs a live view (get_slice(...)), not a fixed subset")
