"""BatchedSpace: a batch of non-array values (texts), kept in a NumPy object array."""

from __future__ import annotations

from typing import Any

import numpy as np
from typing_extensions import Self

from unibatch._typing import RNG, Device
from unibatch.backends import ComputeBackend
from unibatch.backends._base import check_shape_tuple
from unibatch.spaces._space import Space


class BatchedSpace(Space[np.ndarray, Any, Any, Any]):
    """``batch_shape`` values of ``single_space`` in a NumPy ``object`` array of that shape.

    This is what :func:`~unibatch.spaces.batch_space` makes of spaces whose values are not
    arrays (``TextSpace``), on every backend.

    >>> from unibatch import TextSpace, NumpyComputeBackend as np_backend
    >>> space = BatchedSpace(TextSpace(np_backend, 4), (2,))
    >>> np.array(["ab", ""], dtype=object) in space
    True
    """

    shape: tuple[int, ...]

    def __init__(self, single_space: Space, batch_shape: Any) -> None:
        self.single_space = single_space
        self.batch_shape = check_shape_tuple(batch_shape, "batch_shape")
        super().__init__(single_space.backend, self.batch_shape, None, single_space.device)

    def contains(self, x: Any) -> bool:
        return (
            isinstance(x, np.ndarray)
            and x.dtype == object
            and x.shape == self.batch_shape
            and all(self.single_space.contains(value) for value in x.reshape(-1))
        )

    def sample(self, rng: RNG) -> tuple[RNG, np.ndarray]:
        result = np.empty(self.batch_shape, dtype=object)
        flat = result.reshape(-1)
        for position in range(flat.size):
            rng, flat[position] = self.single_space.sample(rng)
        return rng, result

    def create_empty(self) -> np.ndarray:
        result = np.empty(self.batch_shape, dtype=object)
        result.reshape(-1)[:] = [self.single_space.create_empty() for _ in range(result.size)]
        return result

    def to(self, backend: ComputeBackend | None = None, device: Device | None = None) -> Self:
        if backend is None and device is None:
            return self
        return type(self)(self.single_space.to(backend, device), self.batch_shape)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BatchedSpace)
            and other.batch_shape == self.batch_shape
            and other.single_space == self.single_space
        )

    def __repr__(self) -> str:
        return f"BatchedSpace({self.single_space!r}, {self.batch_shape})"
