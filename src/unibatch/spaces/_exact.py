"""Exact-match leaf extraction: the fast path of ``append`` and ``extend``.

``exact_leaves(space)`` compiles, once per space, a function that takes one value and returns
its leaves in flat order when every leaf is *exactly* what the space stores (the backend's array
type with the space's shape and dtype, or for a scalar leaf a Python ``float``/``bool`` of its
kind or, on NumPy, the NumPy scalar of its dtype) and the dicts have exactly the space's keys.
``exact_batch_leaves(space)`` does the same for a batch: every leaf an array of the space's dtype
and shape behind one common leading axis. Anything else returns None and the caller runs the
detailed check (:func:`~unibatch.spaces.check_data`), which accepts every valid value and
explains every invalid one. The compiled functions are straight-line code: no tree walk, no
per-leaf function calls, which is what a few microseconds per step needs.

With ``host=True`` the leaves come back ready for host (NumPy) arrays: arrays of other backends
as NumPy arrays, 0-d ones as values a NumPy array takes (Python scalars on PyTorch; see
``ComputeBackend.exact_host_conversions``). A value that cannot be converted this way (a tensor
on a device, one that requires grad) returns None as well, so nothing that could fail is left
for the write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from unibatch.spaces._casts import float_overflow_threshold
from unibatch.spaces._space import Space
from unibatch.spaces.binary import BinarySpace
from unibatch.spaces.box import BoxSpace
from unibatch.spaces.dict import DictSpace
from unibatch.spaces.tuple import TupleSpace

LeafExtractor = Callable[[Any], "tuple[Any, ...] | None"]
"""One value -> its leaves in flat order, or None."""
BatchExtractor = Callable[[Any], "tuple[int, tuple[Any, ...]] | None"]
"""A batch -> ``(n, leaves)`` with every leaf of shape ``(n, *leaf_shape)``, or None."""


def exact_leaves(space: Space, host: bool = False) -> LeafExtractor | None:
    """The compiled extractor of one value of ``space``, or None when the space has leaves it cannot check (texts).

    Args:
        space: the space of one value.
        host: return leaves as NumPy arrays and Python/NumPy scalars (for host storages).

    >>> import numpy as np
    >>> from unibatch import BoxSpace, DictSpace, NumpyComputeBackend as nb
    >>> space = DictSpace(nb, {"x": BoxSpace(nb, 0, 1, "float32", shape=(2,)), "r": BoxSpace(nb, 0, 1, "float32")})
    >>> extract = exact_leaves(space)
    >>> extract({"x": np.zeros(2, np.float32), "r": 1.0})
    (1.0, array([0., 0.], dtype=float32))
    >>> extract({"x": np.zeros(3, np.float32), "r": 1.0}) is None  # wrong shape: the detailed check explains
    True
    """
    cached = space.__dict__.get(_CACHE_NAMES[0][host])  # inlined _cached: append calls this per step
    if cached is not None and cached[0] == Space.structure_version:
        extractor: LeafExtractor | None = cached[1]
        return extractor
    return _cached(space, False, host)


def exact_batch_leaves(space: Space, host: bool = False) -> BatchExtractor | None:
    """The compiled extractor of a batch of values of ``space`` (leading axis ``n``), or None (texts).

    Args:
        space: the space of one value.
        host: return leaves as NumPy arrays (for host storages).

    >>> import numpy as np
    >>> from unibatch import BoxSpace, DictSpace, NumpyComputeBackend as nb
    >>> space = DictSpace(nb, {"x": BoxSpace(nb, 0, 1, "float32", shape=(2,)), "r": BoxSpace(nb, 0, 1, "float32")})
    >>> n, leaves = exact_batch_leaves(space)({"x": np.zeros((5, 2), np.float32), "r": np.ones(5, np.float32)})
    >>> n, [leaf.shape for leaf in leaves]
    (5, [(5,), (5, 2)])
    >>> exact_batch_leaves(space)({"x": np.zeros((5, 2), np.float32), "r": np.ones(4, np.float32)}) is None
    True
    """
    cached = space.__dict__.get(_CACHE_NAMES[1][host])
    if cached is not None and cached[0] == Space.structure_version:
        extractor: BatchExtractor | None = cached[1]
        return extractor
    return _cached(space, True, host)


def _cached(space: Space, batched: bool, host: bool) -> Any:
    """The extractor of ``(batched, host)``, compiled once per space and rebuilt when a dict space changes."""
    name = _CACHE_NAMES[batched][host]
    cached = space.__dict__.get(name)
    if cached is None or cached[0] != Space.structure_version:
        cached = space.__dict__[name] = _Cached((Space.structure_version, _compile(space, batched, host)))
    return cached[1]


class _Cached(tuple[int, Any]):
    """``(structure version, extractor)`` in a space's ``__dict__``.

    Pickles as a stale entry (compiled code does not pickle), so a space sent to a worker
    process compiles its extractors again on first use.
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[type[_Cached], tuple[tuple[int, None]]]:
        return _Cached, ((-1, None),)


_CACHE_NAMES = (("_exact_leaves", "_exact_host_leaves"), ("_exact_batch_leaves", "_exact_batch_host_leaves"))
"""Where each extractor is cached in the space's ``__dict__``, by ``[batched][host]``."""


