"""``TransformedStorage``: values stored as ``transformation.transform(value)`` in an inner storage.

Layout of the storage directory::

    transformed.json   {"format_version": 1, "inner": {"name", "path"}, "transformation": {"name", "configuration"}}
    inner_storage/     the inner storage, holding values of the transformation's target space
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typing_extensions import Self

from unibatch.errors import SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import Space, batch_space
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
from unibatch.transformations import DataTransformation, json_to_transformation, transformation_to_json

SIDECAR = "transformed.json"


@register_storage("transformed")
class TransformedStorage(InnerStorageWrapper):
    """Values of ``single_instance_space`` kept transformed (e.g. rescaled, compressed) in ``inner``.

    Writes apply ``transformation`` with the space of one value for an int index and
    ``batch_space(space, 1)`` for a batch; reads apply its inverse with the transformed space
    (single or batch-1) as source. The flattened layout is the one of the original values.

    Args:
        single_instance_space: the space of one value.
        transformation: an invertible transformation (``has_inverse`` is True).
        inner: a storage of ``transformation.get_target_space_from_source(single_instance_space)``.
        directory: the composition's directory, or None.
        relative: the inner storage's path inside ``directory`` (default ``inner_storage<ext>``).
    """

    sidecar_name = SIDECAR

    def __init__(
        self,
        single_instance_space: Space,
        transformation: DataTransformation,
        inner: SpaceStorage,
        directory: Path | None = None,
        relative: str | None = None,
    ) -> None:
        target = _target_space(transformation, single_instance_space)
        if inner.single_instance_space != target:
            raise SpaceMismatchError(
                f"TransformedStorage: the inner storage must hold {target!r}, got {inner.single_instance_space!r}"
            )
        super().__init__(single_instance_space, inner, directory, relative)
        self.transformation = transformation
        self._inverse = transformation.direction_inverse(single_instance_space)
        self._target_space = target
        self._batched_target_space = batch_space(target, 1)

    @classmethod
    @removes_on_failure
    def create(  # type: ignore[override]  # the class of the children comes first, as in the reference
        cls,
        single_instance_space: Space,
        inner_storage_cls: type[SpaceStorage] | str,
        *args: Any,
        data_transformation: DataTransformation,
        capacity: int | None,
        cache_path: PathLike | None = None,
        multiprocessing: bool = False,
        inner_storage_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Create the inner storage of transformed values (``cache_path/inner_storage<ext>`` on disk).

        Args:
            single_instance_space: the space of one value.
            inner_storage_cls: class or registered name of the inner storage.
            *args: forwarded to the inner ``create``.
            data_transformation: invertible, and registered when the storage is persisted.
            capacity: number of rows, or None for a growable storage.
            cache_path: the composition's directory (new or empty), or None.
            multiprocessing: forwarded to the inner ``create``.
            inner_storage_kwargs: inner ``create`` arguments; override ``kwargs``.
            **kwargs: forwarded to the inner ``create``.
        """
        inner_cls = resolve_storage_class(inner_storage_cls, "TransformedStorage inner_storage_cls")
        target = _target_space(data_transformation, single_instance_space)
        if cache_path is not None:  # fail before creating anything when it cannot be persisted
            transformation_to_json(data_transformation, single_instance_space)
        capacity = parse_capacity(capacity)
        directory = prepare_directory(cache_path)
        relative = inner_file_name(inner_cls)
        inner = inner_cls.create(
            target,
            *args,
            capacity=capacity,
            cache_path=child_path(directory, relative),
            multiprocessing=multiprocessing,
            **{**kwargs, **(inner_storage_kwargs or {})},
        )
        storage = cls(single_instance_space, data_transformation, inner, directory, relative)
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
        """Rebuild the transformation and reopen the inner storage named in ``path/transformed.json``."""
        directory = Path(path)
        sidecar = read_sidecar(directory, SIDECAR, "transformed")
        inner_cls, relative = parse_child(sidecar.get("inner"), directory / SIDECAR)
        transformation = json_to_transformation(sidecar.get("transformation", {}), single_instance_space)
        inner = inner_cls.load_from(
            directory / relative,
            _target_space(transformation, single_instance_space),
            capacity=capacity,
            read_only=read_only,
            multiprocessing=multiprocessing,
            **kwargs,
        )
        return cls(single_instance_space, transformation, inner, directory, relative)

    def _get(self, index: StorageIndex) -> Any:
        stored = self.inner._get(index)
        source = self._target_space if isinstance(index, int) else self._batched_target_space
        return self._inverse.transform(source, stored)

    def _set(self, index: StorageIndex, value: Any) -> None:
        self._check_writable("set")
        source = self.single_instance_space if isinstance(index, int) else self._batched_space
        self.inner._set(index, self.transformation.transform(source, value))

    def _sidecar_payload(self) -> dict[str, Any]:
        payload = super()._sidecar_payload()
        payload["transformation"] = transformation_to_json(self.transformation, self.single_instance_space)
        return payload


def _target_space(transformation: DataTransformation, space: Space) -> Space:
    """The transformed space; the transformation must be invertible."""
    if not isinstance(transformation, DataTransformation):
        raise TypeError(f"TransformedStorage: expected a DataTransformation, got {type(transformation).__name__}")
    if not transformation.has_inverse:
        raise UnsupportedOperationError(
            f"TransformedStorage needs an invertible transformation (has_inverse=True), got {transformation!r}"
        )
    return transformation.get_target_space_from_source(space)
