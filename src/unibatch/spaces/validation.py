"""Validation of values against a space before they are written (decision 11).

Checks structure (keys), shape and dtype kind of every leaf without touching values on the
device; range checks against ``low``/``high`` are opt-in (``bounds=True``) because they read
all the data. Every failure is a :class:`~unibatch.errors.SpaceMismatchError` naming the key
path, what was expected and what was got.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from unibatch.errors import SpaceMismatchError
from unibatch.spaces._dtypes import fits, scalar_fits
from unibatch.spaces._space import Space
from unibatch.spaces._tree import text_of, walk
from unibatch.spaces.binary import BinarySpace
from unibatch.spaces.box import BoxSpace
from unibatch.spaces.dict import DictSpace
from unibatch.spaces.tuple import TupleSpace


def check_data(space: Space, data: Any, *, batch_ndim: int = 0, bounds: bool = False) -> tuple[int, ...]:
    """Raise unless ``data`` is a value of ``space`` with ``batch_ndim`` leading batch axes.

    Args:
        space: the space of one (unbatched) value.
        data: the value, or a batch of values with ``batch_ndim`` leading axes shared by all leaves.
        batch_ndim: how many leading batch axes every leaf carries.
        bounds: also check that values lie in ``[low, high]`` (reads the data).

    Returns:
        The common batch shape (``()`` when ``batch_ndim == 0``).

    Raises:
        SpaceMismatchError: naming the key path, the expected and the got structure, shape or dtype.

    >>> from unibatch import BoxSpace, NumpyComputeBackend as np_backend
    >>> check_data(BoxSpace(np_backend, 0, 1, "float32", shape=(2,)), np.zeros((5, 2)), batch_ndim=1)
    (5,)
    >>> check_data(BoxSpace(np_backend, 0, 1, "float32", shape=(2,)), np.zeros((5, 3)), batch_ndim=1)
    Traceback (most recent call last):
    ...
    unibatch.errors.SpaceMismatchError: value: expected shape (batch, 2), got (5, 3)
    """
    if not bounds:
        fast = _fast_check(space, data, batch_ndim)
        if fast is not None:
            return fast
    batch_shape: tuple[int, ...] | None = None
    for path, leaf, value in walk(space, data):
        where = path or "value"
        leaf_batch = _check_leaf(leaf, value, batch_ndim, where, bounds)
        if batch_shape is not None and leaf_batch != batch_shape:
            raise SpaceMismatchError(
                f"{where}: expected batch shape {batch_shape} like the other keys, got {leaf_batch}"
            )
        batch_shape = leaf_batch
    return batch_shape if batch_shape is not None else ()


def _check_leaf(leaf: Space, value: Any, batch_ndim: int, where: str, bounds: bool) -> tuple[int, ...]:
    text = text_of(leaf)
    if text is not None:
        strings = np.asarray(value, dtype=object)
        if strings.ndim != batch_ndim:
            raise SpaceMismatchError(f"{where}: expected texts with {batch_ndim} batch axes, got shape {strings.shape}")
        bad = next((s for s in strings.reshape(-1) if not text.contains(s)), None)
        if bad is not None:
            raise SpaceMismatchError(f"{where}: expected a value of {text!r}, got {bad!r}")
        return strings.shape
    if not isinstance(leaf, (BoxSpace, BinarySpace)):
        raise SpaceMismatchError(f"{where}: cannot validate values of {leaf!r}")
    backend, expected = leaf.backend, leaf.shape
    if isinstance(value, np.ndarray) and value.dtype == object:
        raise SpaceMismatchError(
            f"object arrays are not supported: got dtype object at key {where!r}; expected dtype "
            f"{backend.dtype_name(leaf.dtype)} and shape {_shape_text(expected, batch_ndim)}"
        )
    if not backend.is_backendarray(value):
        if batch_ndim == 0 and expected == () and not isinstance(value, np.ndarray) and scalar_fits(value, leaf.dtype):
            value = _scalar_array(leaf, value, where)
        else:
            raise SpaceMismatchError(
                f"{where}: expected a {backend.simplified_name} array of dtype {backend.dtype_name(leaf.dtype)} "
                f"and shape {_shape_text(expected, batch_ndim)}, got {_describe(value)}"
            )
    shape = tuple(value.shape)
    if len(shape) != batch_ndim + len(expected) or shape[batch_ndim:] != expected:
        raise SpaceMismatchError(f"{where}: expected shape {_shape_text(expected, batch_ndim)}, got {shape}")
    if not fits(value.dtype, leaf.dtype):
        raise SpaceMismatchError(
            f"{where}: expected dtype {backend.dtype_name(leaf.dtype)} (or one that casts to it), "
            f"got {backend.dtype_name(value.dtype)}"
        )
    if bounds and isinstance(leaf, BoxSpace):
        low, high = leaf.abbreviated_bounds()
        if not bool(backend.xp.all((value >= low) & (value <= high))):
            raise SpaceMismatchError(f"{where}: values outside the bounds of {leaf!r}")
    return shape[:batch_ndim]


def _scalar_array(leaf: Space, value: Any, where: str) -> Any:
    """A Python scalar as a 0-d array of the leaf's dtype; one the dtype cannot hold is a typed error."""
    backend = leaf.backend
    try:
        return backend.asarray(value, dtype=leaf.dtype)
    except (OverflowError, ValueError, TypeError):  # e.g. 2**70 (torch says ValueError, NumPy OverflowError)
        raise SpaceMismatchError(
            f"{where}: {type(value).__name__} {value!r} does not fit dtype {backend.dtype_name(leaf.dtype)}"
        ) from None


