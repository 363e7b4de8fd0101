"""The NumPy backend: ``np.random.Generator`` RNG, in-place ``at[].set``, device ``"cpu"``."""

from __future__ import annotations

from typing import Any, final

import array_api_compat.numpy as _xp
import numpy as np

from unibatch.backends._base import ComputeBackend, Shape, numpy_dtype_from_name
from unibatch.errors import SpaceMismatchError, UnknownNameError


@final
class NumpyBackend(ComputeBackend[np.ndarray, str, np.dtype, np.random.Generator]):
    """NumPy through ``array_api_compat.numpy``; its only device is ``"cpu"``."""

    simplified_name = "numpy"

    @property
    def xp(self) -> Any:
        return _xp

    @property
    def array_type(self) -> type:
        return np.ndarray

    @property
    def default_integer_dtype(self) -> np.dtype:
        return np.dtype(np.int64)

    @property
    def default_floating_dtype(self) -> np.dtype:
        return np.dtype(np.float64)

    def dtype_from_name(self, name: str) -> np.dtype:
        return numpy_dtype_from_name(name)

    def dtype_name(self, dtype: Any) -> str:
        return np.dtype(dtype).name

    @property
    def default_device(self) -> str:
        return "cpu"

    def to_device(self, x: np.ndarray, device: str | None) -> np.ndarray:
        if device not in (None, "cpu"):
            raise SpaceMismatchError(f"NumPy arrays live on 'cpu' only, got device {device!r}")
        return x

    def serialize_device(self, device: str | None) -> str | None:
        return None if device is None else "cpu"

    def deserialize_device(self, name: str | None) -> str | None:
        if name is None:
            return None
        if name.split(":")[0] != "cpu":
            raise UnknownNameError(f"NumPy has no device {name!r}; its only device is 'cpu'")
        return "cpu"

    def asarray(self, x: Any, dtype: Any = None, device: str | None = None) -> np.ndarray:
        self.to_device(np.empty(0), device)
        return np.asarray(x, dtype=None if dtype is None else self.as_dtype(dtype))

    def from_numpy(self, x: np.ndarray, dtype: Any = None, device: str | None = None) -> np.ndarray:
        return self.asarray(x, dtype=dtype, device=device)

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)

    def host_view(self, x: np.ndarray) -> np.ndarray | None:
        return x

    def exact_host_conversions(self) -> None:
        return None

    def fresh_host_wrapper(self, dtype: np.dtype, device: str | None = None) -> None:
        self.to_device(np.empty(0), device)
        return

    def _at_set(self, x: np.ndarray, index: Any, value: Any) -> np.ndarray:
        x[index] = value
        return x

    def clip(self, x: np.ndarray, low: int | float, high: int | float) -> np.ndarray:
        return np.minimum(np.maximum(x, low), high)  # two ufuncs: np.clip's wrappers cost more than both

    def cumulative_max(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.maximum.accumulate(x, axis=axis)

    def random_number_generator(self, seed: int | None = None, device: str | None = None) -> np.random.Generator:
        self.to_device(np.empty(0), device)
        return np.random.default_rng(seed)

    def rng_state(self, rng: np.random.Generator) -> Any:
        return rng.bit_generator.state

    def rng_from_state(self, state: Any, device: str | None = None) -> np.random.Generator:
        bit_generator = getattr(np.random, state["bit_generator"])()
        bit_generator.state = state
        return np.random.Generator(bit_generator)

    def random_discrete_uniform(
        self, shape: Shape, low: int, high: int, *, rng: np.random.Generator, dtype: Any = None, device: Any = None
    ) -> tuple[np.random.Generator, np.ndarray]:
        dtype = self.default_integer_dtype if dtype is None else self.as_dtype(dtype)
        return rng, rng.integers(low, high, size=tuple(shape), dtype=dtype)

    def random_indices(
        self, n: int, size: int, *, rng: np.random.Generator, device: Any = None
    ) -> tuple[np.random.Generator, np.ndarray]:
        """``floor(u * n)`` of 53-bit uniform floats ``u``: twice as fast as ``Generator.integers``.

        Below ``n`` always (``u <= 1 - 2**-53``), with a relative bias per index of at most
        ``n / 2**53`` (1e-10 for a million rows).
        """
        if n >= 2**53:
            return self.random_discrete_uniform((size,), 0, n, rng=rng, device=device)
        draws = rng.random(size)
        draws *= n
        return rng, draws.astype(np.int64)

    def random_uniform(
        self,
        shape: Shape,
        *,
        rng: np.random.Generator,
        low: float = 0.0,
        high: float = 1.0,
        dtype: Any = None,
        device: Any = None,
    ) -> tuple[np.random.Generator, np.ndarray]:
        dtype = self.default_floating_dtype if dtype is None else self.as_dtype(dtype)
        value = rng.uniform(low, high, size=tuple(shape))
        return rng, np.asarray(value, dtype=dtype)

    def random_normal(
        self,
        shape: Shape,
        *,
        rng: np.random.Generator,
        mean: float = 0.0,
        std: float = 1.0,
        dtype: Any = None,
        device: Any = None,
    ) -> tuple[np.random.Generator, np.ndarray]:
        dtype = self.default_floating_dtype if dtype is None else self.as_dtype(dtype)
        return rng, np.asarray(rng.normal(mean, std, size=tuple(shape)), dtype=dtype)

    def random_permutation(
        self, n: int, *, rng: np.random.Generator, device: Any = None
    ) -> tuple[np.random.Generator, np.ndarray]:
        return rng, rng.permutation(n).astype(self.default_index_dtype, copy=False)


NumpyComputeBackend = NumpyBackend()
"""The NumPy backend singleton."""
