"""``FlattenedStorage``: values kept as flat rows ``(D,)`` of ``flatten_space(space)`` in an inner storage.

Layout of the storage directory::

    flattened.json     {"format_version": 1, "inner": {"name": "memmap", "path": "inner_storage"}}
    inner_storage/     the inner storage (its own layout; ``inner_storage.hdf5`` for one-file formats)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typing_extensions import Self

from unibatch._typing import Array
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import Space, flatten_data, flatten_space, unflatten_data
from unibatch.storages._base import PathLike, SpaceStorage, StorageIndex
from unibatch.storages._composite import (
    InnerStorageWrapper,
    child_path,
    inner_file_name,
    parse_child,
    prepare_directory,
    read_sidecar,
    resolve_storage_class,
)
from unibatch.storages._directories import parse_capacity, removes_on_failure
from unibatch.storages._registry import register_storage

SIDECAR = "flattened.json"


@register_storage("flattened")
class FlattenedStorage(InnerStorageWrapper):
    """Each value flattened to one row of ``flatten_space(space)`` (shape ``(D,)``) in ``inner``.

    Reads unflatten, writes flatten; :meth:`get_flattened` and :meth:`set_flattened` move the
    flat rows ``(B, D)`` without conversion. Size, capabilities and lifecycle are the inner
    storage's.

    Args:
        single_instance_space: the space of one value (every leaf flattenable).
        inner: a storage of ``flatten_space(single_instance_space)``.
        directory: the composition's directory, or None.
        relative: the inner storage's path inside ``directory`` (default ``inner_storage<ext>``).
    """

    sidecar_name = SIDECAR

    def __init__(
        self,
        single_instance_space: Space,
        inner: SpaceStorage,
        directory: Path | None = None,
        relative: str | None = None,
    ) -> None:
        flat = flatten_space(single_instance_space)
        if inner.single_instance_space != flat:
            raise SpaceMismatchError(
                f"FlattenedStorage: the inner storage must hold {flat!r}, got {inner.single_instance_space!r}"
            )
        super().__init__(single_instance_space, inner, directory, relative)

    @classmethod
    @removes_on_failure
    def create(  # type: ignore[override]  # the class of the children comes first, as in the reference
        cls,
        single_instance_space: Space,
        inner_storage_cls: type[SpaceStorage] | str,
        *args: Any,
        capacity: int | None,
        cache_path: PathLike | None = None,
        multiprocessing: bool = False,
        inner_storage_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Create the inner storage of flat rows (in ``cache_path/inner_storage<ext>`` when on disk).

        Args:
            single_instance_space: the space of one value.
            inner_storage_cls: class or registered name of the inner storage.
            *args: forwarded to the inner ``create``.
            capacity: number of rows, or None for a growable storage.
            cache_path: the composition's directory (new or empty), or None.
            multiprocessing: forwarded to the inner ``create``.
            inner_storage_kwargs: inner ``create`` arguments; override ``kwargs``.
            **kwargs: forwarded to the inner ``create``.
        """
        inner_cls = resolve_storage_class(inner_storage_cls, "FlattenedStorage inner_storage_cls")
        flat = flatten_space(single_instance_space)
        capacity = parse_capacity(capacity)
        directory = prepare_directory(cache_path)
        relative = inner_file_name(inner_cls)
        inner = inner_cls.create(
            flat,
            *args,
            capacity=capacity,
            cache_path=child_path(directory, relative),
            multiprocessing=multiprocessing,
            **{**kwargs, **(inner_storage_kwargs or {})},
        )
        storage = cls(single_instance_space, inner, directory, relative)
        storage._write_sidecar()
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
        **kwargs: Any,
    ) -> Self:
        """Reopen the inner storage named in ``path/flattened.json``; ``kwargs`` go to its ``load_from``."""
        directory = Path(path)
        sidecar = read_sidecar(directory, SIDECAR, "flattened")
        inner_cls, relative = parse_child(sidecar.get("inner"), directory / SIDECAR)
        inner = inner_cls.load_from(
            directory / relative,
            flatten_space(single_instance_space),
            capacity=capacity,
            read_only=read_only,
            multiprocessing=multiprocessing,
            **kwargs,
        )
        return cls(single_instance_space, inner, directory, relative)

    def _get(self, index: StorageIndex) -> Any:
        flat = self.inner._get(index)
        if isinstance(index, int):
            return unflatten_data(self.single_instance_space, flat)
        return unflatten_data(self._batched_space, flat, start_dim=1)

    def _set(self, index: StorageIndex, value: Any) -> None:
        self._check_writable("set")
        if isinstance(index, int):
            self.inner._set(index, flatten_data(self.single_instance_space, value))
        else:
            self.inner._set(index, flatten_data(self._batched_space, value, start_dim=1))

    def _get_flattened(self, index: StorageIndex) -> Array:
        """The stored flat rows: ``(D,)`` for an int, ``(B, D)`` otherwise."""
        return self.inner._get(index)

    def _set_flattened(self, index: StorageIndex, value: Array) -> None:
        """Store flat rows ``(D,)`` or ``(B, D)`` as they are."""
        self._check_writable("set_flattened")
        self.inner._set(index, value)
