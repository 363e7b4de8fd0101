"""Exact-match leaf extraction: the per-step fast path of ``append``.

``exact_leaves(space)`` compiles, once per space, a function that takes one value and returns
its leaves in flat order when every leaf is *exactly* what the space stores (the backend's array
type with the space's shape and dtype, or for a scalar leaf a Python ``float``/``bool`` of its
kind or, on NumPy, the NumPy scalar of its dtype) and the dicts have exactly the space's keys.
Anything else returns None and the caller runs the detailed check
(:func:`~unibatch.spaces.check_data`), which accepts every valid value and explains every
invalid one. The compiled function is straight-line code: no tree walk, no
per-leaf function calls, which is what a 10 µs budget per step needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from unibatch.spaces._space import Space
from unibatch.spaces.binary import BinarySpace
from unibatch.spaces.box import BoxSpace
from unibatch.spaces.dict import DictSpace
from unibatch.spaces.tuple import TupleSpace

LeafExtractor = Callable[[Any], "tuple[Any, ...] | None"]


def exact_leaves(space: Space) -> LeafExtractor | None:
    """The compiled extractor of ``space``, or None when the space has leaves it cannot check (texts).

    >>> import numpy as np
    >>> from unibatch import BoxSpace, DictSpace, NumpyComputeBackend as nb
    >>> space = DictSpace(nb, {"x": BoxSpace(nb, 0, 1, "float32", shape=(2,)), "r": BoxSpace(nb, 0, 1, "float32")})
    >>> extract = exact_leaves(space)
    >>> extract({"x": np.zeros(2, np.float32), "r": 1.0})
    (1.0, array([0., 0.], dtype=float32))
    >>> extract({"x": np.zeros(3, np.float32), "r": 1.0}) is None  # wrong shape: the detailed check explains
    True
    """
    cached = space.__dict__.get("_exact_leaves")
    if cached is not None and cached[0] == Space.structure_version:
        return cached[1]
    extractor = _compile(space)
    space.__dict__["_exact_leaves"] = (Space.structure_version, extractor)
    return extractor


def _compile(space: Space) -> LeafExtractor | None:
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
        array_check = (
            f"(type({variable}) is {constant(node.backend.array_type)}"
            f" and {variable}.dtype is {constant(node.dtype)}"
            f" and tuple({variable}.shape) == {tuple(node.shape)!r})"
        )
        for scalar_type in _scalar_types(node):
            array_check = f"(type({variable}) is {constant(scalar_type)} or {array_check})"
        lines.append(f"if not {array_check}: return None")
        leaves.append(variable)
        return True

    if not visit(space, "value"):
        return None
    body = "\n".join(f"        {line}" for line in lines)
    source = (
        "def extract(value):\n"
        "    try:\n"
        f"{body}\n"
        "    except (KeyError, IndexError, TypeError):\n"
        "        return None\n"
        f"    return ({', '.join(leaves)},)\n"
    )
    namespace: dict[str, Any] = dict(constants)
    exec(compile(source, f"<exact_leaves of {type(space).__name__}>", "exec"), namespace)  # noqa: S102
    extract: LeafExtractor = namespace["extract"]
    return extract


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
