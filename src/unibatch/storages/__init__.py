"""Storages: where the samples of a space live.

Importing this package loads no format library; each storage class is imported on first
access (PEP 562), and persisted metadata names classes by their registered name.
"""

from __future__ import annotations

import importlib
from typing import Any

from unibatch.storages._base import SpaceStorage as SpaceStorage
from unibatch.storages._registry import register_storage as register_storage
from unibatch.storages._registry import storage_class as storage_class

_LAZY = {
    "MemoryStorage": "unibatch.storages.memory",
    "MemmapStorage": "unibatch.storages.memmap",
    "DictStorage": "unibatch.storages.dict",
    "FlattenedStorage": "unibatch.storages.flattened",
    "TransformedStorage": "unibatch.storages.transformed",
    "ToBackendOrDeviceStorage": "unibatch.storages.backend_compat",
    "HDF5Storage": "unibatch.storages.hdf5",
    "ZarrStorage": "unibatch.storages.zarr",
    "ParquetStorage": "unibatch.storages.parquet",
    "VideoStorage": "unibatch.storages.video",
    "ImageStorage": "unibatch.storages.image",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DictStorage",
    "FlattenedStorage",
    "HDF5Storage",
    "ImageStorage",
    "MemmapStorage",
    "MemoryStorage",
    "ParquetStorage",
    "SpaceStorage",
    "ToBackendOrDeviceStorage",
    "TransformedStorage",
    "VideoStorage",
    "ZarrStorage",
    "register_storage",
    "storage_class",
]
