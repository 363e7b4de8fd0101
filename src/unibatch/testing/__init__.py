"""Testing helpers: a reference in-memory batch, conformance suites and hypothesis strategies.

``InMemoryBatch`` needs nothing beyond unibatch. The conformance suites (``BatchTests``,
``StorageTests``) and the strategies import pytest and hypothesis, on first access only.
"""

from __future__ import annotations

import importlib
from typing import Any

from unibatch.testing.memory_batch import InMemoryBatch as InMemoryBatch

_LAZY = {
    "BatchCase": "unibatch.testing.conformance",
    "BatchTests": "unibatch.testing.conformance",
    "assert_tree_equal": "unibatch.testing.conformance",
    "index_expressions": "unibatch.testing.conformance",
    "StorageTests": "unibatch.testing.storage_conformance",
    "storage_sample": "unibatch.testing.storage_conformance",
    "storage_space": "unibatch.testing.storage_conformance",
    "BOX_DTYPES": "unibatch.testing.strategies",
    "FLOAT_DTYPES": "unibatch.testing.strategies",
    "INTEGER_DTYPES": "unibatch.testing.strategies",
    "LEAF_KINDS": "unibatch.testing.strategies",
    "binary_spaces": "unibatch.testing.strategies",
    "box_spaces": "unibatch.testing.strategies",
    "charsets": "unibatch.testing.strategies",
    "dict_keys": "unibatch.testing.strategies",
    "flattenable_spaces": "unibatch.testing.strategies",
    "leaf_spaces": "unibatch.testing.strategies",
    "sample_lists": "unibatch.testing.strategies",
    "samples": "unibatch.testing.strategies",
    "seeds": "unibatch.testing.strategies",
    "shapes": "unibatch.testing.strategies",
    "spaces": "unibatch.testing.strategies",
    "text_spaces": "unibatch.testing.strategies",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["InMemoryBatch", *sorted(_LAZY)]