def _shape_text(shape: tuple[int, ...], batch_ndim: int) -> str:
    parts = ["batch"] * batch_ndim + [str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 and batch_ndim == 0 else "") + ")"


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a numpy array of dtype {value.dtype.name} and shape {value.shape}"
    from unibatch.backends import get_backend_or_none

    backend = get_backend_or_none(value)
    if backend is not None:
        dtype = backend.dtype_name(value.dtype)
        return f"a {backend.simplified_name} array of dtype {dtype} and shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:120]


# ---------------------------------------------------------------------- fast path
@dataclass(frozen=True)
class _Plan:
    """What a valid value looks like, precomputed once per space (rebuilt if a DictSpace changes)."""

    version: int
    dicts: tuple[tuple[tuple[Any, ...], Any], ...]  # (path, expected keys)
    tuples: tuple[tuple[tuple[Any, ...], int], ...]  # (path, length)
    leaves: tuple[tuple[tuple[Any, ...], tuple[int, ...], Any, Any], ...]  # (path, shape, dtype, array type)

    def __reduce__(self) -> tuple[type[_Plan], tuple[int, tuple[()], tuple[()], tuple[()]]]:
        """Pickles as a stale plan (array types such as ``jax.Array`` do not pickle): rebuilt on first use."""
        return _Plan, (-1, (), (), ())


def _fast_check(space: Space, data: Any, batch_ndim: int) -> tuple[int, ...] | None:
    """The batch shape when ``data`` is plainly valid, else None (then the detailed check runs).

    Appends call this per step, so it walks a precomputed plan instead of the space tree.
    """
    plan = _plan_of(space)
    if plan is None:
        return None
    try:
        for path, keys in plan.dicts:
            node = _follow(data, path)
            if not isinstance(node, Mapping) or node.keys() != keys:
                return None
        for path, length in plan.tuples:
            node = _follow(data, path)
            if not isinstance(node, (tuple, list)) or len(node) != length:
                return None
        batch: tuple[int, ...] | None = None
        for path, shape, dtype, array_type in plan.leaves:
            value: Any = _follow(data, path)
            if not isinstance(value, array_type):
                return None
            value_shape = tuple(value.shape)
            if len(value_shape) != batch_ndim + len(shape) or value_shape[batch_ndim:] != shape:
                return None
            if not fits(value.dtype, dtype):
                return None
            lead = value_shape[:batch_ndim]
            if batch is None:
                batch = lead
            elif lead != batch:
                return None
    except (KeyError, IndexError, TypeError):
        return None
    return batch if batch is not None else ()


def _follow(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def _plan_of(space: Space) -> _Plan | None:
    cached = space.__dict__.get("_validation_plan")
    if cached is not None and cached.version == Space.structure_version:
        return cached
    dicts: list[Any] = []
    tuples: list[Any] = []
    leaves: list[Any] = []

    def visit(node: Space, path: tuple[Any, ...]) -> bool:
        if isinstance(node, DictSpace):
            dicts.append((path, frozenset(node.keys())))
            return all(visit(sub, (*path, key)) for key, sub in node.items())
        if isinstance(node, TupleSpace):
            tuples.append((path, len(node.spaces)))
            return all(visit(sub, (*path, i)) for i, sub in enumerate(node.spaces))
        if isinstance(node, (BoxSpace, BinarySpace)):
            leaves.append((path, tuple(node.shape), node.dtype, node.backend.array_type))
            return True
        return False  # texts and other leaves: the detailed check handles them

    plan = _Plan(Space.structure_version, tuple(dicts), tuple(tuples), tuple(leaves)) if visit(space, ()) else None
    if plan is not None:
        space.__dict__["_validation_plan"] = plan
    return plan
