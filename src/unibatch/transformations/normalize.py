"""Normalisation ``(x - mean) / std``, with its inverse."""

from __future__ import annotations

from typing import Any

import numpy as np

from unibatch.backends import dtype_to_name
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import BoxSpace, Space
from unibatch.transformations._base import DataTransformation, JsonDict, register_transformation
from unibatch.transformations._box_math import cast_result, require_box, work_dtype


@register_transformation("normalize")
class NormalizeTransformation(DataTransformation):
    """``(x - mean) / std`` element-wise; bounds are mapped the same way.

    Args:
        mean: scalar or array broadcastable to the source shape.
        std: positive scalar or array broadcastable to the source shape.
        new_dtype: dtype of the result; the source dtype if floating, else float32.

    >>> from unibatch import BoxSpace, NumpyComputeBackend as np_backend
    >>> state = BoxSpace(np_backend, -10, 10, "float32", shape=(2,))
    >>> NormalizeTransformation([1.0, 2.0], 2.0).transform(state, np.array([3.0, 2.0], np.float32)).tolist()
    [1.0, 0.0]
    """

    has_inverse = True

    def __init__(self, mean: Any, std: Any, new_dtype: Any = None) -> None:
        if not np.all(np.asarray(std, dtype=np.float64) > 0):  # also rejects NaN
            raise SpaceMismatchError(f"NormalizeTransformation needs std > 0, got {std!r}")
        self.mean = np.asarray(mean, dtype=np.float64).tolist()
        self.std = np.asarray(std, dtype=np.float64).tolist()
        self.new_dtype = None if new_dtype is None else dtype_to_name(new_dtype)
        self._target: tuple[Space, BoxSpace] | None = None

    def config(self) -> JsonDict:
        return {"mean": self.mean, "std": self.std, "new_dtype": self.new_dtype}

    def _target_dtype(self, box: BoxSpace) -> Any:
        if self.new_dtype is not None:
            return self.new_dtype
        return box.dtype if box.backend.dtype_is_real_floating(box.dtype) else "float32"

    def get_target_space_from_source(self, source_space: Space) -> BoxSpace:
        if self._target is not None and self._target[0] is source_space:
            return self._target[1]
        box = require_box(source_space, "NormalizeTransformation")
        mean, std, dtype = np.asarray(self.mean), np.asarray(self.std), self._target_dtype(box)
        with np.errstate(invalid="ignore", over="ignore"):
            low, high = ((b.astype(np.float64) - mean) / std for b in box.host_bounds())
        if box.backend.dtype_is_real_integer(dtype):  # rounded to nearest, as the values are
            low, high = np.round(low), np.round(high)
        target = BoxSpace(box.backend, low, high, dtype, box.device, shape=box.shape)
        self._target = (source_space, target)
        return target

    def transform(self, source_space: Space, data: Any) -> Any:
        target = self.get_target_space_from_source(source_space)
        box = require_box(source_space, "NormalizeTransformation")
        backend, xp = box.backend, box.backend.xp
        work = work_dtype(box, target.dtype)
        mean, std = (backend.asarray(v, dtype=work, device=box.device) for v in (self.mean, self.std))
        # Clipped like RescaleTransformation: backends round (x - mean) / std differently from the
        # float64 bounds (JAX divides by a reciprocal), which could leave the target space.
        low, high = (xp.astype(b, work) for b in target.abbreviated_bounds())
        return cast_result(target, xp.clip((xp.astype(data, work) - mean) / std, low, high), target.dtype)

    def direction_inverse(self, source_space: Space | None = None) -> DataTransformation:
        if source_space is None:
            raise SpaceMismatchError("NormalizeTransformation.direction_inverse needs the source space")
        box = require_box(source_space, "NormalizeTransformation")
        mean, std = np.asarray(self.mean), np.asarray(self.std)
        return NormalizeTransformation(-mean / std, 1.0 / std, box.backend.dtype_name(box.dtype))
