"""``ToBackendOrDeviceStorage``: data kept in an inner storage on another backend and/or device.

Layout of the storage directory::

    backend.json       {"format_version": 1, "inner": {"name", "path"}, "inner_backend": "numpy", "inner_device": null}
    inner_storage/     the inner storage, holding the space converted to the inner backend and device
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import Self

from unibatch._typing import Array, Device
from unibatch.backends import ComputeBackend, backend_from_name, convert, get_backend_or_none
from unibatch.errors import FormatVersionError, SpaceMismatchError
from unibatch.spaces import Space, flat_dtype
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
from unibatch.storages._leaves import assemble, split_value
from unibatch.storages._registry import register_storage

SIDECAR = "backend.json"


@register_storage("backend")
class ToBackendOrDeviceStorage(InnerStorageWrapper):
    """Values of ``single_instance_space`` stored by ``inner`` on another backend or device.

    Reads convert the inner storage's results to this space's backend and device; writes and
    index arrays are converted to the inner ones (DLPack where safe, see
    :mod:`unibatch.backends.transfer`). Text leaves stay host objects.

    Args:
        single_instance_space: the space of one value, as seen by callers.
        inner: a storage of the same space on its own backend and device.
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
        expected = single_instance_space.to(backend=inner.backend)
        if inner.single_instance_space != expected:
            raise SpaceMismatchError(
                f"ToBackendOrDeviceStorage: the inner storage must hold {expected!r}, "
                f"got {inner.single_instance_space!r}"
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
        backend: ComputeBackend | None = None,
        device: Device | None = None,
        inner_storage_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SpaceStorage:
        """Create the inner storage on ``backend``/``device`` (None: the space's own).

        When neither differs from the space's, the inner storage itself is returned, created
        at ``cache_path`` (nothing to convert, nothing to wrap).

        Args:
            single_instance_space: the space of one value, as seen by callers.
            inner_storage_cls: class or registered name of the inner storage.
            *args: forwarded to the inner ``create``.
            capacity: number of rows, or None for a growable storage.
            cache_path: the composition's directory (new or empty), or None.
            multiprocessing: forwarded to the inner ``create``.
            backend: the inner storage's backend.
            device: the inner storage's device.
            inner_storage_kwargs: inner ``create`` arguments; override ``kwargs``.
            **kwargs: forwarded to the inner ``create``.
        """
        inner_cls = resolve_storage_class(inner_storage_cls, "ToBackendOrDeviceStorage inner_storage_cls")
        inner_space = single_instance_space.to(backend=backend, device=device)
        capacity = parse_capacity(capacity)
        arguments = {"capacity": capacity, "multiprocessing": multiprocessing, **kwargs, **(inner_storage_kwargs or {})}
        if _same_place(single_instance_space, inner_space):
            return inner_cls.create(single_instance_space, *args, cache_path=cache_path, **arguments)
        directory = prepare_directory(cache_path)
        relative = inner_file_name(inner_cls)
        inner = inner_cls.create(inner_space, *args, cache_path=child_path(directory, relative), **arguments)
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
        """Reopen the inner storage on the backend and device recorded in ``path/backend.json``."""
        directory = Path(path)
        sidecar = read_sidecar(directory, SIDECAR, "backend")
        inner_cls, relative = parse_child(sidecar.get("inner"), directory / SIDECAR)
        name, device_name = sidecar.get("inner_backend"), sidecar.get("inner_device")
        if not isinstance(name, str) or not isinstance(device_name, (str, type(None))):
            raise FormatVersionError(
                f"{directory / SIDECAR}: expected inner_backend (str) and inner_device (str or null), "
                f"got {name!r} and {device_name!r}"
            )
        inner_backend = backend_from_name(name)
        inner_space = single_instance_space.to(
            backend=inner_backend, device=inner_backend.deserialize_device(device_name)
        )
        inner = inner_cls.load_from(
            directory / relative,
            inner_space,
            capacity=capacity,
            read_only=read_only,
            multiprocessing=multiprocessing,
            **kwargs,
        )
        return cls(single_instance_space, inner, directory, relative)

    # ------------------------------------------------------------------ conversion
    def _inner_index(self, index: StorageIndex) -> StorageIndex:
        if isinstance(index, (int, slice)):
            return index
        return convert(index, self.inner.backend, self.inner.device)

    def _move(self, value: Any, backend: ComputeBackend, device: Device | None) -> Any:
        space = self.single_instance_space
        return assemble(space, [_convert_leaf(leaf, backend, device) for leaf in split_value(space, value)])

    # ------------------------------------------------------------------ data
    def _get(self, index: StorageIndex) -> Any:
        return self._move(self.inner._get(self._inner_index(index)), self.backend, self.device)

    def _set(self, index: StorageIndex, value: Any) -> None:
        self._check_writable("set")
        self.inner._set(self._inner_index(index), self._move(value, self.inner.backend, self.inner.device))

    def _get_flattened(self, index: StorageIndex) -> Array:
        """The inner flat rows, converted: ``(D,)`` for an int, ``(B, D)`` otherwise."""
        flat = convert(self.inner._get_flattened(self._inner_index(index)), self.backend, self.device)
        return self.backend.xp.astype(flat, flat_dtype(self.single_instance_space), copy=False)

    def _set_flattened(self, index: StorageIndex, value: Array) -> None:
        self._check_writable("set_flattened")
        self.inner._set_flattened(self._inner_index(index), convert(value, self.inner.backend, self.inner.device))

    def _sidecar_payload(self) -> dict[str, Any]:
        payload = super()._sidecar_payload()
        payload["inner_backend"] = self.inner.backend.simplified_name
        payload["inner_device"] = self.inner.backend.serialize_device(self.inner.device)
        return payload


def _same_place(space: Space, inner_space: Space) -> bool:
    """Whether the inner space has the same backend and device (no conversion needed)."""
    if inner_space.backend is not space.backend:
        return False
    backend = space.backend
    return backend.serialize_device(space.device) == backend.serialize_device(inner_space.device)


def _convert_leaf(value: Any, backend: ComputeBackend, device: Device | None) -> Any:
    """An array leaf converted; text (``str``, object arrays) and Python scalars kept as they are."""
    if get_backend_or_none(value) is None or (isinstance(value, np.ndarray) and value.dtype == object):
        return value
    return convert(value, backend, device)
