"""Cropping of the trailing axes of a box or binary array."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unibatch.errors import SpaceMismatchError
from unibatch.spaces import BinarySpace, BoxSpace, Space
from unibatch.transformations._base import DataTransformation, JsonDict, register_transformation


@register_transformation("crop")
class CropTransformation(DataTransformation):
    """Keep ``[start[i], end[i])`` of each of the last ``len(start)`` axes.

    >>> from unibatch import BoxSpace, NumpyComputeBackend as np_backend
    >>> image = BoxSpace(np_backend, 0, 255, "uint8", shape=(3, 8, 8))
    >>> CropTransformation([2, 2], [6, 6]).get_target_space_from_source(image).shape
    (3, 4, 4)
    """

    def __init__(self, start: Sequence[int], end: Sequence[int]) -> None:
        self.start = [int(s) for s in start]
        self.end = [int(e) for e in end]
        if len(self.start) != len(self.end) or not self.start:
            raise SpaceMismatchError(
                f"CropTransformation needs start and end of one non-zero length, got {start}, {end}"
            )
        if any(not 0 <= s < e for s, e in zip(self.start, self.end, strict=True)):
            raise SpaceMismatchError(f"CropTransformation needs 0 <= start < end, got {self.start}, {self.end}")

    def config(self) -> JsonDict:
        return {"start": self.start, "end": self.end}

    def _check(self, space: Space) -> BoxSpace | BinarySpace:
        if not isinstance(space, (BoxSpace, BinarySpace)):
            raise SpaceMismatchError(f"CropTransformation crops a BoxSpace or BinarySpace, got {space!r}")
        trailing = space.shape[len(space.shape) - len(self.start) :]
        if len(trailing) != len(self.start) or any(e > n for e, n in zip(self.end, trailing, strict=True)):
            raise SpaceMismatchError(
                f"CropTransformation end {self.end} does not fit trailing shape {trailing} of {space!r}"
            )
        return space

    def _slices(self) -> tuple[Any, ...]:
        return (..., *(slice(s, e) for s, e in zip(self.start, self.end, strict=True)))

    def get_target_space_from_source(self, source_space: Space) -> Space:
        space = self._check(source_space)
        kept = space.shape[: len(space.shape) - len(self.start)]
        shape = (*kept, *(e - s for s, e in zip(self.start, self.end, strict=True)))
        if isinstance(space, BinarySpace):
            return BinarySpace(space.backend, shape, device=space.device)
        low, high = (self._crop_bound(b) for b in space.host_bounds())
        return BoxSpace(space.backend, low, high, space.dtype, space.device, shape=shape)

    def _crop_bound(self, bound: Any) -> Any:
        """Crop the abbreviated bound on the axes where it is not abbreviated (size > 1)."""
        first = bound.ndim - len(self.start)
        index = [slice(None)] * bound.ndim
        for offset, (s, e) in enumerate(zip(self.start, self.end, strict=True)):
            if bound.shape[first + offset] > 1:
                index[first + offset] = slice(s, e)
        return bound[tuple(index)]

    def transform(self, source_space: Space, data: Any) -> Any:
        self._check(source_space)
        return data[self._slices()]
