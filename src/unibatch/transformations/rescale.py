"""Linear rescaling of a bounded box to new bounds, with its inverse."""

from __future__ import annotations

from typing import Any

import numpy as np

from unibatch.backends import dtype_to_name
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import BoxSpace, Space
from unibatch.transformations._base import DataTransformation, JsonDict, register_transformation
from unibatch.transformations._box_math import cast_result, require_box, work_dtype


@register_transformation("rescale")
class RescaleTransformation(DataTransformation):
    """Map ``[low, high]`` of a bounded box linearly onto ``[new_low, new_high]``.

    Integer targets are rounded to nearest. Where ``low == high`` the result is ``new_low``.

    Args:
        new_low: scalar or array broadcastable to the source shape.
        new_high: scalar or array broadcastable to the source shape.
        new_dtype: dtype of the result (any spelling); the source dtype when None.

    >>> from unibatch import BoxSpace, NumpyComputeBackend as np_backend
    >>> image = BoxSpace(np_backend, 0, 255, "uint8", shape=(2,))
    >>> RescaleTransformation(0.0, 1.0, "float32").transform(image, np.array([0, 255], np.uint8)).tolist()
    [0.0, 1.0]
    """

    has_inverse = True

    def __init__(self, new_low: Any = -1.0, new_high: Any = 1.0, new_dtype: Any = None) -> None:
        self.new_low = np.asarray(new_low).tolist()
        self.new_high = np.asarray(new_high).tolist()
        self.new_dtype = None if new_dtype is None else dtype_to_name(new_dtype)
        self._target: tuple[Space, BoxSpace] | None = None

    def config(self) -> JsonDict:
        return {"new_low": self.new_low, "new_high": self.new_high, "new_dtype": self.new_dtype}

    def get_target_space_from_source(self, source_space: Space) -> BoxSpace:
        if self._target is not None and self._target[0] is source_space:
            return self._target[1]
        box = require_box(source_space, "RescaleTransformation")
        if not box.is_bounded:
            raise SpaceMismatchError(f"RescaleTransformation needs finite bounds, got {box!r}")
        dtype = box.dtype if self.new_dtype is None else self.new_dtype
        target = BoxSpace(box.backend, self.new_low, self.new_high, dtype, box.device, shape=box.shape)
        self._target = (source_space, target)
        return target

    def transform(self, source_space: Space, data: Any) -> Any:
        target = self.get_target_space_from_source(source_space)
        box = require_box(source_space, "RescaleTransformation")
        xp, work = box.backend.xp, work_dtype(box, target.dtype)
        low, high = (xp.astype(b, work) for b in box.abbreviated_bounds())
        new_low, new_high = (xp.astype(b, work) for b in target.abbreviated_bounds())
        width = high - low
        scale = xp.where(width > 0, (new_high - new_low) / xp.where(width > 0, width, 1), 0)
        value = (xp.astype(data, work) - low) * scale + new_low
        return cast_result(target, xp.clip(value, new_low, new_high), target.dtype)

    def direction_inverse(self, source_space: Space | None = None) -> DataTransformation:
        if source_space is None:
            raise SpaceMismatchError("RescaleTransformation.direction_inverse needs the source space")
        box = require_box(source_space, "RescaleTransformation")
        low, high = box.host_bounds()
        return RescaleTransformation(low, high, box.backend.dtype_name(box.dtype))
