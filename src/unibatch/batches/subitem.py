"""``SubItemBatch``: a lazy read-only view of one field inside each sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unibatch._typing import BArrayType, BatchT, BDeviceType, BDtypeType, BRNGType
from unibatch.batches._base import BatchBase, Metadata
from unibatch.batches._indexing import NormalizedIndex
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import DictSpace, Space, TupleSpace


class SubItemBatch(BatchBase[BatchT, BArrayType, BDeviceType, BDtypeType, BRNGType]):
    """The field at ``sub_indexes`` (a key path of dict keys and tuple positions) of each sample.

    Metadata is per sample, not per field, so it passes through unchanged.

    >>> from unibatch.testing import InMemoryBatch
    >>> source = InMemoryBatch.from_range(3)
    >>> source.get_column(["x"]).get_at(slice(None)).tolist()
    [0, 1, 2]
    """

    is_mutable = False

    def __init__(self, batch: BatchBase, sub_indexes: Sequence[str | int]) -> None:
        keys: list[str | int] = [sub_indexes] if isinstance(sub_indexes, (str, int)) else list(sub_indexes)
        super().__init__(_follow(batch.single_space, keys), batch.single_metadata_space)
        self.batch = batch
        self.sub_indexes = keys

    @property
    def has_expensive_reads(self) -> bool:  # type: ignore[override]
        """As the source's: window views then read each distinct row once."""
        return self.batch.has_expensive_reads

    def __len__(self) -> int:
        return len(self.batch)

    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        data, metadata = self.batch._get(index, with_metadata)
        for key in self.sub_indexes:
            data = data[key]
        return data, metadata


def _follow(space: Space, keys: list[str | int]) -> Space:
    """The sub-space at a key path, with an error naming the first key that does not exist."""
    for position, key in enumerate(keys):
        path = "/".join(map(str, keys[: position + 1]))
        in_dict = isinstance(space, DictSpace) and isinstance(key, str) and key in space.spaces
        in_tuple = isinstance(space, TupleSpace) and isinstance(key, int) and -len(space) <= key < len(space)
        if in_dict or in_tuple:
            space = space[key]  # type: ignore[index]
        else:
            raise SpaceMismatchError(f"column {path!r} does not exist in {space!r}")
    return space
