"""BinarySpace: a boolean array of a fixed shape."""

from __future__ import annotations

from typing import Any

import numpy as np
from typing_extensions import Self

from unibatch._typing import RNG, Array, Device
from unibatch.backends import ComputeBackend
from unibatch.backends._base import check_shape_tuple
from unibatch.errors import SpaceMismatchError
from unibatch.spaces._space import Space


class BinarySpace(Space[Array, Any, Any, Any]):
    """A boolean array of shape ``shape``.

    >>> from unibatch import NumpyComputeBackend as np_backend
    >>> space = BinarySpace(np_backend, (2,))
    >>> rng, value = space.sample(np_backend.random_number_generator(0))
    >>> value.dtype.name, value in space
    ('bool', True)
    """

    shape: tuple[int, ...]

    def __init__(
        self, backend: ComputeBackend, shape: Any = (), dtype: Any = None, device: Device | None = None
    ) -> None:
        dtype = backend.default_boolean_dtype if dtype is None else backend.as_dtype(dtype)
        if not backend.dtype_is_boolean(dtype):
            raise SpaceMismatchError(
                f"BinarySpace holds booleans, got dtype {backend.dtype_name(dtype)}; use BoxSpace for numbers"
            )
        super().__init__(backend, check_shape_tuple(shape), dtype, device)

    def contains(self, x: Any) -> bool:
        if self.shape == () and isinstance(x, (bool, np.bool_)):
            return True
        return (
            self.backend.is_backendarray(x)
            and tuple(x.shape) == self.shape
            and self.backend.dtype_name(x.dtype) == "bool"
        )

    def sample(self, rng: RNG) -> tuple[RNG, Array]:
        rng, uniform = self.backend.random_uniform(self.shape, rng=rng, dtype="float32", device=self.device)
        return rng, self.backend.asarray(uniform < 0.5)

    def create_empty(self) -> Array:
        return self.backend.xp.zeros(self.shape, dtype=self.dtype, device=self.device)

    def to(self, backend: ComputeBackend | None = None, device: Device | None = None) -> Self:
        if self._unchanged(backend, device):
            return self
        return type(self)(backend or self.backend, self.shape, device=device)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BinarySpace) and other.backend is self.backend and other.shape == self.shape

    def __repr__(self) -> str:
        return f"BinarySpace({self.shape})"
