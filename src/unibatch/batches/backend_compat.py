"""``ToBackendOrDeviceBatch``: a view that converts another batch to a backend and/or device."""

from __future__ import annotations

from typing import Any, Generic

from unibatch._typing import (
    Array,
    BArrayType,
    BatchT,
    BDeviceType,
    BDtypeType,
    BRNGType,
    Device,
    WrapperBArrayT,
    WrapperBatchT,
    WrapperBDeviceT,
    WrapperBDtypeT,
    WrapperBRngT,
)
from unibatch.backends import ComputeBackend, convert, convert_tree
from unibatch.batches._base import BatchBase, Metadata
from unibatch.batches._indexing import NormalizedIndex, is_single


class ToBackendOrDeviceBatch(
    BatchBase[WrapperBatchT, WrapperBArrayT, WrapperBDeviceT, WrapperBDtypeT, WrapperBRngT],
    Generic[
        WrapperBatchT,
        WrapperBArrayT,
        WrapperBDeviceT,
        WrapperBDtypeT,
        WrapperBRngT,
        BatchT,
        BArrayType,
        BDeviceType,
        BDtypeType,
        BRNGType,
    ],
):
    """``batch`` seen on ``backend`` and/or ``device``: reads convert, writes convert back.

    Either argument may be None (keep the source's). Conversion uses DLPack where it is safe
    (see :mod:`unibatch.backends.transfer`).
    """

    def __init__(self, batch: BatchBase, backend: ComputeBackend | None = None, device: Device | None = None) -> None:
        target = backend or batch.backend
        if device is None and target is batch.backend:
            device = batch.device
        metadata = batch.single_metadata_space
        super().__init__(
            batch.single_space.to(target, device),
            None if metadata is None else metadata.to(target, device),
        )
        self.batch = batch
        self.target_backend = target
        self.target_device = device

    @property
    def backend(self) -> ComputeBackend:
        return self.target_backend

    @property
    def device(self) -> Device | None:
        return self.target_device

    @property
    def is_mutable(self) -> bool:  # type: ignore[override]
        return self.batch.is_mutable

    @property
    def has_expensive_reads(self) -> bool:  # type: ignore[override]
        """As the source's: window views then read each distinct row once."""
        return self.batch.has_expensive_reads

    def __len__(self) -> int:
        return len(self.batch)

    def _source_index(self, index: NormalizedIndex) -> NormalizedIndex:
        return index if is_single(index) else convert(index, self.batch.backend, self.batch.device)

    def _to_target(self, tree: Any) -> Any:
        return convert_tree(tree, self.target_backend, self.target_device)

    def _to_source(self, tree: Any) -> Any:
        return convert_tree(tree, self.batch.backend, self.batch.device)

    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        data, metadata = self.batch._get(self._source_index(index), with_metadata)
        return self._to_target(data), self._to_target(metadata)

    def _get_flattened(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Array, Metadata]:
        data, metadata = self.batch._get_flattened(self._source_index(index), with_metadata)
        return self._to_target(data), self._to_target(metadata)

    def _read_key(self, key: Any, in_metadata: bool, index: NormalizedIndex) -> Any | None:
        values = self.batch._read_key(key, in_metadata, self._source_index(index))
        return None if values is None else self._to_target(values)

    def _set(self, index: NormalizedIndex, value: Any) -> None:
        self.batch._set(self._source_index(index), self._to_source(value))

    def _set_flattened(self, index: NormalizedIndex, value: Array) -> None:
        self.batch._set_flattened(self._source_index(index), self._to_source(value))

    def _extend(self, value: Any) -> None:
        self.batch._extend(self._to_source(value))

    def _extend_flattened(self, value: Array) -> None:
        self.batch._extend_flattened(self._to_source(value))

    def _remove(self, index: NormalizedIndex) -> None:
        self.batch._remove(self._source_index(index))
