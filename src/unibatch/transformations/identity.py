"""The identity transformation."""

from __future__ import annotations

from typing import Any

from unibatch.spaces import Space
from unibatch.transformations._base import DataTransformation, register_transformation


@register_transformation("identity")
class IdentityTransformation(DataTransformation):
    """Returns values unchanged; its own inverse."""

    has_inverse = True

    def get_target_space_from_source(self, source_space: Space) -> Space:
        return source_space

    def transform(self, source_space: Space, data: Any) -> Any:
        return data

    def direction_inverse(self, source_space: Space | None = None) -> DataTransformation:
        return IdentityTransformation()
