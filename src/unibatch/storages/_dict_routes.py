"""Routing of a DictSpace's key paths to the children of a ``DictStorage``.

A ``storage_cls_map`` key is a key path (``"obs/image"``: that sub-space, leaf or subtree), a
residual ``"*"`` (every leaf no other entry claims, kept together as one DictSpace) or a
prefixed residual ``"obs/*"`` (the same, below ``obs``). A leaf belongs to the exact entry that
contains it, else to the residual with the longest prefix above it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from unibatch.errors import SpaceMismatchError
from unibatch.spaces import DictSpace, Space

WILDCARD = "*"
WILDCARD_FILE_NAME = "_default"
KeyPath = tuple[str, ...]


@dataclass(frozen=True)
class Route:
    """Where one child's values sit in a sample."""

    key: str
    """The ``storage_cls_map`` entry as given (``"obs/image"``, ``"*"``, ``"obs/*"``)."""
    mount: KeyPath
    """Key path of the child's value inside a sample (the prefix for a residual)."""
    residual: bool
    """Whether the child holds a DictSpace whose keys merge into the value at ``mount``."""
    space: Space
    """The child's space."""

    def file_name(self, extension: str | None) -> str:
        """The child's path in the storage directory: ``obs.image``, ``_default``, ``obs._default``."""
        parts = (*self.mount, WILDCARD_FILE_NAME) if self.residual else self.mount
        return ".".join(parts) + (extension or "")


def plan_routes(space: DictSpace, keys: Iterable[str], separator: str) -> list[Route]:
    """One route per map key, sorted by key; every leaf of ``space`` must be covered exactly once.

    Residual entries that end up with no leaf get no route.
    """
    exact: dict[str, KeyPath] = {}
    wild: dict[str, KeyPath] = {}
    for key in keys:
        parts = _parse_key(key, separator)
        if parts[-1] == WILDCARD:
            if not isinstance(locate(space, parts[:-1], key), DictSpace):
                raise SpaceMismatchError(f"storage_cls_map key {key!r}: a residual needs a DictSpace at its prefix")
            wild[key] = parts[:-1]
        else:
            locate(space, parts, key)
            exact[key] = parts
    _check_overlaps(exact)
    owned: dict[str, list[KeyPath]] = {key: [] for key in wild}
    uncovered = []
    for path in _leaf_paths(space):
        if any(path[: len(parts)] == parts for parts in exact.values()):
            continue
        candidates = [key for key, prefix in wild.items() if path[: len(prefix)] == prefix]
        if not candidates:
            uncovered.append(separator.join(path))
            continue
        owner = max(candidates, key=lambda key: len(wild[key]))
        owned[owner].append(path[len(wild[owner]) :])
    if uncovered:
        raise SpaceMismatchError(
            f"DictStorage: no storage for key paths {uncovered}; storage_cls_map has {sorted(exact) + sorted(wild)} "
            f"(add those keys, a 'prefix{separator}*' or a '*' entry)"
        )
    routes = [Route(key, parts, False, locate(space, parts, key)) for key, parts in exact.items()]
    for key, prefix in wild.items():
        residual = locate(space, prefix, key)
        if owned[key] and isinstance(residual, DictSpace):
            routes.append(Route(key, prefix, True, _prune(residual, owned[key])))
    return sorted(routes, key=lambda route: route.key)


def locate(space: Space, parts: KeyPath, key: str) -> Space:
    """The sub-space at ``parts``, or an error naming the map key and the keys available there."""
    for position, part in enumerate(parts):
        if not isinstance(space, DictSpace) or part not in space.spaces:
            available = list(space.keys()) if isinstance(space, DictSpace) else f"a {type(space).__name__}"
            raise SpaceMismatchError(
                f"storage_cls_map key {key!r}: {'/'.join(parts[: position + 1])!r} is not in the space "
                f"(expected one of {available})"
            )
        space = space[part]
    return space


def contains_path(space: Space, parts: KeyPath) -> bool:
    """Whether ``parts`` is a key path of nested DictSpaces in ``space``."""
    for part in parts:
        if not isinstance(space, DictSpace) or part not in space.spaces:
            return False
        space = space[part]
    return True


def _parse_key(key: Any, separator: str) -> KeyPath:
    if not isinstance(key, str) or not key:
        raise SpaceMismatchError(f"storage_cls_map keys must be non-empty key paths, got {key!r}")
    parts = tuple(key.split(separator))
    if any(not part for part in parts) or WILDCARD in parts[:-1]:
        raise SpaceMismatchError(
            f"storage_cls_map key {key!r}: expected 'a{separator}b', '*' or 'prefix{separator}*' "
            f"with nested_separator {separator!r}"
        )
    return parts


def _check_overlaps(exact: Mapping[str, KeyPath]) -> None:
    for key, parts in exact.items():
        for other, other_parts in exact.items():
            if key != other and other_parts[: len(parts)] == parts:
                raise SpaceMismatchError(
                    f"storage_cls_map keys {key!r} and {other!r} overlap ({other!r} is inside {key!r})"
                )


def _leaf_paths(space: DictSpace, prefix: KeyPath = ()) -> Iterator[KeyPath]:
    for key, sub in space.items():
        if isinstance(sub, DictSpace):
            yield from _leaf_paths(sub, (*prefix, key))
        else:
            yield (*prefix, key)


def _prune(space: DictSpace, keep: list[KeyPath]) -> DictSpace:
    """The DictSpace with only the leaves at ``keep`` (paths relative to ``space``)."""
    children: dict[str, Space] = {}
    for key, sub in space.items():
        nested = [path[1:] for path in keep if path[0] == key]
        if nested:
            children[key] = _prune(sub, nested) if isinstance(sub, DictSpace) else sub
    return DictSpace(space.backend, children)


# ---------------------------------------------------------------------- values
def extract(value: Any, route: Route) -> Any:
    """The part of a sample (or batch) that the route's child stores."""
    node = value
    try:
        for key in route.mount:
            node = node[key]
        return _project(route.space, node) if route.residual else node
    except (KeyError, TypeError, IndexError) as error:
        raise SpaceMismatchError(f"DictStorage: the value has no field for {route.key!r} (missing {error})") from None


def place(result: dict[str, Any], route: Route, value: Any) -> None:
    """Put a child's value (or merge a residual's keys) into the nested ``result``."""
    node = result
    for key in route.mount if route.residual else route.mount[:-1]:
        node = node.setdefault(key, {})
    if route.residual:
        _merge(node, value)
    else:
        node[route.mount[-1]] = value


def ordered(space: Space, value: Any) -> Any:
    """``value`` with its dict keys in the space's (sorted) order."""
    if not isinstance(space, DictSpace):
        return value
    return {
        key: ordered(sub, value.get(key, {}) if isinstance(sub, DictSpace) else value[key])
        for key, sub in space.items()
    }


def _project(space: Space, value: Any) -> Any:
    if not isinstance(space, DictSpace):
        return value
    return {key: _project(sub, value[key]) for key, sub in space.items()}


def _merge(node: dict[str, Any], value: Mapping[str, Any]) -> None:
    for key, sub in value.items():
        if isinstance(sub, Mapping) and isinstance(node.get(key), dict):
            _merge(node[key], sub)
        else:
            node[key] = sub
