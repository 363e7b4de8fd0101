"""``InMemoryBatch``: the simplest real, mutable ``BatchBase`` (one batched value in memory).

It is the source that view tests wrap, and a reference for writing a batch in a few lines.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optree

from unibatch.backends import ComputeBackend, NumpyComputeBackend
from unibatch.batches import BatchBase
from unibatch.batches._base import Metadata
from unibatch.batches._indexing import NormalizedIndex
from unibatch.spaces import BoxSpace, DictSpace, Space, batch_size_data, batch_space, get_at, set_at


class InMemoryBatch(BatchBase):
    """Samples of ``single_space`` kept as one batched value (and optional batched metadata).

    Args:
        single_space: the space of one sample.
        data: a batch of samples (leading axis = number of samples); None for an empty batch.
        single_metadata_space: the space of one sample's metadata, or None.
        metadata: a batch of metadata matching ``data``; required with a metadata space.
        mutable: whether writes are allowed.
    """

    def __init__(
        self,
        single_space: Space,
        data: Any = None,
        single_metadata_space: DictSpace | None = None,
        metadata: Any = None,
        mutable: bool = True,
    ) -> None:
        super().__init__(single_space, single_metadata_space)
        self.data = batch_space(single_space, 0).create_empty() if data is None else data
        if single_metadata_space is not None and metadata is None:
            metadata = batch_space(single_metadata_space, 0).create_empty()
        self.metadata = metadata
        self.is_mutable = mutable

    @classmethod
    def from_range(
        cls, n: int, start: int = 0, backend: ComputeBackend = NumpyComputeBackend, mutable: bool = True
    ) -> InMemoryBatch:
        """``n`` samples ``{"x": start + i}`` (integer scalars) on ``backend``."""
        space = DictSpace(backend, {"x": BoxSpace(backend, -(2**31), 2**31 - 1, backend.default_integer_dtype)})
        values = backend.asarray(np.arange(start, start + n), dtype=backend.default_integer_dtype)
        return cls(space, {"x": values}, mutable=mutable)

    def __len__(self) -> int:
        size = batch_size_data(self.data)
        return 0 if size is None else size

    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        data = get_at(self._batched_space, self.data, index)
        if not with_metadata or self.single_metadata_space is None:
            return data, None
        return data, get_at(self.single_metadata_space, self.metadata, index)

    def _set(self, index: NormalizedIndex, value: Any) -> None:
        if isinstance(index, int) or int(index.shape[0]):
            self.data = set_at(self._batched_space, self.data, index, value)

    def _extend(self, value: Any) -> None:
        if self.single_metadata_space is not None:
            raise ValueError("InMemoryBatch with metadata grows through extend_with_metadata")
        self.data = _concat(self.data, value)

    def extend_with_metadata(self, value: Any, metadata: Any) -> None:
        """Append samples together with their metadata."""
        self.data = _concat(self.data, value)
        self.metadata = _concat(self.metadata, metadata)

    def _remove(self, index: NormalizedIndex) -> None:
        keep = np.ones(len(self), dtype=bool)
        keep[self.backend.to_numpy(self.backend.asarray(index))] = False
        kept = self.backend.asarray(np.nonzero(keep)[0], dtype=self.backend.default_index_dtype)
        self.data = get_at(self._batched_space, self.data, kept)
        if self.metadata is not None and self.single_metadata_space is not None:
            self.metadata = get_at(self.single_metadata_space, self.metadata, kept)


def _concat(old: Any, new: Any) -> Any:
    """Concatenate two batches leaf by leaf along the first axis (object arrays included)."""

    def leaf(a: Any, b: Any) -> Any:
        if isinstance(a, np.ndarray) and a.dtype == object:
            return np.concatenate([a, np.asarray(b, dtype=object)])
        from unibatch.backends import get_backend

        return get_backend(a).xp.concat([a, b], axis=0)

    return optree.tree_map(leaf, old, new)
