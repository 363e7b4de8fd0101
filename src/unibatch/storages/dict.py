"""``DictStorage``: one child storage per key path of a DictSpace (images in one format, the rest in another).

Layout of the storage directory::

    dict.json          {"format_version": 1, "nested_separator": "/",
                        "children": {"obs/image": {"name": "memmap", "path": "obs.image"},
                                     "*": {"name": "memmap", "path": "_default"}}}
    obs.image/         the child storing ``obs/image``
    _default/          the child storing every other leaf (the ``"*"`` residual)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from typing_extensions import Self

from unibatch.errors import FormatVersionError, SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import Space
from unibatch.storages._base import PathLike, SpaceStorage, StorageIndex
from unibatch.storages._composite import (
    child_entry,
    child_path,
    follow,
    parse_child,
    prepare_directory,
    read_sidecar,
    resolve_storage_class,
    write_sidecar,
)
from unibatch.storages._dict_children import (
    SIDECAR,
    KwargsMap,
    align_lengths,
    check_children,
    check_kwarg_keys,
    child_file_names,
    child_kwargs,
    column_routes,
    parse_separator,
    require_dict,
)
from unibatch.storages._dict_routes import Route, extract, ordered, place, plan_routes
from unibatch.storages._directories import parse_capacity, removes_on_failure
from unibatch.storages._registry import register_storage


@register_storage("dict")
class DictStorage(SpaceStorage):
    """Values of a DictSpace split among child storages that share capacity and length.

    Use :meth:`create` and :meth:`load_from`. Column access returns a child for its exact key,
    and otherwise a view on the part of one or more children below the key.

    Args:
        single_instance_space: the DictSpace of one value.
        routes: where each child's values sit (see :func:`plan_routes`).
        children: one storage per route, of the route's space.
        nested_separator: separator of the map keys (``"obs/image"``).
        directory: the storage's directory, or None.
        owns_children: False for column views, which never close or persist their children.
    """

    supports_columns = True

    def __init__(
        self,
        single_instance_space: Space,
        routes: Sequence[Route],
        children: Sequence[SpaceStorage],
        *,
        nested_separator: str = "/",
        directory: Path | None = None,
        file_names: Sequence[str] | None = None,
        owns_children: bool = True,
        length: int | None = None,
    ) -> None:
        check_children(require_dict(single_instance_space), routes, children, length)
        super().__init__(single_instance_space)
        self._routes = list(routes)
        self._children = list(children)
        self._names = (
            list(file_names) if file_names is not None else child_file_names(routes, [type(c) for c in children])
        )
        self._separator = nested_separator
        self._owns_children = owns_children
        self.cache_filename = directory
        self._length = length  # set when read-only children hold rows past the committed ones

    # ------------------------------------------------------------------ construction
    @classmethod
    @removes_on_failure
    def create(  # type: ignore[override]  # the class of the children comes first, as in the reference
        cls,
        single_instance_space: Space,
        storage_cls_map: Mapping[str, type[SpaceStorage] | str],
        *args: Any,
        capacity: int | None,
        cache_path: PathLike | None = None,
        multiprocessing: bool = False,
        key_kwargs: KwargsMap | None = None,
        type_kwargs: KwargsMap | None = None,
        nested_separator: str = "/",
        **kwargs: Any,
    ) -> Self:
        """Create one child per entry of ``storage_cls_map`` (in ``cache_path/<key path>`` on disk).

        Args:
            single_instance_space: the DictSpace of one value.
            storage_cls_map: key path (``"obs/image"``), ``"*"`` or ``"prefix/*"`` to a storage
                class or registered name; every leaf must be covered.
            *args: forwarded to every child's ``create``.
            capacity: number of rows, or None for a growable storage.
            cache_path: the storage's directory (new or empty), or None.
            multiprocessing: forwarded to every child's ``create``.
            key_kwargs: per map key ``create`` arguments (override the others).
            type_kwargs: per storage class (or registered name) ``create`` arguments.
            nested_separator: separator of the key paths in ``storage_cls_map``.
            **kwargs: forwarded to every child's ``create``.
        """
        space = require_dict(single_instance_space)
        if not isinstance(storage_cls_map, Mapping) or not storage_cls_map:
            raise SpaceMismatchError(f"DictStorage needs a non-empty storage_cls_map, got {storage_cls_map!r}")
        classes = {
            key: resolve_storage_class(value, f"storage_cls_map[{key!r}]") for key, value in storage_cls_map.items()
        }
        check_kwarg_keys(key_kwargs, classes)
        routes = plan_routes(space, classes, parse_separator(nested_separator))
        names = child_file_names(routes, [classes[route.key] for route in routes])
        capacity = parse_capacity(capacity)
        directory = prepare_directory(cache_path)
        common = {"capacity": capacity, "multiprocessing": multiprocessing}
        children: list[SpaceStorage] = []
        try:
            for route, name in zip(routes, names, strict=True):
                child_cls = classes[route.key]
                arguments = {**common, **child_kwargs(route.key, child_cls, kwargs, key_kwargs, type_kwargs)}
                children.append(
                    child_cls.create(route.space, *args, cache_path=child_path(directory, name), **arguments)
                )
        except BaseException:
            for child in children:
                child.close()
            raise
        storage = cls(space, routes, children, nested_separator=nested_separator, directory=directory, file_names=names)
        if directory is not None:
            storage._write_sidecar(directory)
        return storage

    @classmethod
    def load_from(
        cls,
        path: PathLike,
        single_instance_space: Space,
        *,
        capacity: int | None = None,
        read_only: bool = True,
        multiprocessing: bool = False,
        key_kwargs: KwargsMap | None = None,
        type_kwargs: KwargsMap | None = None,
        **kwargs: Any,
    ) -> Self:
        """Reopen every child named in ``path/dict.json`` (with its stored ``nested_separator``)."""
        directory = Path(path)
        sidecar = read_sidecar(directory, SIDECAR, "dict")
        separator, stored = sidecar.get("nested_separator"), sidecar.get("children")
        if not isinstance(separator, str) or not separator or not isinstance(stored, dict) or not stored:
            raise FormatVersionError(f"{directory / SIDECAR}: expected a nested_separator and a non-empty children map")
        check_kwarg_keys(key_kwargs, stored)
        routes = plan_routes(require_dict(single_instance_space), stored, separator)
        if sorted(route.key for route in routes) != sorted(stored):
            raise SpaceMismatchError(
                f"{directory} stores children {sorted(stored)}, but the space routes {[r.key for r in routes]}"
            )
        common = {"capacity": capacity, "read_only": read_only, "multiprocessing": multiprocessing}
        children, names = [], []
        for route in routes:
            child_cls, name = parse_child(stored[route.key], directory / SIDECAR)
            arguments = {**common, **child_kwargs(route.key, child_cls, kwargs, key_kwargs, type_kwargs)}
            children.append(child_cls.load_from(directory / name, route.space, **arguments))
            names.append(name)
        length = align_lengths(children)  # a writer killed between two children's flushes
        return cls(
            single_instance_space,
            routes,
            children,
            nested_separator=separator,
            directory=directory,
            file_names=names,
            length=length,
        )

    # ------------------------------------------------------------------ capabilities and size
    @property
    def capacity(self) -> int | None:  # type: ignore[override]
        return self._children[0].capacity

    @property
    def is_mutable(self) -> bool:  # type: ignore[override]
        return all(child.is_mutable for child in self._children)

    @property
    def is_multiprocessing_safe(self) -> bool:  # type: ignore[override]
        return all(child.is_multiprocessing_safe for child in self._children)

    @property
    def is_persistent(self) -> bool:  # type: ignore[override]
        return all(child.is_persistent for child in self._children)

    @property
    def has_expensive_reads(self) -> bool:  # type: ignore[override]
        return any(child.has_expensive_reads for child in self._children)

    @property
    def children(self) -> dict[str, SpaceStorage]:
        """The child storages by map key."""
        return {route.key: child for route, child in zip(self._routes, self._children, strict=True)}

    def __len__(self) -> int:
        return len(self._children[0]) if self._length is None else self._length

    def _resize(self, length: int) -> None:
        for child in self._children:
            child._resize(length)
        self._length = None

    # ------------------------------------------------------------------ data
    def _get(self, index: StorageIndex) -> Any:
        result: dict[str, Any] = {}
        for route, child in zip(self._routes, self._children, strict=True):
            place(result, route, child._get(index))
        return ordered(self.single_instance_space, result)

    def _set(self, index: StorageIndex, value: Any) -> None:
        self._check_writable("set")
        parts = [extract(value, route) for route in self._routes]  # every part found before any write
        for child, part in zip(self._children, parts, strict=True):
            child._set(index, part)

    def get_column(self, nested_keys: Sequence[str]) -> SpaceStorage:
        """The child stored at exactly ``nested_keys``, else a view of the children below it."""
        keys = tuple(nested_keys.split(self._separator)) if isinstance(nested_keys, str) else tuple(nested_keys)
        if not keys:
            return self
        space = follow(self.single_instance_space, keys)  # names the first missing key
        found = column_routes(self._routes, self._children, keys)
        if isinstance(found, SpaceStorage):
            return found
        return DictStorage(
            space, *found, nested_separator=self._separator, file_names=[], owns_children=False, length=self._length
        )

    def check_stored(self, slots: Any) -> list[str]:
        return [
            f"{route.key}: {problem}"
            for route, child in zip(self._routes, self._children, strict=True)
            for problem in child.check_stored(slots)
        ]

    def clear(self) -> None:
        for child in self._children:
            child.clear()

    # ------------------------------------------------------------------ persistence and lifecycle
    def _write_sidecar(self, directory: Path) -> None:
        entries = zip(self._routes, self._children, self._names, strict=True)
        children = {route.key: child_entry(child, name) for route, child, name in entries}
        write_sidecar(directory, SIDECAR, {"nested_separator": self._separator, "children": children})

    def dumps(self, path: PathLike) -> None:
        """Dump every child to ``path/<key path>`` and write ``dict.json``."""
        if not self._owns_children:
            raise UnsupportedOperationError("a column view cannot be persisted on its own; dump the storage it views")
        target = Path(path)
        target.mkdir(parents=True, exist_ok=True)
        for child, name in zip(self._children, self._names, strict=True):
            child.dumps(target / name)
        self._write_sidecar(target)

    def flush(self) -> None:
        for child in self._children:
            child.flush()

    def close(self) -> None:
        super().close()
        if self._owns_children:
            for child in self._children:
                child.close()
