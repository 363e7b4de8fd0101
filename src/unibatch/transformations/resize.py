"""Image resizing written once against the array namespace (no image library needed)."""

from __future__ import annotations

from typing import Any

import numpy as np

from unibatch._typing import Array
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import BoxSpace, Space
from unibatch.transformations._base import DataTransformation, JsonDict, register_transformation
from unibatch.transformations._box_math import cast_result

_LAYOUT_AXES = {"HWC": (-3, -2), "CHW": (-2, -1), "HW": (-2, -1)}
_METHODS = ("bilinear", "nearest")


@register_transformation("image_resize")
class ImageResizeTransformation(DataTransformation):
    """Resize images to ``(height, width)``, keeping dtype and (uniform) bounds.

    ``bilinear`` uses half-pixel centres without antialiasing (like OpenCV's ``INTER_LINEAR``);
    ``nearest`` picks the source pixel whose centre is closest. Integer images are rounded.

    Args:
        height: output height in pixels.
        width: output width in pixels.
        layout: ``"HWC"`` (channels last), ``"CHW"`` (channels first) or ``"HW"`` (grayscale),
            naming the trailing axes; any leading axes are batch axes.
        method: ``"bilinear"`` or ``"nearest"``.

    >>> from unibatch import BoxSpace, NumpyComputeBackend as np_backend
    >>> image = BoxSpace(np_backend, 0, 255, "uint8", shape=(3, 84, 84))
    >>> ImageResizeTransformation(64, 64, layout="CHW").get_target_space_from_source(image).shape
    (3, 64, 64)
    """

    def __init__(self, height: int, width: int, layout: str = "HWC", method: str = "bilinear") -> None:
        if layout not in _LAYOUT_AXES:
            raise SpaceMismatchError(f"layout must be one of {sorted(_LAYOUT_AXES)}, got {layout!r}")
        if method not in _METHODS:
            raise SpaceMismatchError(f"method must be one of {_METHODS}, got {method!r}")
        if int(height) <= 0 or int(width) <= 0:
            raise SpaceMismatchError(f"height and width must be positive, got {height}x{width}")
        self.height, self.width, self.layout, self.method = int(height), int(width), layout, method

    def config(self) -> JsonDict:
        return {"height": self.height, "width": self.width, "layout": self.layout, "method": self.method}

    def _check(self, space: Space) -> BoxSpace:
        rank = len(self.layout)
        if not isinstance(space, BoxSpace) or len(space.shape) < rank:
            raise SpaceMismatchError(
                f"ImageResizeTransformation({self.layout}) needs a BoxSpace of rank >= {rank}, got {space!r}"
            )
        axes = [len(space.shape) + a for a in _LAYOUT_AXES[self.layout]]
        if any(b.shape[axis] != 1 for b in space.host_bounds() for axis in axes):
            raise SpaceMismatchError("ImageResizeTransformation needs bounds that are uniform over height and width")
        return space

    def get_target_space_from_source(self, source_space: Space) -> BoxSpace:
        box = self._check(source_space)
        h_axis, w_axis = (len(box.shape) + a for a in _LAYOUT_AXES[self.layout])
        low, high = box.host_bounds()
        shape = list(box.shape)
        shape[h_axis], shape[w_axis] = self.height, self.width
        return BoxSpace(box.backend, low, high, box.dtype, box.device, shape=tuple(shape))

    def transform(self, source_space: Space, data: Any) -> Any:
        box = self._check(source_space)
        backend, xp = box.backend, box.backend.xp
        h_axis, w_axis = (data.ndim + a for a in _LAYOUT_AXES[self.layout])
        work = backend.as_dtype("float64" if backend.dtype_name(box.dtype) == "float64" else "float32")
        value = xp.astype(data, work)
        value = self._resize_axis(backend, value, h_axis, data.shape[h_axis], self.height)
        value = self._resize_axis(backend, value, w_axis, data.shape[w_axis], self.width)
        low, high = (xp.astype(b, work) for b in box.abbreviated_bounds())
        return cast_result(box, xp.clip(value, low, high), box.dtype)

    def _resize_axis(self, backend: Any, value: Array, axis: int, size_in: int, size_out: int) -> Array:
        """Resample one axis with gathers (``take``) and a weighted sum; no loops."""
        xp = backend.xp
        if size_in == size_out:
            return value
        centres = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
        device = backend.device(value)
        if self.method == "nearest":
            index = np.clip(np.floor(centres + 0.5), 0, size_in - 1).astype(np.int64)
            return xp.take(value, backend.from_numpy(index, device=device), axis=axis)
        centres = np.clip(centres, 0, size_in - 1)
        lower = np.floor(centres).astype(np.int64)
        upper = np.minimum(lower + 1, size_in - 1)
        shape = [1] * value.ndim
        shape[axis] = size_out
        weight = backend.from_numpy((centres - lower).reshape(shape), dtype=value.dtype, device=device)
        below = xp.take(value, backend.from_numpy(lower, device=device), axis=axis)
        above = xp.take(value, backend.from_numpy(upper, device=device), axis=axis)
        return below + (above - below) * weight