def _compile(space: Space, batched: bool, host: bool) -> Callable[[Any], Any] | None:
    """Generate and compile the straight-line extractor (see the module docstring)."""
    lines: list[str] = []
    constants: dict[str, Any] = {}
    leaves: list[str] = []

    def constant(value: Any) -> str:
        name = f"c{len(constants)}"
        constants[name] = value
        return name

    def visit(node: Space, expression: str) -> bool:
        variable = f"v{len(lines)}"
        lines.append(f"{variable} = {expression}")
        if isinstance(node, DictSpace):
            lines.append(f"if type({variable}) is not dict or len({variable}) != {len(node.keys())}: return None")
            return all(visit(sub, f"{variable}[{key!r}]") for key, sub in node.items())
        if isinstance(node, TupleSpace):
            lines.append(f"if type({variable}) is not tuple or len({variable}) != {len(node.spaces)}: return None")
            return all(visit(sub, f"{variable}[{i}]") for i, sub in enumerate(node.spaces))
        if not isinstance(node, (BoxSpace, BinarySpace)):
            return False
        lines.extend(_leaf_lines(node, variable, batched, host, constant, first=not leaves))
        leaves.append(variable)
        return True

    if not visit(space, "value"):
        return None
    body = "\n".join(f"        {line}" for line in lines)
    result = f"({', '.join(leaves)},)"
    source = (
        "def extract(value):\n"
        "    try:\n"
        f"{body}\n"
        "    except (KeyError, IndexError, TypeError, ValueError, RuntimeError):\n"
        "        return None\n"
        f"    return {f'(n, {result})' if batched else result}\n"
    )
    namespace: dict[str, Any] = dict(constants)
    kind = f"{'batch ' if batched else ''}{'host ' if host else ''}leaves"
    exec(compile(source, f"<exact {kind} of {type(space).__name__}>", "exec"), namespace)  # noqa: S102
    extract: Callable[[Any], Any] = namespace["extract"]
    return extract


def _leaf_lines(
    node: BoxSpace | BinarySpace,
    variable: str,
    batched: bool,
    host: bool,
    constant: Callable[[Any], str],
    first: bool,
) -> list[str]:
    """The checks (and host conversion) of one leaf held in ``variable``; each returns None on a mismatch.

    A batch's first leaf sets ``n``, the batch size every leaf's shape is checked against.
    """
    backend, shape = node.backend, tuple(node.shape or ())
    conversions = backend.exact_host_conversions() if host else None
    array_type = constant(backend.array_type)
    # Dtypes are compared by identity: the canonical object (an unpickled NumPy dtype is a copy).
    dtype = backend.as_dtype(node.dtype)
    if batched or shape:
        lines = [f"if type({variable}) is not {array_type}: return None"]
        if conversions is not None:  # convert first, then check the NumPy array (cheaper attributes than a tensor's)
            lines.append(f"{variable} = {constant(conversions[0])}({variable})")
            dtype = backend.numpy_dtype(node.dtype)
        if batched and first:
            lines.append(f"n = {variable}.shape[0]")
        expected = f"(n, {''.join(f'{size}, ' for size in shape)})" if batched else repr(shape)
        lines.append(f"if {variable}.dtype is not {constant(dtype)} or {variable}.shape != {expected}: return None")
        return lines
    array_check = f"type({variable}) is {array_type} and {variable}.dtype is {constant(dtype)}"
    scalars = " or ".join(f"type({variable}) is {constant(scalar)}" for scalar in _scalar_types(node)) or "False"
    overflow = _overflow_test(node, variable)
    if conversions is None:
        lines = [f"if not ({scalars} or ({array_check} and {variable}.shape == ())): return None"]
        return lines + ([f"if {overflow}: return None"] if overflow else [])
    lines = [
        f"if {array_check} and {variable}.shape == (): {variable} = {constant(conversions[1])}({variable})",
        f"elif not ({scalars}): return None",
    ]
    return lines + ([f"elif {overflow}: return None"] if overflow else [])


def _overflow_test(node: BoxSpace | BinarySpace, variable: str) -> str | None:
    """The test that a Python ``float`` would overflow the leaf's float dtype (then the detailed check explains).

    None when the leaf cannot overflow (float64, integers, booleans). ``v - v == 0`` holds for
    finite values only: NaN and inf keep their value in any float.
    """
    backend = node.backend
    if isinstance(node, BinarySpace) or not backend.dtype_is_real_floating(node.dtype):
        return None
    threshold = float_overflow_threshold(node.dtype)
    if threshold == float("inf"):
        return None
    return (
        f"type({variable}) is float and ({variable} >= {threshold!r} or {variable} <= {-threshold!r}) "
        f"and {variable} - {variable} == 0"
    )


def _scalar_types(node: Space) -> list[type]:
    """The scalar types a shape-``()`` leaf accepts exactly.

    ``float`` for floats, ``bool`` for booleans, and on NumPy the NumPy scalar of the leaf's own
    dtype (``np.float32``: what indexing a NumPy batch gives).
    """
    if tuple(node.shape or ()) != ():
        return []
    backend = node.backend
    types: list[type] = []
    if isinstance(node, BinarySpace) or backend.dtype_is_boolean(node.dtype):
        types.append(bool)
    elif backend.dtype_is_real_floating(node.dtype):
        types.append(float)
    if backend.simplified_name == "numpy":
        types.append(np.dtype(node.dtype).type)
    return types
