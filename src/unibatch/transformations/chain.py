"""A chain of transformations applied in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unibatch.errors import SpaceMismatchError
from unibatch.spaces import Space
from unibatch.transformations._base import (
    DataTransformation,
    JsonDict,
    json_to_transformation,
    register_transformation,
    transformation_to_json,
)


@register_transformation("chain")
class ChainedTransformation(DataTransformation):
    """``transformations[-1](... transformations[0](x))``; invertible when every step is.

    >>> from unibatch import BoxSpace, NumpyComputeBackend as np_backend
    >>> from unibatch.transformations import CropTransformation, RescaleTransformation
    >>> chain = ChainedTransformation([CropTransformation([0], [2]), RescaleTransformation(0.0, 1.0, "float32")])
    >>> chain.transform(BoxSpace(np_backend, 0, 10, "int64", shape=(3,)), np.array([5, 10, 0])).tolist()
    [0.5, 1.0]
    """

    def __init__(self, transformations: Sequence[DataTransformation]) -> None:
        if not transformations:
            raise SpaceMismatchError("ChainedTransformation needs at least one transformation")
        self.transformations = list(transformations)

    @property
    def has_inverse(self) -> bool:  # type: ignore[override]
        return all(t.has_inverse for t in self.transformations)

    def config(self) -> JsonDict:
        return {"transformations": [transformation_to_json(t) for t in self.transformations]}

    @classmethod
    def deserialize_from(cls, json: JsonDict, source_space: Space | None = None) -> ChainedTransformation:
        return cls([json_to_transformation(t) for t in json["configuration"]["transformations"]])

    def _spaces(self, source_space: Space) -> list[Space]:
        """The source space of every step, then the final target space."""
        spaces = [source_space]
        for transformation in self.transformations:
            spaces.append(transformation.get_target_space_from_source(spaces[-1]))
        return spaces

    def get_target_space_from_source(self, source_space: Space) -> Space:
        return self._spaces(source_space)[-1]

    def transform(self, source_space: Space, data: Any) -> Any:
        space = source_space
        for transformation in self.transformations:
            data = transformation.transform(space, data)
            space = transformation.get_target_space_from_source(space)
        return data

    def direction_inverse(self, source_space: Space | None = None) -> DataTransformation:
        if source_space is None:
            raise SpaceMismatchError("ChainedTransformation.direction_inverse needs the source space")
        spaces = self._spaces(source_space)
        steps = [t.direction_inverse(s) for t, s in zip(self.transformations, spaces[:-1], strict=True)]
        return ChainedTransformation(steps[::-1])

    def close(self) -> None:
        for transformation in self.transformations:
            transformation.close()
