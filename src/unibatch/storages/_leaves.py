"""The leaves of a space as a flat table, and conversion between nested values and leaf lists.

Storages keep one array per leaf (in flat order: sorted dict keys, tuple positions) and
rebuild nested values on read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optree

from unibatch.errors import UnsupportedSpaceError
from unibatch.spaces import BinarySpace, BoxSpace, DictSpace, Space, TextSpace, TupleSpace
from unibatch.spaces._tree import leaves as _leaf_paths


@dataclass(frozen=True)
class Leaf:
    """One array-valued field of a space."""

    name: str
    """Key path joined with ``/`` (``"obs/image"``); ``""`` for a space that is itself a leaf."""
    space: Space
    shape: tuple[int, ...]
    numpy_dtype: np.dtype
    """Dtype of the stored array (texts: fixed-length unicode ``<U{max_length}``)."""

    @property
    def is_text(self) -> bool:
        return isinstance(self.space, TextSpace)

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.numpy_dtype.itemsize


def leaf_table(space: Space) -> list[Leaf]:
    """Every leaf of ``space`` in flat order; raises for leaves that have no array form."""
    table = []
    for name, leaf in _leaf_paths(space):
        if isinstance(leaf, BoxSpace):
            dtype = leaf.backend.numpy_dtype(leaf.dtype)
        elif isinstance(leaf, BinarySpace):
            dtype = np.dtype(bool)
        elif isinstance(leaf, TextSpace):
            dtype = np.dtype(f"<U{max(leaf.max_length, 1)}")
        else:
            raise UnsupportedSpaceError(f"cannot store {leaf!r} at {name or 'the root'} as arrays")
        table.append(Leaf(name, leaf, tuple(leaf.shape or ()), dtype))
    return table


def split_value(space: Space, value: Any) -> list[Any]:
    """The leaf values of a (nested) value, in flat order."""
    if isinstance(space, DictSpace):
        return [leaf for key, sub in space.items() for leaf in split_value(sub, value[key])]
    if isinstance(space, TupleSpace):
        return [leaf for sub, item in zip(space.spaces, value, strict=True) for leaf in split_value(sub, item)]
    return [value]


def assemble(space: Space, leaf_values: list[Any]) -> Any:
    """Inverse of :func:`split_value`: rebuild the nested value from leaf values in flat order.

    Uses the space's tree structure, built once (optree's C unflatten: reads call this per batch).
    """
    cached = space.__dict__.get("_leaf_treespec")
    if cached is None or cached[0] != Space.structure_version:
        placeholders = _assemble(space, iter(range(sum(1 for _ in _leaf_paths(space)))))
        cached = (Space.structure_version, optree.tree_structure(placeholders))
        space.__dict__["_leaf_treespec"] = cached
    return optree.tree_unflatten(cached[1], leaf_values)


def _assemble(space: Space, values: Iterator[Any]) -> Any:
    if isinstance(space, DictSpace):
        return {key: _assemble(sub, values) for key, sub in space.items()}
    if isinstance(space, TupleSpace):
        return tuple(_assemble(sub, values) for sub in space.spaces)
    return next(values)


def host_index(index: Any) -> Any:
    """A storage index usable on NumPy arrays: ints and slices as they are, backend arrays on the host."""
    if type(index) is np.ndarray or isinstance(index, (int, slice)):  # the common cases: no lookup
        return index
    from unibatch.backends import get_backend_or_none

    backend = get_backend_or_none(index)
    return index if backend is None else np.asarray(backend.to_numpy(index))


def assign_leaves(arrays: list[np.ndarray], positions: Sequence[int], index: Any, values: Sequence[Any]) -> None:
    """``arrays[p][index] = value`` for each leaf position, values of any backend brought to the host first."""
    from unibatch.backends import get_backend_or_none

    for position, value in zip(positions, values, strict=True):
        backend = get_backend_or_none(value)
        arrays[position][index] = value if backend is None else backend.to_numpy(value)


def texts_to_objects(array: np.ndarray) -> Any:
    """Fixed-length unicode storage to what text spaces hold: ``str`` or object arrays."""
    if array.ndim == 0:
        return str(array)
    return array.astype(object)
