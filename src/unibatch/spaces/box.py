"""BoxSpace: a real floating or integer array inside per-element bounds."""

from __future__ import annotations

from typing import Any

import numpy as np
from typing_extensions import Self

from unibatch._typing import RNG, Array, Device
from unibatch.backends import ComputeBackend, get_backend_or_none
from unibatch.backends._base import check_shape_tuple
from unibatch.errors import SpaceMismatchError
from unibatch.spaces._dtypes import fits, kind_of, scalar_fits
from unibatch.spaces._space import Space


class BoxSpace(Space[Array, Any, Any, Any]):
    """A real floating or integer array of a fixed shape with bounds ``low <= x <= high``.

    Bounds may be scalars, nested lists or arrays broadcastable to ``shape``; they are kept
    "abbreviated" (size-1 axes where they are uniform), so ``batch_space`` of a large box stays
    cheap. Infinite bounds of integer boxes become the dtype's limits.

    Args:
        backend: the backend of the values.
        low: lower bounds (``-inf`` allowed for floats).
        high: upper bounds (``inf`` allowed for floats).
        dtype: a real floating or integer dtype of any spelling (``np.float32``,
            ``torch.uint8``, ``"int64"``); 64-bit types become 32-bit on JAX.
        device: where values live; None for the backend's default.
        shape: the value shape; inferred from the bounds when omitted.

    >>> from unibatch import NumpyComputeBackend as np_backend
    >>> space = BoxSpace(np_backend, 0, 255, "uint8", shape=(3, 84, 84))
    >>> space.shape, space.dtype.name, int(space.high[0, 0, 0])
    ((3, 84, 84), 'uint8', 255)
    """

    shape: tuple[int, ...]

    def __init__(
        self,
        backend: ComputeBackend,
        low: Any,
        high: Any,
        dtype: Any,
        device: Device | None = None,
        shape: Any = None,
    ) -> None:
        dtype = backend.as_dtype(dtype)
        name = backend.dtype_name(dtype)
        if kind_of(name) not in "iuf":
            raise SpaceMismatchError(
                f"BoxSpace needs a real floating or integer dtype, got {name}"
                + ("; use BinarySpace for booleans" if name == "bool" else "")
            )
        low_np, high_np = _host_bounds(low, "low"), _host_bounds(high, "high")
        if shape is None:
            try:
                shape = np.broadcast_shapes(low_np.shape, high_np.shape)
            except ValueError as error:
                raise SpaceMismatchError(
                    f"low shape {low_np.shape} and high shape {high_np.shape} do not broadcast"
                ) from error
        shape = check_shape_tuple(shape)
        np_dtype = backend.numpy_dtype(dtype)
        self._low_np = _abbreviate(_cast_bounds(_broadcast_bounds(low_np, shape, "low"), np_dtype, "low"))
        self._high_np = _abbreviate(_cast_bounds(_broadcast_bounds(high_np, shape, "high"), np_dtype, "high"))
        if np.any(self._low_np > self._high_np):
            raise SpaceMismatchError(f"BoxSpace needs low <= high everywhere, got low={low!r}, high={high!r}")
        super().__init__(backend, shape, dtype, device)
        self._backend_bounds: tuple[Array, Array] | None = None

    # ------------------------------------------------------------------ bounds
    @property
    def low(self) -> Array:
        """Lower bounds, broadcast to ``shape`` (a backend array on the space's device)."""
        return self.backend.xp.broadcast_to(self.abbreviated_bounds()[0], self.shape)

    @property
    def high(self) -> Array:
        """Upper bounds, broadcast to ``shape`` (a backend array on the space's device)."""
        return self.backend.xp.broadcast_to(self.abbreviated_bounds()[1], self.shape)

    def abbreviated_bounds(self) -> tuple[Array, Array]:
        """``(low, high)`` as backend arrays of the same rank as ``shape`` that broadcast to it."""
        if self._backend_bounds is None:
            self._backend_bounds = (
                self.backend.from_numpy(self._low_np, device=self.device),
                self.backend.from_numpy(self._high_np, device=self.device),
            )
        return self._backend_bounds

    def host_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` as abbreviated NumPy arrays (for serialization and planning)."""
        return self._low_np, self._high_np

    @property
    def is_bounded(self) -> bool:
        """Whether every bound is finite."""
        return bool(np.all(np.isfinite(self._low_np)) and np.all(np.isfinite(self._high_np)))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_backend_bounds"] = None  # device arrays are rebuilt on demand in the receiving process
        return state

    # ------------------------------------------------------------------ Space
    def contains(self, x: Any) -> bool:
        if self.shape == () and not self.backend.is_backendarray(x):
            if not scalar_fits(x, self.dtype):
                return False
            x = self.backend.asarray(x, dtype=self.dtype)
        elif not self.backend.is_backendarray(x):
            return False
        if tuple(x.shape) != self.shape or not fits(x.dtype, self.dtype):
            return False
        low, high = self.abbreviated_bounds()
        xp = self.backend.xp
        return bool(xp.all((x >= low) & (x <= high)))

    def sample(self, rng: RNG) -> tuple[RNG, Array]:
        from unibatch.spaces._sampling import sample_box

        return sample_box(self, rng)

    def create_empty(self) -> Array:
        if self.backend.simplified_name == "jax":
            return self.backend.xp.zeros(self.shape, dtype=self.dtype, device=self.device)
        return self.backend.xp.empty(self.shape, dtype=self.dtype, device=self.device)

    def to(self, backend: ComputeBackend | None = None, device: Device | None = None) -> Self:
        if self._unchanged(backend, device):
            return self
        backend = backend or self.backend
        dtype = backend.as_dtype(self.backend.dtype_name(self.dtype))
        return type(self)(backend, self._low_np, self._high_np, dtype, device=device, shape=self.shape)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BoxSpace)
            and other.backend is self.backend
            and other.shape == self.shape
            and self.backend.dtype_name(self.dtype) == other.backend.dtype_name(other.dtype)
            and np.array_equal(self._low_np, other._low_np)
            and np.array_equal(self._high_np, other._high_np)
        )

    def __repr__(self) -> str:
        low, high = (_summary(b) for b in (self._low_np, self._high_np))
        return f"BoxSpace({low}, {high}, {self.shape}, {self.backend.dtype_name(self.dtype)})"


# ---------------------------------------------------------------------- bound helpers
def _host_bounds(bound: Any, what: str) -> np.ndarray:
    backend = get_backend_or_none(bound)
    array = backend.to_numpy(bound) if backend is not None else np.asarray(bound)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise SpaceMismatchError(f"BoxSpace {what} must be numeric, got {bound!r}")
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise SpaceMismatchError(f"BoxSpace {what} must not contain NaN")
    return array


def _broadcast_bounds(bound: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``bound`` with the rank of ``shape``, broadcastable to it (not yet materialised)."""
    if bound.ndim > len(shape):
        raise SpaceMismatchError(f"BoxSpace {what} has shape {bound.shape}, more axes than shape {shape}")
    bound = bound.reshape((1,) * (len(shape) - bound.ndim) + bound.shape)
    bound_shape: tuple[int, ...] = bound.shape
    if any(b not in (1, s) for b, s in zip(bound_shape, shape, strict=True)):
        raise SpaceMismatchError(f"BoxSpace {what} of shape {bound.shape} does not broadcast to shape {shape}")
    return bound


def _cast_bounds(bound: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """Bounds in ``dtype``.

    Integer boxes clip to the dtype's range (``inf`` becomes the limit) and round inwards
    (``low`` up, ``high`` down).
    """
    if dtype.kind == "f":
        with np.errstate(over="ignore"):
            return bound.astype(dtype)
    info = np.iinfo(dtype)
    if bound.dtype.kind in "biu":
        if bound.dtype.kind == "u" or bound.dtype == bool:
            return np.minimum(bound, info.max).astype(dtype)
        return np.clip(bound, max(info.min, np.iinfo(bound.dtype).min), info.max).astype(dtype)
    rounded = np.ceil(bound) if what == "low" else np.floor(bound)
    result = np.empty(bound.shape, dtype)
    above, below = rounded >= float(info.max), rounded <= float(info.min)
    inside = ~(above | below)
    result[above], result[below] = info.max, info.min
    result[inside] = rounded[inside].astype(dtype)
    return result


def _abbreviate(bound: np.ndarray) -> np.ndarray:
    """The canonical smallest form: every axis along which ``bound`` is constant has size 1."""
    if bound.size == 0:  # no element has a bound: any value represents it
        return np.zeros((1,) * bound.ndim, dtype=bound.dtype)
    for axis in range(bound.ndim):
        if bound.shape[axis] > 1:
            first = bound.take([0], axis=axis)
            if np.array_equal(np.broadcast_to(first, bound.shape), bound):
                bound = first
    return bound.copy(order="C")


def _summary(bound: np.ndarray) -> str:
    return repr(bound.reshape(-1)[0].item()) if bound.size == 1 else f"array{bound.shape}"
