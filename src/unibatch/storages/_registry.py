"""Registered storage names: persisted metadata names classes, never import paths."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from unibatch.errors import UnknownNameError

if TYPE_CHECKING:
    from unibatch.storages._base import SpaceStorage

_CLASSES: dict[str, type[SpaceStorage]] = {}
_LAZY: dict[str, str] = {
    "memory": "unibatch.storages.memory",
    "memmap": "unibatch.storages.memmap",
    "dict": "unibatch.storages.dict",
    "flattened": "unibatch.storages.flattened",
    "transformed": "unibatch.storages.transformed",
    "backend": "unibatch.storages.backend_compat",
    "hdf5": "unibatch.storages.hdf5",
    "zarr": "unibatch.storages.zarr",
    "parquet": "unibatch.storages.parquet",
    "video": "unibatch.storages.video",
    "image": "unibatch.storages.image",
}
S = TypeVar("S", bound="type[SpaceStorage]")


def register_storage(name: str) -> Callable[[S], S]:
    """Class decorator: record the storage under ``name`` in metadata."""

    def decorate(cls: S) -> S:
        existing = _CLASSES.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"storage name {name!r} is already registered by {existing.__name__}")
        cls.registered_name = name
        _CLASSES[name] = cls
        return cls

    return decorate


def storage_class(name: str) -> type[SpaceStorage]:
    """The storage class registered as ``name`` (importing its module on first use)."""
    if name not in _CLASSES and name in _LAZY:
        importlib.import_module(_LAZY[name])
    try:
        return _CLASSES[name]
    except KeyError:
        known = sorted(set(_CLASSES) | set(_LAZY))
        raise UnknownNameError(f"unknown storage {name!r}; known: {', '.join(known)}") from None


def declare_lazy_storage(name: str, module: str) -> None:
    """Let ``storage_class(name)`` import ``module`` on demand (for optional formats)."""
    _LAZY[name] = module
