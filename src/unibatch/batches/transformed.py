"""``TransformedBatch``: a view applying a transformation on read and its inverse on write."""

from __future__ import annotations

from typing import Any

from unibatch._typing import BArrayType, BatchT, BDeviceType, BDtypeType, BRNGType
from unibatch.batches._base import BatchBase, Metadata
from unibatch.batches._indexing import NormalizedIndex, is_single
from unibatch.spaces import Space
from unibatch.transformations import DataTransformation


class TransformedBatch(BatchBase[BatchT, BArrayType, BDeviceType, BDtypeType, BRNGType]):
    """``transformation`` applied lazily to every sample of ``batch``.

    Writes go through ``transformation.direction_inverse`` and are possible when it exists and
    ``batch`` is mutable. The transformation receives the source's single space for one sample
    and ``batch_space(source, 1)`` for a batch, as in the reference implementation.

    Args:
        batch: the source.
        transformation: maps source samples to the samples of this view.
        metadata_transformation: maps the source's metadata (used only when it has metadata).
    """

    def __init__(
        self,
        batch: BatchBase,
        transformation: DataTransformation,
        metadata_transformation: DataTransformation | None = None,
    ) -> None:
        source_metadata = batch.single_metadata_space
        if source_metadata is None:
            metadata_transformation = None
        metadata_space: Any = source_metadata
        if metadata_transformation is not None and source_metadata is not None:
            metadata_space = metadata_transformation.get_target_space_from_source(source_metadata)
        super().__init__(transformation.get_target_space_from_source(batch.single_space), metadata_space)
        self.batch = batch
        self.transformation = transformation
        self.metadata_transformation = metadata_transformation
        self._inverse = transformation.direction_inverse(batch.single_space) if transformation.has_inverse else None

    @property
    def is_mutable(self) -> bool:  # type: ignore[override]
        return self._inverse is not None and self.batch.is_mutable

    @property
    def has_expensive_reads(self) -> bool:  # type: ignore[override]
        """As the source's: window views then read each distinct row once."""
        return self.batch.has_expensive_reads

    def __len__(self) -> int:
        return len(self.batch)

    def get_at(self, idx: Any = None) -> BatchT:
        """Fetch transformed samples; ``idx=None`` (the reference page's default) means every sample (``...``)."""
        return super().get_at(... if idx is None else idx)

    def _source_space(self, index: NormalizedIndex) -> Space:
        return self.batch.single_space if is_single(index) else self.batch._batched_space

    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        data, metadata = self.batch._get(index, with_metadata)
        data = self.transformation.transform(self._source_space(index), data)
        metadata_space = self.batch.single_metadata_space
        if metadata is not None and metadata_space is not None and self.metadata_transformation is not None:
            metadata = self.metadata_transformation.transform(metadata_space, metadata)
        return data, metadata

    def _to_source(self, value: Any, single: bool) -> Any:
        if self._inverse is None:
            raise self._unsupported("writes")
        return self._inverse.transform(self.single_space if single else self._batched_space, value)

    def _set(self, index: NormalizedIndex, value: Any) -> None:
        self.batch._set(index, self._to_source(value, is_single(index)))

    def _extend(self, value: Any) -> None:
        self.batch._extend(self._to_source(value, single=False))

    def _remove(self, index: NormalizedIndex) -> None:
        self.batch._remove(index)
