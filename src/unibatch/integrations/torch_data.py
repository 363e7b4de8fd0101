"""PyTorch ``DataLoader`` bridge: batches and samplers as torch datasets, and torch datasets as batches.

``BatchDataset`` is map-style with a batched ``__getitems__`` (one gather per DataLoader batch).
With :func:`data_loader` (or ``collate_fn=keep_batched``) that gather is the DataLoader's batch as it
is; a plain ``DataLoader(BatchDataset(batch), batch_size=B)`` works too, its default collate
stacking the rows of the gather again. ``SamplerDataset`` is iterable: each DataLoader worker
draws its own stream from the sampler's seed and the worker id. ``TorchDatasetBatch`` goes the other way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from unibatch._optional import require
from unibatch.backends import backend_from_name
from unibatch.batches import BatchBase, ToBackendOrDeviceBatch
from unibatch.batches._base import Metadata
from unibatch.batches._indexing import NormalizedIndex, is_single
from unibatch.samplers import StepSampler
from unibatch.spaces import Space, concatenate, construct_space_from_data, get_at

require("torch", "torch")  # a clear error naming the extra when PyTorch is missing

import torch  # noqa: E402


def _as_torch(batch: BatchBase) -> BatchBase:
    pytorch = backend_from_name("pytorch")
    return batch if batch.backend is pytorch else ToBackendOrDeviceBatch(batch, pytorch)


class BatchDataset(torch.utils.data.Dataset):
    """A map-style torch dataset over any :class:`BatchBase` (values converted to torch).

    Args:
        batch: the source.
        include_metadata: items are ``(data, metadata)`` instead of ``data``.
    """

    def __init__(self, batch: BatchBase, include_metadata: bool = False) -> None:
        self.batch = _as_torch(batch)
        self.include_metadata = include_metadata

    def __len__(self) -> int:
        return len(self.batch)

    def __getitem__(self, index: int) -> Any:
        return self.batch.get_at_with_metadata(index) if self.include_metadata else self.batch.get_at(index)

    def __getitems__(self, indices: list[int]) -> GatheredRows:
        """A whole DataLoader batch in one read, seen as the list of rows a collate function expects."""
        index = np.asarray(indices, dtype=np.int64)
        gathered = self.batch.get_at_with_metadata(index) if self.include_metadata else self.batch.get_at(index)
        return GatheredRows(gathered, len(indices), self.batch.single_space, self.include_metadata)


class GatheredRows(Sequence[Any]):
    """Rows read with one gather: :func:`keep_batched` returns the gather, any other collate sees a list of rows.

    Torch's default collate indexes its input as a list of samples; row ``i`` is a view of the gather.
    """

    def __init__(self, gathered: Any, size: int, space: Space, with_metadata: bool) -> None:
        self.gathered = gathered
        self._size = size
        self._space = space
        self._with_metadata = with_metadata

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, row: Any) -> Any:
        if not isinstance(row, (int, np.integer)) or not -self._size <= row < self._size:
            raise IndexError(f"row {row!r} of a DataLoader batch of {self._size} rows")
        if not self._with_metadata:
            return get_at(self._space, self.gathered, int(row))
        data, metadata = self.gathered
        rows = None if metadata is None else {key: value[int(row)] for key, value in metadata.items()}
        return get_at(self._space, data, int(row)), rows

    def __iter__(self) -> Iterator[Any]:
        return (self[row] for row in range(self._size))


def keep_batched(batch: Any) -> Any:
    """Collate function for :class:`BatchDataset`: its batches are gathered already, in one read."""
    return batch.gathered if isinstance(batch, GatheredRows) else batch


def data_loader(batch: BatchBase, batch_size: int, include_metadata: bool = False, **kwargs: Any) -> Any:
    """A ``torch.utils.data.DataLoader`` over ``batch`` that reads each batch with one gather.

    ``kwargs`` go to the DataLoader (``shuffle``, ``num_workers``, ``pin_memory``, ...).
    """
    return torch.utils.data.DataLoader(
        BatchDataset(batch, include_metadata), batch_size=batch_size, collate_fn=keep_batched, **kwargs
    )


class SamplerDataset(torch.utils.data.IterableDataset):
    """An endless iterable of ``sampler`` batches; each DataLoader worker has its own stream.

    Use it with ``DataLoader(SamplerDataset(sampler), batch_size=None, num_workers=n)``.

    Args:
        sampler: a :class:`StepSampler` (its seed and the worker id seed each worker).
        batches: stop after this many batches per worker (None: endless).
    """

    def __init__(self, sampler: StepSampler, batches: int | None = None) -> None:
        self.sampler = sampler
        self.batches = batches

    def __iter__(self) -> Any:
        info = torch.utils.data.get_worker_info()
        sampler = self.sampler
        if info is not None:
            base = sampler._seed if sampler._seed is not None else int(info.seed % 2**31)
            sampler.manual_seed(int(np.random.SeedSequence([base, info.id]).generate_state(1)[0]))
        produced = 0
        while self.batches is None or produced < self.batches:
            yield _to_torch(sampler.sample())
            produced += 1


def _to_torch(tree: Any) -> Any:
    from unibatch.backends import convert_tree

    return convert_tree(tree, backend_from_name("pytorch"))


class TorchDatasetBatch(BatchBase):
    """A read-only :class:`BatchBase` over a map-style torch dataset (space inferred from item 0)."""

    is_mutable = False

    def __init__(self, dataset: Any) -> None:
        if len(dataset) == 0:
            raise ValueError("cannot infer a space from an empty dataset")
        pytorch = backend_from_name("pytorch")
        super().__init__(construct_space_from_data(_to_torch(dataset[0]), pytorch))
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        if is_single(index):
            return _to_torch(self.dataset[index]), None
        items = [_to_torch(self.dataset[int(i)]) for i in self.backend.to_numpy(index)]
        return concatenate(self.single_space, items), None
