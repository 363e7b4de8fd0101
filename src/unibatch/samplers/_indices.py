"""Which indices a sampler draws: pure functions of a length, a batch size and a random state."""

from __future__ import annotations

from collections.abc import Iterator

from unibatch._typing import RNG, Array, Device
from unibatch.backends import ComputeBackend
from unibatch.errors import IndexOutOfRangeError


def uniform_indices(
    backend: ComputeBackend, rng: RNG, length: int, batch_size: int, device: Device | None = None
) -> tuple[RNG, Array]:
    """``batch_size`` indices drawn uniformly from ``[0, length)`` with replacement."""
    if length <= 0:
        raise IndexOutOfRangeError("cannot sample from an empty batch (length 0)")
    return backend.random_indices(length, batch_size, rng=rng, device=device)


def epoch_slices(length: int, batch_size: int, start: int = 0) -> Iterator[slice]:
    """Consecutive slices of a permutation: full batches, then one smaller last batch.

    >>> [(s.start, s.stop) for s in epoch_slices(7, 3)]
    [(0, 3), (3, 6), (6, 7)]
    """
    for begin in range(start, length, batch_size):
        yield slice(begin, min(begin + batch_size, length))
