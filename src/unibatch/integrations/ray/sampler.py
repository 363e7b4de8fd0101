"""``RemoteSampler``: mini-batches sampled on the buffer actors, several per round trip, with calls in flight.

A remote ``sample(256)`` costs 1-2 ms of round trip against 12-20 µs in process, so the learner
asks each actor for ``batches_per_call`` batches at once and keeps ``calls_in_flight`` requests
out while it trains on what arrived. Each actor draws its rows itself from a seed sent with the
request (derived from the sampler's seed and the request number), so sampling needs no length
round trip. With several shards, the rows of a batch are split between them in proportion to
their lengths (a multinomial draw), and each batch is the shards' parts concatenated.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import optree

from unibatch.batches import BatchBase
from unibatch.batches._base import Metadata
from unibatch.integrations.ray.client import RemoteBuffer, ShardedRemoteBuffer, ray_module
from unibatch.samplers.base import BatchSampler
from unibatch.spaces import json_to_space

SEED_BOUND = 1 << 63


class RemoteSampler(BatchSampler):
    """Uniform mini-batches of ``batch_size`` rows of a remote buffer, drawn on its actor(s).

    Args:
        data: a ``RemoteBuffer`` or ``ShardedRemoteBuffer``.
        batch_size: rows per batch.
        view: ``view(buffer) -> BatchBase``, built once on each actor and sampled instead of the
            buffer (for example ``functools.partial(FrameStackedBatch, prefetch_horizon=3, ...)``);
            it travels by pickle (cloudpickle), so a lambda works.
        seed: seed of the request stream (None: from the operating system).
        batches_per_call: batches fetched per remote call.
        calls_in_flight: remote calls kept in flight per kind of batch (structured/flat, with or
            without metadata).

    Results come on ``data``'s backend; NumPy results of one shard are zero-copy and read-only.
    """

    def __init__(
        self,
        data: RemoteBuffer | ShardedRemoteBuffer,
        batch_size: int,
        *,
        view: Callable[[BatchBase], BatchBase] | None = None,
        seed: int | None = None,
        batches_per_call: int = 4,
        calls_in_flight: int = 2,
    ) -> None:
        if batches_per_call <= 0 or calls_in_flight <= 0:
            raise ValueError(
                f"batches_per_call and calls_in_flight must be positive, got {batches_per_call}, {calls_in_flight}"
            )
        ray = ray_module()
        self.shards: list[RemoteBuffer] = list(data.shards) if isinstance(data, ShardedRemoteBuffer) else [data]
        self._view_key = uuid.uuid4().hex
        infos = ray.get([shard.actor.register_view.remote(self._view_key, view) for shard in self.shards])
        first = self.shards[0]
        space = json_to_space(infos[0]["space"], first.backend, first.device)
        metadata = infos[0]["metadata_space"]
        metadata_space = None if metadata is None else json_to_space(metadata, first.backend, first.device)
        super().__init__(space, metadata_space, batch_size)  # type: ignore[arg-type]
        self.data = data
        self._lengths = [int(info["length"]) for info in infos]
        self.batches_per_call = batches_per_call
        self.calls_in_flight = calls_in_flight
        self._stream_seed = int(np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0] >> 1)
        self._request = 0
        self.data_rng = first.backend.random_number_generator(seed)  # epoch_iter permutations
        self._pending: dict[tuple[bool, bool], deque[Any]] = {}
        self._ready: dict[tuple[bool, bool], deque[Any]] = {}

    @property
    def backend(self) -> Any:
        return self.shards[0].backend

    @property
    def device(self) -> Any:
        return self.shards[0].device

    def __len__(self) -> int:
        return len(self.data)

    def manual_seed(self, seed: int) -> None:
        """Restart the request stream from ``seed``; batches already fetched or in flight are dropped."""
        self._stream_seed = int(np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0] >> 1)
        self._request = 0
        self.data_rng = self.backend.random_number_generator(seed)
        self._pending.clear()
        self._ready.clear()
        self._epoch = None

    # ------------------------------------------------------------------ requests
    def _submit(self, kind: tuple[bool, bool]) -> None:
        """Send one request: ``batches_per_call`` batches, split between the shards by length."""
        flat, with_metadata = kind
        rng = np.random.default_rng([self._stream_seed, self._request])
        self._request += 1
        count = self.batches_per_call
        if len(self.shards) == 1:
            sizes = np.full((count, 1), self.batch_size)
        else:
            if not sum(self._lengths):
                self._lengths = [len(shard) for shard in self.shards]
            total = sum(self._lengths) or 1
            sizes = rng.multinomial(self.batch_size, [length / total for length in self._lengths], size=count)
        seeds = rng.integers(0, SEED_BOUND, size=sizes.shape, dtype=np.int64)
        refs = [
            shard.actor.sample.remote(self._view_key, sizes[:, s].tolist(), seeds[:, s].tolist(), with_metadata, flat)
            for s, shard in enumerate(self.shards)
        ]
        self._pending.setdefault(kind, deque()).append(refs)

    def _receive(self, kind: tuple[bool, bool]) -> None:
        """Wait for the oldest request of ``kind`` and queue its batches."""
        replies = ray_module().get(self._pending[kind].popleft())
        parts = []
        for s, (batches, length) in enumerate(replies):
            self._lengths[s] = int(length)
            parts.append(batches)
        ready = self._ready.setdefault(kind, deque())
        for index in range(self.batches_per_call):
            ready.append(_concatenate([part[index] for part in parts]))

    def _next(self, flat: bool, with_metadata: bool) -> tuple[Any, Metadata]:
        kind = (flat, with_metadata)
        pending = self._pending.setdefault(kind, deque())
        while len(pending) < self.calls_in_flight:
            self._submit(kind)
        ready = self._ready.setdefault(kind, deque())
        if not ready:
            self._receive(kind)
            self._submit(kind)
        data, metadata = ready.popleft()
        first = self.shards[0]
        return first.to_client(data), first.to_client(metadata)

    def sample(self) -> Any:
        return self._next(False, False)[0]

    def sample_with_metadata(self) -> tuple[Any, Metadata]:
        return self._next(False, True)

    def sample_flat(self) -> Any:
        return self._next(True, False)[0]

    def sample_flat_with_metadata(self) -> tuple[Any, Metadata]:
        return self._next(True, True)

    def close(self) -> None:
        """Drop prefetched batches and forget requests in flight."""
        self._pending.clear()
        self._ready.clear()


def _concatenate(parts: list[tuple[Any, Metadata]]) -> tuple[Any, Metadata]:
    """One batch from the shards' parts (a single part is returned as it is: zero-copy)."""
    if len(parts) == 1:
        return parts[0]
    data: Any = optree.tree_map(_join, *[part[0] for part in parts])
    if parts[0][1] is None:
        return data, None
    metadata: Any = optree.tree_map(_join, *[cast(Any, part[1]) for part in parts])
    return data, metadata


def _join(*leaves: np.ndarray) -> np.ndarray:
    return np.concatenate(leaves)
