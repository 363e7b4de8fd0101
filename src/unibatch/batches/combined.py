"""``CombinedBatch``: several batches with one space, seen as their concatenation."""

from __future__ import annotations

import bisect
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from unibatch._typing import Array, BArrayType, BatchT, BDeviceType, BDtypeType, BRNGType, Device
from unibatch.batches._base import BatchBase, Metadata
from unibatch.batches._indexing import NormalizedIndex, index_length, is_single
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import BoxSpace, DictSpace, batch_space, get_at, set_at

BATCH_INDEX_KEY = "batch_index"


class CombinedBatch(BatchBase[BatchT, BArrayType, BDeviceType, BDtypeType, BRNGType]):
    """The samples of ``batches[0]``, then ``batches[1]``, ... as one batch (a view).

    Routing uses the children's current lengths on every call, so it stays right when a child
    grows through another handle. Batched reads keep the request order. The metadata carries
    ``batch_index`` (which child a sample came from) next to the children's own metadata.
    ``extend`` appends to the last child. Closing the view does not close the children.

    Args:
        batches: the children, with equal spaces and one backend.
        device: device of the view (default: the children's).
        use_thread_pool: read the children a batched request touches in parallel threads (one
            per child; worth it when reads wait on I/O or decoding that releases the GIL). The
            threads write fresh outputs (a sampler's ``reuse_outputs`` arena stays in its thread).

    >>> from unibatch.testing import InMemoryBatch
    >>> combined = CombinedBatch([InMemoryBatch.from_range(2), InMemoryBatch.from_range(3, start=10)])
    >>> combined.get_at([4, 0])["x"].tolist(), combined.get_at_with_metadata(2)[1]["batch_index"].item()
    ([12, 0], 1)
    """

    def __init__(
        self, batches: Sequence[BatchBase], device: Device | None = None, use_thread_pool: bool = False
    ) -> None:
        batches = list(batches)
        if not batches:
            raise SpaceMismatchError("CombinedBatch needs at least one batch")
        first = batches[0]
        for position, batch in enumerate(batches[1:], start=1):
            if batch.backend is not first.backend:
                raise SpaceMismatchError(
                    f"batches[{position}] is on backend {batch.backend.simplified_name}, "
                    f"expected {first.backend.simplified_name}"
                )
            if batch.single_space != first.single_space or batch.single_metadata_space != first.single_metadata_space:
                raise SpaceMismatchError(
                    f"batches[{position}] has space {batch.single_space!r}, expected {first.single_space!r}"
                )
        backend = first.backend
        metadata = DictSpace(backend, dict(first.single_metadata_space or {}))
        metadata[BATCH_INDEX_KEY] = BoxSpace(backend, 0, len(batches) - 1, backend.default_index_dtype, shape=())
        space = first.single_space if device is None else first.single_space.to(device=device)
        self.metadata_space = metadata.to(device=device) if device is not None else metadata
        super().__init__(space, self.metadata_space)
        self.batches = batches
        self.use_thread_pool = bool(use_thread_pool)

    @property
    def is_mutable(self) -> bool:  # type: ignore[override]
        return all(batch.is_mutable for batch in self.batches)

    def _starts(self) -> list[int]:
        starts, total = [], 0
        for batch in self.batches:
            starts.append(total)
            total += len(batch)
        return [*starts, total]

    @property
    def has_expensive_reads(self) -> bool:  # type: ignore[override]
        """Whether any child's reads are expensive (window views then read each distinct row once)."""
        return any(batch.has_expensive_reads for batch in self.batches)

    def __len__(self) -> int:
        return sum(len(batch) for batch in self.batches)

    # ------------------------------------------------------------------ routing
    def _route(self, index: NormalizedIndex) -> list[tuple[int, Any, Any]]:
        """``(child, positions in the request, local index)`` for every child the request touches."""
        starts = self._starts()
        backend = self.backend
        if is_single(index):
            child = bisect.bisect_right(starts, index) - 1
            return [(child, None, index - starts[child])]
        host = backend.to_numpy(index)
        if host.size == 0:
            return []
        children = np.searchsorted(np.asarray(starts[1:-1]), host, side="right")
        order = np.argsort(children, kind="stable")  # group the request by child in one sort
        touched, first = np.unique(children[order], return_index=True)
        routes = []
        for child, positions in zip(touched.tolist(), np.split(order, first[1:]), strict=True):
            local = backend.asarray(
                host[positions] - starts[child], dtype=backend.default_index_dtype, device=self.batches[child].device
            )
            routes.append((child, positions, local))
        return routes

    def _gather(
        self,
        index: NormalizedIndex,
        with_metadata: bool,
        read: Callable[[BatchBase, Any], tuple[Any, Metadata]],
        empty: Callable[[int], Any],
        space: Any,
    ) -> tuple[Any, Metadata]:
        backend = self.backend
        routes = self._route(index)
        if is_single(index) or len(routes) == 1:
            child, _, local = routes[0] if routes else (len(self.batches) - 1, None, index)
            data, metadata = read(self.batches[child], local)
            return data, self._with_batch_index(metadata, child, local) if with_metadata else None
        count = index_length(index)
        data = empty(count)
        metadata_space: Any = batch_space(self.metadata_space, count)
        metadata = metadata_space.create_empty() if with_metadata else None
        for (child, positions, local), (part, part_metadata) in zip(
            routes, self._read_parts(routes, read), strict=True
        ):
            where = backend.asarray(positions, dtype=backend.default_index_dtype, device=self.device)
            data = space(data, where, part)
            if metadata is not None:
                part_metadata = self._with_batch_index(part_metadata, child, local)
                metadata = set_at(metadata_space, metadata, where, part_metadata)
        return data, metadata

    def _read_parts(
        self, routes: list[tuple[int, Any, Any]], read: Callable[[BatchBase, Any], tuple[Any, Metadata]]
    ) -> list[tuple[Any, Metadata]]:
        """Each route's read, in one thread per child with ``use_thread_pool``."""
        if not self.use_thread_pool:
            return [read(self.batches[child], local) for child, _, local in routes]
        with concurrent.futures.ThreadPoolExecutor(len(routes), thread_name_prefix="CombinedBatch") as pool:
            futures = [pool.submit(read, self.batches[child], local) for child, _, local in routes]
            return [future.result() for future in futures]

    def _with_batch_index(self, metadata: Metadata, child: int, local: Any) -> dict[str, Any]:
        result = dict(metadata or {})
        backend = self.backend
        dtype = backend.default_index_dtype
        if is_single(local):
            result[BATCH_INDEX_KEY] = backend.asarray(child, dtype=dtype, device=self.device)
        else:
            result[BATCH_INDEX_KEY] = backend.xp.full((int(local.shape[0]),), child, dtype=dtype, device=self.device)
        return result

    # ------------------------------------------------------------------ reads
    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        return self._gather(
            index,
            with_metadata,
            lambda batch, local: batch._get(local, with_metadata),
            lambda count: batch_space(self.single_space, count).create_empty(),
            lambda data, where, part: set_at(self._batched_space, data, where, part),
        )

    def _get_flattened(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Array, Metadata]:
        xp = self.backend.xp

        def empty(count: int) -> Array:
            return xp.zeros((count, self._flat_size()), dtype=self._flat_dtype(), device=self.device)

        return self._gather(
            index,
            with_metadata,
            lambda batch, local: batch._get_flattened(local, with_metadata),
            empty,
            lambda data, where, part: self.backend.at(data)[where].set(part),
        )

    def _flat_size(self) -> int:
        from unibatch.spaces import flat_dim

        size = flat_dim(self.single_space)
        if size is None:
            raise SpaceMismatchError(f"{self.single_space!r} has no flat form")
        return size

    def _flat_dtype(self) -> Any:
        from unibatch.spaces import flat_dtype

        return flat_dtype(self.single_space)

    # ------------------------------------------------------------------ writes
    def _set(self, index: NormalizedIndex, value: Any) -> None:
        for child, positions, local in self._route(index):
            part = value if positions is None else get_at(self._batched_space, value, self._positions(positions))
            self.batches[child]._set(local, part)

    def _set_flattened(self, index: NormalizedIndex, value: Array) -> None:
        for child, positions, local in self._route(index):
            part = value if positions is None else value[self._positions(positions)]
            self.batches[child]._set_flattened(local, part)

    def _positions(self, positions: np.ndarray) -> Array:
        return self.backend.asarray(positions, dtype=self.backend.default_index_dtype, device=self.device)

    def _extend(self, value: Any) -> None:
        self.batches[-1]._extend(value)

    def _extend_flattened(self, value: Array) -> None:
        self.batches[-1]._extend_flattened(value)

    def _remove(self, index: NormalizedIndex) -> None:
        for child, _, local in reversed(self._route(index)):
            self.batches[child]._remove(local)
