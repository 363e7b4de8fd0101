"""Small helpers for transformations that compute on BoxSpace values."""

from __future__ import annotations

from typing import Any

from unibatch._typing import Array
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import BoxSpace, Space


def require_box(space: Space, who: str) -> BoxSpace:
    if not isinstance(space, BoxSpace):
        raise SpaceMismatchError(f"{who} transforms a BoxSpace, got {space!r}")
    return space


def work_dtype(space: BoxSpace, target_dtype: Any) -> Any:
    """The floating dtype to compute in: float64 if either side is float64, else float32."""
    names = {space.backend.dtype_name(space.dtype), space.backend.dtype_name(target_dtype)}
    return space.backend.as_dtype("float64" if "float64" in names else "float32")


def cast_result(space: BoxSpace, value: Array, dtype: Any) -> Array:
    """``value`` cast to ``dtype``; integer targets are rounded to nearest first."""
    xp = space.backend.xp
    if space.backend.dtype_is_real_integer(dtype):
        value = xp.round(value)
    return xp.astype(value, dtype)
