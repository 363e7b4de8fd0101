"""Children of a ``DictStorage``: consistency checks, file names, creation arguments, column routing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from unibatch.errors import SpaceMismatchError
from unibatch.spaces import DictSpace, Space
from unibatch.storages._base import SpaceStorage
from unibatch.storages._composite import column_of
from unibatch.storages._dict_routes import Route, contains_path

SIDECAR = "dict.json"
KwargsMap = Mapping[Any, Mapping[str, Any]]


def column_routes(
    routes: Sequence[Route], children: Sequence[SpaceStorage], keys: tuple[str, ...]
) -> SpaceStorage | tuple[list[Route], list[SpaceStorage]]:
    """The column at ``keys`` (a non-empty key path of the space).

    Returns:
        The storage holding all of it (a child, or a column of one), or the routes and
        children of a view over the sub-space at ``keys`` when it spans several children.
    """
    found_routes: list[Route] = []
    found: list[SpaceStorage] = []
    for route, child in zip(routes, children, strict=True):
        depth = min(len(keys), len(route.mount))
        if route.mount[:depth] != keys[:depth]:
            continue
        if len(route.mount) >= len(keys):  # the child sits at or below the column
            if route.mount == keys and not route.residual:
                return child
            found_routes.append(Route(route.key, route.mount[len(keys) :], route.residual, route.space))
            found.append(child)
            continue
        rest = keys[len(route.mount) :]  # the column sits inside the child
        if route.residual and not contains_path(route.space, rest):
            continue
        column = column_of(child, rest)
        if not route.residual or not isinstance(column.single_instance_space, DictSpace):
            return column
        found_routes.append(Route(route.key, (), True, column.single_instance_space))
        found.append(column)
    if len(found) == 1 and found_routes[0].mount == ():
        return found[0]
    return found_routes, found


def require_dict(space: Space) -> DictSpace:
    """``space`` when it is a DictSpace, else a SpaceMismatchError."""
    if not isinstance(space, DictSpace):
        raise SpaceMismatchError(f"DictStorage stores a DictSpace, got {space!r}")
    return space


def parse_separator(separator: Any) -> str:
    """A valid ``nested_separator``: a non-empty string other than ``"*"``."""
    if not isinstance(separator, str) or not separator or separator == "*":
        raise SpaceMismatchError(f"nested_separator must be a non-empty string other than '*', got {separator!r}")
    return separator


def check_children(
    space: DictSpace, routes: Sequence[Route], children: Sequence[SpaceStorage], length: int | None = None
) -> None:
    """One child per route, of the route's space, all with the same capacity and length.

    With ``length`` (a read-only reopen after a kill between the children's flushes), children
    may hold more rows than ``length``; the rows past it are ignored.
    """
    if not children or len(routes) != len(children):
        raise SpaceMismatchError(
            f"DictStorage needs one child per route, got {len(children)} children for {len(routes)} routes"
        )
    first, first_key = children[0], routes[0].key
    for route, child in zip(routes, children, strict=True):
        if child.single_instance_space != route.space:
            raise SpaceMismatchError(
                f"DictStorage child {route.key!r} must hold {route.space!r}, got {child.single_instance_space!r}"
            )
        lengths_differ = len(child) != len(first) if length is None else len(child) < length
        if child.capacity != first.capacity or lengths_differ:
            raise SpaceMismatchError(
                f"DictStorage children must share capacity and length: {first_key!r} has capacity {first.capacity} "
                f"and length {len(first)}, {route.key!r} has capacity {child.capacity} and length {len(child)}"
            )


def align_lengths(children: Sequence[SpaceStorage]) -> int | None:
    """Cut reopened children to the rows they all hold; the length to keep when some cannot be cut.

    A composition commits as one unit: its children flush their rows first and only the owner's
    metadata replace (a buffer's ``metadata.json``) makes them visible, so a writer killed between
    two children's flushes leaves some children longer than others. The rows every child holds
    include every committed row; the rows past them were never committed. Writable children are
    cut to that length (as a growable buffer cuts rows past its count); read-only ones keep their
    files, and the returned length hides the extra rows. Fixed-capacity children all hold
    ``capacity`` rows.

    Returns:
        The common length when a read-only child is longer than it, else None.
    """
    length = min(len(child) for child in children)
    longer = [child for child in children if len(child) > length]
    for child in longer:
        if child.is_mutable and child.capacity is None:
            child._resize(length)
    return length if any(len(child) > length for child in longer) else None


def child_file_names(routes: Sequence[Route], classes: Sequence[type[SpaceStorage]]) -> list[str]:
    """The children's paths in the storage directory; unique plain names."""
    names = [route.file_name(child_cls.single_file_ext) for route, child_cls in zip(routes, classes, strict=True)]
    for route, name in zip(routes, names, strict=True):
        if "/" in name or "\\" in name or names.count(name) > 1 or name == SIDECAR:
            raise SpaceMismatchError(
                f"storage_cls_map key {route.key!r} gives the path {name!r}, which is not a unique plain name"
            )
    return names


def check_kwarg_keys(key_kwargs: KwargsMap | None, keys: Mapping[str, Any]) -> None:
    """Every ``key_kwargs`` key must be a key of the storage map (a typo would be ignored)."""
    unknown = sorted(set(key_kwargs or {}) - set(keys))
    if unknown:
        raise SpaceMismatchError(f"key_kwargs keys {unknown} are not storage_cls_map keys {sorted(keys)}")


def child_kwargs(
    key: str,
    child_cls: type[SpaceStorage],
    kwargs: Mapping[str, Any],
    key_kwargs: KwargsMap | None,
    type_kwargs: KwargsMap | None,
) -> dict[str, Any]:
    """``kwargs``, then ``type_kwargs`` of the class (or its registered name), then ``key_kwargs`` of the key."""
    merged = dict(kwargs)
    for type_key in (child_cls, child_cls.registered_name):
        merged.update((type_kwargs or {}).get(type_key, {}))
    merged.update((key_kwargs or {}).get(key, {}))
    return merged
