"""The JAX backend: functional key RNG, functional ``at[].set``; default 32-bit types.

JAX runs with its default configuration, so 64-bit dtypes are canonicalised to their 32-bit
counterparts (``int64`` becomes ``int32``) wherever a dtype is given to this backend.
"""

from __future__ import annotations

import os
from typing import Any, final

import jax
import jax.numpy as jnp
import numpy as np

from unibatch.backends._base import ComputeBackend, Shape, dtype_to_name, numpy_dtype_from_name
from unibatch.errors import SpaceMismatchError, UnknownNameError


@final
class JaxBackend(ComputeBackend[jax.Array, Any, Any, jax.Array]):
    """JAX (``jax.numpy`` is array-API compatible); RNG state is a typed key array."""

    simplified_name = "jax"

    @property
    def xp(self) -> Any:
        return jnp

    arrays_are_mutable = False

    @property
    def array_type(self) -> type:
        return jax.Array

    def is_backendarray(self, x: Any) -> bool:
        return isinstance(x, jax.Array) and not jnp.issubdtype(x.dtype, jax.dtypes.prng_key)

    @property
    def default_integer_dtype(self) -> Any:
        return jax.dtypes.canonicalize_dtype(np.int64)

    @property
    def default_floating_dtype(self) -> Any:
        return jax.dtypes.canonicalize_dtype(np.float64)

    def dtype_from_name(self, name: str) -> Any:
        return jax.dtypes.canonicalize_dtype(numpy_dtype_from_name(name))

    def dtype_name(self, dtype: Any) -> str:
        return dtype_to_name(dtype)

    @property
    def default_device(self) -> Any:
        return jax.devices()[0]

    def to_device(self, x: jax.Array, device: Any) -> jax.Array:
        if device is None:
            return x
        return jax.device_put(x, self._as_device(device))

    def _as_device(self, device: Any) -> Any:
        return self.deserialize_device(device) if isinstance(device, str) else device

    def serialize_device(self, device: Any) -> str | None:
        if device is None:
            return None
        device = self._as_device(device)
        return f"{device.platform}:{device.id}"

    def deserialize_device(self, name: str | None) -> Any:
        if name is None:
            return None
        platform, _, number = name.partition(":")
        try:
            devices = jax.devices(platform)
            return next(d for d in devices if d.id == int(number or devices[0].id))
        except (RuntimeError, StopIteration, ValueError) as error:
            raise UnknownNameError(f"JAX has no device {name!r}; it has {jax.devices()}") from error

    def asarray(self, x: Any, dtype: Any = None, device: Any = None) -> jax.Array:
        """Like ``jnp.asarray``, but NumPy input is always copied.

        JAX may otherwise alias aligned host memory, and a later write to that memory (a ring
        buffer slot being overwritten) would change an immutable array.
        """
        if isinstance(x, jax.Array):
            return self.to_device(x if dtype is None else x.astype(self.as_dtype(dtype)), device)
        host = np.asarray(x)
        dtype = self.as_dtype(host.dtype if dtype is None else dtype)
        _check_integer_range(host, np.dtype(dtype))
        with np.errstate(over="ignore"):  # float64 beyond float32 becomes +-inf, as any float32 cast
            return self.to_device(jnp.array(host, dtype=dtype, copy=True), device)

    def from_numpy(self, x: np.ndarray, dtype: Any = None, device: Any = None) -> jax.Array:
        return self.asarray(np.asarray(x), dtype=dtype, device=device)

    def to_numpy(self, x: jax.Array) -> np.ndarray:
        return np.asarray(x)

    def _at_set(self, x: jax.Array, index: Any, value: Any) -> jax.Array:
        return x.at[index].set(jnp.asarray(value).astype(x.dtype))

    def cumulative_max(self, x: jax.Array, axis: int) -> jax.Array:
        return jax.lax.cummax(x, axis=axis % x.ndim)

    def random_number_generator(self, seed: int | None = None, device: Any = None) -> jax.Array:
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little")
        return self.to_device(jax.random.key(int(seed)), device)

    def rng_state(self, rng: jax.Array) -> Any:
        return np.asarray(jax.random.key_data(rng))

    def rng_from_state(self, state: Any, device: Any = None) -> jax.Array:
        return self.to_device(jax.random.wrap_key_data(jnp.asarray(state)), device)

    def random_discrete_uniform(
        self, shape: Shape, low: int, high: int, *, rng: jax.Array, dtype: Any = None, device: Any = None
    ) -> tuple[jax.Array, jax.Array]:
        dtype = self.default_integer_dtype if dtype is None else self.as_dtype(dtype)
        rng, key = jax.random.split(rng)
        return rng, self.to_device(jax.random.randint(key, tuple(shape), low, high, dtype=dtype), device)

    def random_uniform(
        self,
        shape: Shape,
        *,
        rng: jax.Array,
        low: float = 0.0,
        high: float = 1.0,
        dtype: Any = None,
        device: Any = None,
    ) -> tuple[jax.Array, jax.Array]:
        dtype = self.default_floating_dtype if dtype is None else self.as_dtype(dtype)
        rng, key = jax.random.split(rng)
        value = jax.random.uniform(key, tuple(shape), dtype=dtype, minval=low, maxval=high)
        return rng, self.to_device(value, device)

    def random_normal(
        self,
        shape: Shape,
        *,
        rng: jax.Array,
        mean: float = 0.0,
        std: float = 1.0,
        dtype: Any = None,
        device: Any = None,
    ) -> tuple[jax.Array, jax.Array]:
        dtype = self.default_floating_dtype if dtype is None else self.as_dtype(dtype)
        rng, key = jax.random.split(rng)
        value = jax.random.normal(key, tuple(shape), dtype=dtype) * std + mean
        return rng, self.to_device(value, device)

    def random_permutation(self, n: int, *, rng: jax.Array, device: Any = None) -> tuple[jax.Array, jax.Array]:
        rng, key = jax.random.split(rng)
        value = jax.random.permutation(key, int(n)).astype(self.default_index_dtype)
        return rng, self.to_device(value, device)


def _check_integer_range(host: np.ndarray, target: np.dtype) -> None:
    """Refuse integers that a narrower target (int64 -> int32 under JAX's 32-bit default) would wrap."""
    if host.dtype.kind not in "iu" or target.kind not in "iu" or host.size == 0:
        return
    if host.dtype.itemsize <= target.itemsize and host.dtype.kind == target.kind:
        return
    info = np.iinfo(target)
    low, high = host.min(), host.max()
    if low < info.min or high > info.max:
        raise SpaceMismatchError(
            f"integer values in [{low}, {high}] do not fit {target.name}; JAX runs with 32-bit types "
            "unless jax_enable_x64 is set"
        )


JaxComputeBackend = JaxBackend()
"""The JAX backend singleton."""

__all__ = ["JaxBackend", "JaxComputeBackend"]
