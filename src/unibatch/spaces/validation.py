"""Validation of values against a space before they are written (decision 11).

Checks structure (keys), shape and dtype of every leaf. A dtype fits when NumPy's ``same_kind``
rule allows the cast **and** the cast keeps every value written (:mod:`unibatch.spaces._casts`):
only casts that can change a value (``uint16`` into ``uint8``, ``float64`` into ``float32``)
read the data, exact and widening dtypes do not. Range checks against ``low``/``high`` are
opt-in (``bounds=True``) because they read all the data. Every failure is a
:class:`~unibatch.errors.SpaceMismatchError` naming the key path, what was expected and what
was got.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from unibatch.errors import SpaceMismatchError
from unibatch.spaces._casts import check_scalar, check_values, fits_exactly
from unibatch.spaces._dtypes import fits, scalar_fits
from unibatch.spaces._space import Space
from unibatch.spaces._tree import leaves, text_of, walk
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
        bounds: also check that the values of every ``BoxSpace`` leaf lie in ``[low, high]``
            (reads the data; NaN is always outside, ``inf`` unless that bound is infinite).

    Returns:
        The common batch shape (``()`` when ``batch_ndim == 0``).

    Raises:
        SpaceMismatchError: naming the key path, the expected and the got structure, shape or
            dtype, or a value the cast to the leaf's dtype would change (``300`` into ``uint8``),
            or (``bounds=True``) a value outside the bounds.

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
            check_scalar(value, leaf.dtype, where)
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
    check_values(backend, value, leaf.dtype, where)
    if bounds and isinstance(leaf, BoxSpace):
        check_bounds(leaf, value, where)
    return shape[:batch_ndim]


def check_bounds(leaf: BoxSpace, value: Any, where: str) -> None:
    """Raise unless every element of ``value`` (an array of ``leaf``'s backend) lies in ``[low, high]``.

    ``value`` has the leaf's shape behind any number of batch axes. NaN is outside any bounds;
    ``inf`` is outside unless that bound is itself infinite (as in :meth:`BoxSpace.contains`).

    Raises:
        SpaceMismatchError: naming ``where``, the first value outside, its position and its bounds.
    """
    backend = leaf.backend
    low, high = leaf.abbreviated_bounds()
    if not bool(backend.xp.all((value >= low) & (value <= high))):
        _raise_outside(leaf, backend.to_numpy(value), where)


def check_leaf_bounds(space: Space, leaves: tuple[Any, ...]) -> None:
    """:func:`check_bounds` of the leaves an exact extractor gave (flat order; see ``spaces._exact``).

    Leaves are backend or NumPy arrays (with any batch axes) or scalars. Only leaves whose
    bounds can exclude a value are read: floating leaves (NaN is always outside) and integer
    leaves whose bounds are narrower than their dtype.
    """
    for position, path, leaf, low, high in _bounded_leaves(space):
        value = leaves[position]
        if isinstance(value, np.ndarray):
            inside = bool(((value >= low) & (value <= high)).all())
        elif leaf.backend.is_backendarray(value):
            backend_low, backend_high = leaf.abbreviated_bounds()
            inside = bool(leaf.backend.xp.all((value >= backend_low) & (value <= backend_high)))
        else:
            inside = bool(low <= value <= high)
        if not inside:
            _raise_outside(
                leaf,
                np.asarray(leaf.backend.to_numpy(value) if leaf.backend.is_backendarray(value) else value),
                path or "value",
            )


def _bounded_leaves(space: Space) -> list[tuple[int, str, BoxSpace, np.ndarray, np.ndarray]]:
    """``(position, key path, leaf, host low, host high)`` of the leaves whose bounds can exclude a value (cached)."""
    cached = space.__dict__.get("_bounded_leaves")
    if cached is not None and cached[0] == Space.structure_version:
        result: list[tuple[int, str, BoxSpace, np.ndarray, np.ndarray]] = cached[1]
        return result
    result = []
    for position, (path, leaf) in enumerate(leaves(space)):
        if not isinstance(leaf, BoxSpace):
            continue
        low, high = leaf.host_bounds()
        kind = np.dtype(leaf.backend.numpy_dtype(leaf.dtype)).kind
        if kind in "iu":
            info = np.iinfo(leaf.backend.numpy_dtype(leaf.dtype))
            if np.all(low <= info.min) and np.all(high >= info.max):
                continue  # every value of the dtype is inside
        elif kind != "f":
            continue
        result.append((position, path, leaf, low, high))
    space.__dict__["_bounded_leaves"] = (Space.structure_version, result)
    return result


def _raise_outside(leaf: BoxSpace, host: np.ndarray, where: str) -> None:
    """Raise naming the first element of ``host`` (the leaf's shape behind batch axes) outside the bounds."""
    host_low, host_high = leaf.host_bounds()
    with np.errstate(invalid="ignore"):
        outside = np.argwhere(~((host >= host_low) & (host <= host_high)))
    at = tuple(int(i) for i in outside[0])
    element = at[len(at) - len(leaf.shape) :] if leaf.shape else ()
    lo = np.broadcast_to(host_low, leaf.shape)[element].item()
    hi = np.broadcast_to(host_high, leaf.shape)[element].item()
    position = f" at {list(at)}" if at else ""
    raise SpaceMismatchError(
        f"{where}: expected values within [{lo}, {hi}], got {host[at].item()!r}{position}, outside the bounds "
        f"of {leaf!r} ({len(outside)} such value{'s' * (len(outside) != 1)})"
    )


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
            if not fits_exactly(value.dtype, dtype):
                return None  # a cast that may change values: the detailed check reads them
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
