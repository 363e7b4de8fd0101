"""Traversal of nested spaces and their data, shared by flattening and validation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from unibatch.errors import SpaceMismatchError
from unibatch.spaces._space import Space
from unibatch.spaces.batched import BatchedSpace
from unibatch.spaces.dict import DictSpace
from unibatch.spaces.text import TextSpace
from unibatch.spaces.tuple import TupleSpace


def leaves(space: Space, path: str = "") -> Iterator[tuple[str, Space]]:
    """``(key path, leaf space)`` pairs in flat order."""
    if isinstance(space, DictSpace):
        for key, sub in space.items():
            yield from leaves(sub, f"{path}/{key}" if path else key)
    elif isinstance(space, TupleSpace):
        for position, sub in enumerate(space.spaces):
            yield from leaves(sub, f"{path}/{position}" if path else str(position))
    else:
        yield path, space


def nest_paths(values: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts from ``"a/b/c"`` key paths (the inverse of the paths of :func:`leaves` for dicts).

    >>> nest_paths({"obs/state": 1, "obs/image": 2, "action": 3})
    {'obs': {'state': 1, 'image': 2}, 'action': 3}
    """
    nested: dict[str, Any] = {}
    for name, value in values.items():
        *parents, key = name.split("/")
        level = nested
        for parent in parents:
            level = level.setdefault(parent, {})
        level[key] = value
    return nested


def text_of(space: Space) -> TextSpace | None:
    """The text space behind a text leaf (itself or the single space of a batch of texts)."""
    if isinstance(space, TextSpace):
        return space
    if isinstance(space, BatchedSpace) and isinstance(space.single_space, TextSpace):
        return space.single_space
    return None


def walk(space: Space, data: Any, path: str = "") -> Iterator[tuple[str, Space, Any]]:
    """``(key path, leaf space, leaf data)`` in flat order, checking the structure of ``data``."""
    if isinstance(space, DictSpace):
        if not isinstance(data, Mapping):
            raise SpaceMismatchError(
                f"{path or 'value'}: expected a dict with keys {list(space.keys())}, got {type(data).__name__}"
            )
        check_keys(space, data, path)
        for key, sub in space.items():
            yield from walk(sub, data[key], f"{path}/{key}" if path else key)
    elif isinstance(space, TupleSpace):
        if not isinstance(data, (tuple, list)) or len(data) != len(space.spaces):
            raise SpaceMismatchError(
                f"{path or 'value'}: expected a tuple of {len(space.spaces)}, got {type(data).__name__}"
            )
        for position, (sub, value) in enumerate(zip(space.spaces, data, strict=True)):
            yield from walk(sub, value, f"{path}/{position}" if path else str(position))
    else:
        yield path, space, data


def check_keys(space: DictSpace, data: Mapping[str, Any], path: str) -> None:
    missing = [k for k in space if k not in data]
    unknown = [k for k in data if k not in space.spaces]
    if missing or unknown:
        where = path or "value"
        raise SpaceMismatchError(
            f"{where}: expected keys {list(space.keys())}, got {sorted(data)}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unknown {unknown})" if unknown else "")
        )
