"""Shared pieces of the composition storages: sidecar files, inner paths, delegation, column views.

A composition keeps its children in sub-directories (or files) of its own directory and
describes them in one small sidecar JSON file::

    {"format_version": 1, "inner": {"name": "memmap", "path": "inner_storage"}, ...}

Children are recorded by registered name (``storage_class`` reopens them), paths are plain
names relative to the composition's directory, and the file is replaced atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from unibatch.errors import FormatVersionError, SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import DictSpace, Space
from unibatch.storages import _atomic as atomic
from unibatch.storages._atomic import atomic_write_json
from unibatch.storages._base import PathLike, SpaceStorage, StorageIndex
from unibatch.storages._directories import new_directory
from unibatch.storages._registry import storage_class
from unibatch.storages._safe_paths import resolve_inside

FORMAT_VERSION = 1
INNER_NAME = "inner_storage"


# ---------------------------------------------------------------------- classes and paths
def resolve_storage_class(value: type[SpaceStorage] | str, what: str) -> type[SpaceStorage]:
    """A storage class given as a class or a registered name (``"memmap"``)."""
    if isinstance(value, str):
        return storage_class(value)
    if isinstance(value, type) and issubclass(value, SpaceStorage):
        return value
    raise TypeError(f"{what}: expected a SpaceStorage class or a registered name, got {value!r}")


def prepare_directory(cache_path: PathLike | None) -> Path | None:
    """Create the composition's directory (None stays None); it must be new or empty."""
    return None if cache_path is None else new_directory(cache_path)


def inner_file_name(inner_cls: type[SpaceStorage]) -> str:
    """Path of the one inner storage in a composition's directory: ``inner_storage<ext>``."""
    return INNER_NAME + (inner_cls.single_file_ext or "")


def child_path(directory: Path | None, relative: str) -> Path | None:
    """Where a child lives inside ``directory`` (None when the composition is not on disk)."""
    return None if directory is None else directory / relative


def write_sidecar(directory: PathLike, filename: str, payload: dict[str, Any]) -> None:
    """Atomically write ``directory/filename`` = ``{"format_version": 1, **payload}``."""
    atomic_write_json(Path(directory) / filename, {"format_version": FORMAT_VERSION, **payload})


def read_sidecar(directory: PathLike, filename: str, kind: str) -> dict[str, Any]:
    """The sidecar of a composition; named errors for a missing, foreign or newer file."""
    return atomic.read_sidecar(Path(directory) / filename, kind, FORMAT_VERSION)


def parse_child(entry: Any, sidecar: PathLike) -> tuple[type[SpaceStorage], str]:
    """``(class, relative path)`` of a ``{"name", "path"}`` entry; the path must stay inside.

    Raises:
        FormatVersionError: the entry is not ``{"name": str, "path": str}``, or the path is not a plain name.
        UnsafePathError: the path leaves the sidecar's directory (``..``, absolute, a symlink out of it).
    """
    name = entry.get("name") if isinstance(entry, dict) else None
    relative = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not isinstance(relative, str):
        raise FormatVersionError(f"{sidecar}: expected a child entry {{'name': str, 'path': str}}, got {entry!r}")
    resolve_inside(Path(sidecar).parent, relative, source=sidecar)
    if "/" in relative or "\\" in relative:
        raise FormatVersionError(f"{sidecar}: child path {relative!r} is not a plain name inside the directory")
    return storage_class(name), relative


def child_entry(storage: SpaceStorage, relative: str) -> dict[str, Any]:
    """The ``{"name", "path"}`` record of a child storage."""
    if storage.registered_name is None:
        raise UnsupportedOperationError(f"{type(storage).__name__} is not registered; use @register_storage")
    return {"name": storage.registered_name, "path": relative}


def follow(space: Space, keys: Sequence[str]) -> Space:
    """The sub-space at a key path of nested DictSpaces, or a SpaceMismatchError naming it."""
    for position, key in enumerate(keys):
        if not isinstance(space, DictSpace) or key not in space.spaces:
            path = "/".join(keys[: position + 1])
            raise SpaceMismatchError(f"column {path!r} does not exist in {space!r}")
        space = space[key]
    return space


