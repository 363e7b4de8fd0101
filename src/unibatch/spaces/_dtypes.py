"""Dtype rules shared by spaces: what a value may be cast to, and the one flat dtype rule."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import numpy as np

from unibatch.backends import dtype_to_name

_FLOAT_BITS = {"float16": 16, "bfloat16": 16, "float32": 32, "float64": 64}


def kind_of(name: str) -> str:
    """``"b"`` (boolean), ``"i"``/``"u"`` (signed/unsigned integer), ``"f"`` or ``"c"``."""
    if name == "bool":
        return "b"
    if name in _FLOAT_BITS:
        return "f"
    if name.startswith("complex"):
        return "c"
    return "u" if name.startswith("uint") else "i"


def fits(value_dtype: Any, space_dtype: Any) -> bool:
    """Whether arrays of ``value_dtype`` may be written to ``space_dtype`` (NumPy ``same_kind``).

    >>> fits("float64", "float32"), fits("float32", "int64"), fits("bool", "uint8")
    (True, False, True)
    """
    return _fits_by_name(dtype_to_name(value_dtype), dtype_to_name(space_dtype))


@functools.cache
def _fits_by_name(source: str, target: str) -> bool:
    return bool(np.can_cast(_numpy_name(source), _numpy_name(target), "same_kind"))


def scalar_fits(x: Any, space_dtype: Any) -> bool:
    """Whether a scalar fits a shape-``()`` leaf.

    NumPy scalars are judged by dtype; Python scalars by kind (a bool fits everything, an int
    fits integer dtypes whose range holds it and floating ones within int64's range, a float
    floating ones).
    """
    if isinstance(x, np.generic):
        return fits(x.dtype, space_dtype)
    target = kind_of(dtype_to_name(space_dtype))
    if isinstance(x, bool):
        return True
    if isinstance(x, int):
        # Within the range of an integer dtype, or of int64 for a floating one (what every backend
        # converts; 2**70 fits neither: pass float(2**70) for a floating leaf).
        low, high = _int_range(dtype_to_name(space_dtype) if target in "iu" else "int64")
        return target in "iufc" and low <= x <= high
    if isinstance(x, float):
        return target in "fc"
    return False


@functools.cache
def _int_range(name: str) -> tuple[int, int]:
    info = np.iinfo(name)
    return int(info.min), int(info.max)


def _numpy_name(name: str) -> str:
    return "float16" if name == "bfloat16" else name


def flat_dtype_name(leaf_dtypes: Iterable[str]) -> str:
    """The flat dtype of leaves with these dtype names (DESIGN.md decision 3).

    The widest float (at least float32) if any leaf is floating, else the widest integer;
    booleans become 0/1 of it; all-boolean data flattens to uint8.

    >>> flat_dtype_name(["uint8", "float32", "bool"]), flat_dtype_name(["int8", "uint8"])
    ('float32', 'int16')
    """
    names = list(leaf_dtypes)
    floats = [n for n in names if kind_of(n) == "f"]
    if floats:
        bits = max(32, *(_FLOAT_BITS[n] for n in floats))
        return f"float{bits}"
    integers = [n for n in names if kind_of(n) in "iu"]
    if not integers:
        return "uint8"
    result = np.result_type(*integers)
    return "int64" if result.kind == "f" else result.name
