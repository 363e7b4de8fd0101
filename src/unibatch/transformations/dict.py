"""Transformations of DictSpace values: include or exclude key paths, or transform per key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from unibatch.errors import SpaceMismatchError
from unibatch.spaces import DictSpace, Space
from unibatch.transformations._base import (
    DataTransformation,
    JsonDict,
    json_to_transformation,
    register_transformation,
    transformation_to_json,
)

KeyPath = tuple[str, ...]


def _parse_paths(keys: Sequence[str | Sequence[str]]) -> list[KeyPath]:
    """Each key is a top-level name or a sequence of names (a nested path)."""
    if isinstance(keys, str):
        keys = [keys]
    paths = [(key,) if isinstance(key, str) else tuple(key) if isinstance(key, Sequence) else () for key in keys]
    if not paths or any(not path or not all(isinstance(k, str) for k in path) for path in paths):
        raise SpaceMismatchError(f"expected a non-empty list of keys or key paths, got {keys!r}")
    return paths


def _require_dict(space: Space, who: str) -> DictSpace:
    if not isinstance(space, DictSpace):
        raise SpaceMismatchError(f"{who} transforms a DictSpace, got {space!r}")
    return space


def _select(space: DictSpace, paths: list[KeyPath], keep: bool, prefix: str = "") -> DictSpace:
    """The sub-space with only (keep=True) or without (keep=False) the given key paths."""
    heads = {path[0] for path in paths}
    for head in heads:
        if head not in space.spaces:
            raise SpaceMismatchError(f"key {prefix + head!r} is not in {list(space.keys())}")
    children: dict[str, Space] = {}
    for key, sub in space.items():
        nested = [path[1:] for path in paths if path[0] == key and len(path) > 1]
        whole = (key,) in paths
        if nested and not whole:
            children[key] = _select(_require_dict(sub, f"key path {prefix + key}"), nested, keep, f"{prefix}{key}/")
        elif whole == keep:
            children[key] = sub
    return DictSpace(space.backend, children, space.device)


def _project(target: DictSpace, data: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``data`` that ``target`` (a sub-space of the data's space) describes."""
    return {key: _project(sub, data[key]) if isinstance(sub, DictSpace) else data[key] for key, sub in target.items()}


class _DictSelection(DataTransformation):
    keep: bool

    def __init__(self, keys: Sequence[str | Sequence[str]]) -> None:
        self.paths = _parse_paths(keys)

    def config(self) -> JsonDict:
        return {"keys": [list(path) for path in self.paths]}

    def get_target_space_from_source(self, source_space: Space) -> DictSpace:
        return _select(_require_dict(source_space, type(self).__name__), self.paths, self.keep)

    def transform(self, source_space: Space, data: Any) -> Any:
        return _project(self.get_target_space_from_source(source_space), data)


@register_transformation("dict_include")
class DictIncludeTransformation(_DictSelection):
    """Keep only the given keys or key paths (``"image"``, ``("obs", "state")``).

    >>> from unibatch import BinarySpace, DictSpace, NumpyComputeBackend as np_backend
    >>> space = DictSpace(np_backend, {"obs": {"a": BinarySpace(np_backend), "b": BinarySpace(np_backend)},
    ...                               "done": BinarySpace(np_backend)})
    >>> DictIncludeTransformation([("obs", "a")]).get_target_space_from_source(space)
    DictSpace({'obs': DictSpace({'a': BinarySpace(())})})
    """

    keep = True


@register_transformation("dict_exclude")
class DictExcludeTransformation(_DictSelection):
    """Drop the given keys or key paths; everything else is kept."""

    keep = False


@register_transformation("dict")
class DictTransformation(DataTransformation):
    """Apply one transformation per top-level key; other keys pass through unchanged.

    Invertible when every per-key transformation is.
    """

    def __init__(self, transformations: Mapping[str, DataTransformation]) -> None:
        self.transformations = dict(transformations)

    @property
    def has_inverse(self) -> bool:  # type: ignore[override]
        return all(t.has_inverse for t in self.transformations.values())

    def config(self) -> JsonDict:
        return {"transformations": {key: transformation_to_json(t) for key, t in self.transformations.items()}}

    @classmethod
    def deserialize_from(cls, json: JsonDict, source_space: Space | None = None) -> DictTransformation:
        items = json["configuration"]["transformations"].items()
        return cls({key: json_to_transformation(value) for key, value in items})

    def _source(self, source_space: Space) -> DictSpace:
        space = _require_dict(source_space, "DictTransformation")
        missing = [key for key in self.transformations if key not in space.spaces]
        if missing:
            raise SpaceMismatchError(f"DictTransformation keys {missing} are not in {list(space.keys())}")
        return space

    def get_target_space_from_source(self, source_space: Space) -> DictSpace:
        space = self._source(source_space)
        children = {
            key: self.transformations[key].get_target_space_from_source(sub) if key in self.transformations else sub
            for key, sub in space.items()
        }
        return DictSpace(space.backend, children, space.device)

    def transform(self, source_space: Space, data: Any) -> Any:
        space = self._source(source_space)
        return {
            key: self.transformations[key].transform(sub, data[key]) if key in self.transformations else data[key]
            for key, sub in space.items()
        }

    def direction_inverse(self, source_space: Space | None = None) -> DataTransformation:
        if source_space is None:
            raise SpaceMismatchError("DictTransformation.direction_inverse needs the source space")
        space = self._source(source_space)
        return DictTransformation({key: t.direction_inverse(space[key]) for key, t in self.transformations.items()})

    def close(self) -> None:
        for transformation in self.transformations.values():
            transformation.close()