# ---------------------------------------------------------------------- one inner storage
class InnerStorageWrapper(SpaceStorage):
    """Base of compositions over one inner storage: size, capabilities and lifecycle delegate."""

    sidecar_name: ClassVar[str] = ""
    """File name of the sidecar in the composition's directory."""

    def __init__(
        self, single_instance_space: Space, inner: SpaceStorage, directory: Path | None, relative: str | None
    ) -> None:
        super().__init__(single_instance_space)
        self.inner = inner
        self.cache_filename = directory
        self._relative = relative or inner_file_name(type(inner))

    @property
    def capacity(self) -> int | None:  # type: ignore[override]
        return self.inner.capacity

    @property
    def is_mutable(self) -> bool:  # type: ignore[override]
        return self.inner.is_mutable

    @property
    def is_multiprocessing_safe(self) -> bool:  # type: ignore[override]
        return self.inner.is_multiprocessing_safe

    @property
    def has_expensive_reads(self) -> bool:  # type: ignore[override]
        return self.inner.has_expensive_reads

    @property
    def is_persistent(self) -> bool:  # type: ignore[override]
        return self.inner.is_persistent

    def __len__(self) -> int:
        return len(self.inner)

    def _resize(self, length: int) -> None:
        self.inner._resize(length)

    def clear(self) -> None:
        self.inner.clear()

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        super().close()
        self.inner.close()

    def _sidecar_payload(self) -> dict[str, Any]:
        """What the sidecar records besides ``format_version``; subclasses add their fields."""
        return {"inner": child_entry(self.inner, self._relative)}

    def _write_sidecar(self) -> None:
        if self.cache_filename is not None:
            write_sidecar(self.cache_filename, self.sidecar_name, self._sidecar_payload())

    def dumps(self, path: PathLike) -> None:
        """Dump the inner storage to ``path/<inner path>`` and write the sidecar next to it."""
        target = Path(path)
        target.mkdir(parents=True, exist_ok=True)
        self.inner.dumps(target / self._relative)
        write_sidecar(target, self.sidecar_name, self._sidecar_payload())


# ---------------------------------------------------------------------- column views
class ColumnView(SpaceStorage):
    """The field at ``keys`` of each row of ``storage`` (a storage without column access).

    Reads take the whole row and pick the field; writes read the rows, replace the field and
    write the rows back. Length operations act on the whole source; closing the view leaves
    the source open.
    """

    supports_columns = True

    def __init__(self, storage: SpaceStorage, keys: Sequence[str]) -> None:
        if not keys:
            raise SpaceMismatchError("a column view needs at least one key, got none")
        super().__init__(follow(storage.single_instance_space, keys))
        self.storage = storage
        self.keys = tuple(keys)

    @property
    def capacity(self) -> int | None:  # type: ignore[override]
        return self.storage.capacity

    @property
    def is_mutable(self) -> bool:  # type: ignore[override]
        return self.storage.is_mutable

    @property
    def is_multiprocessing_safe(self) -> bool:  # type: ignore[override]
        return self.storage.is_multiprocessing_safe

    @property
    def has_expensive_reads(self) -> bool:  # type: ignore[override]
        return self.storage.has_expensive_reads

    def __len__(self) -> int:
        return len(self.storage)

    def _resize(self, length: int) -> None:
        self.storage._resize(length)

    def _get(self, index: StorageIndex) -> Any:
        value = self.storage._get(index)
        for key in self.keys:
            value = value[key]
        return value

    def _set(self, index: StorageIndex, value: Any) -> None:
        self._check_writable("set")
        row = self.storage._get(index)
        node = row
        for key in self.keys[:-1]:
            node = node[key]
        node[self.keys[-1]] = value
        self.storage._set(index, row)

    def get_column(self, nested_keys: Sequence[str]) -> SpaceStorage:
        return ColumnView(self.storage, (*self.keys, *nested_keys))

    def clear(self) -> None:
        self.storage.clear()

    def dumps(self, path: PathLike) -> None:
        raise UnsupportedOperationError("a column view cannot be persisted on its own; dump the storage it views")


def column_of(storage: SpaceStorage, keys: Sequence[str]) -> SpaceStorage:
    """``storage`` itself for no keys, its own column when it has column access, else a view."""
    if not keys:
        return storage
    if storage.supports_columns:
        return storage.get_column(list(keys))
    return ColumnView(storage, keys)
