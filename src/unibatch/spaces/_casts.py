"""Value-preserving writes: which casts can change a value, and the check that none does.

A write casts every leaf to the dtype of its space. NumPy's ``same_kind`` rule (DESIGN §3.11)
says which casts are allowed at all (float64 into a float32 box yes, float into an integer box
no). On top of it, a write must keep every value: a dtype fits when ``same_kind`` allows the
cast **and** the cast preserves the values written. Only casts that can lose a value read the
data; which ones is decided once per ``(source, target)`` pair of dtype names:

* integer into an integer whose range does not contain the source's (``uint16`` into ``uint8``,
  ``int64`` into ``uint32``): every value must lie in the target's range (no wrap-around:
  ``300`` is not stored as ``44``);
* integer into ``float16``: no value may overflow to ``inf``;
* float into a float with a smaller range (``float64`` into ``float32``): a finite value must
  stay finite (``1e300`` does not become ``inf``). Rounding to the nearest representable value
  is accepted: it is what ``same_kind`` means by a cast between floats;
* float into an integer (flattened writes only; structured writes refuse it by kind): every
  value must be an integer inside the target's range (no ``2.7`` -> ``2``, no NaN or inf);
* anything into a boolean (flattened writes of a ``BinarySpace`` leaf): every value must be 0 or 1.

Widening casts (``uint8`` into ``int16``, ``float32`` into ``float64``, ``bool`` into anything) and
exact dtypes read no data, so the fast paths of ``append``/``extend`` pay nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from unibatch.backends import dtype_to_name
from unibatch.errors import SpaceMismatchError
from unibatch.spaces._dtypes import fits, kind_of

_FLOAT_LIMITS = {
    # name: (largest finite value, smallest magnitude that rounds to inf)
    "float16": (65504.0, 65520.0),
    "bfloat16": (2.0**128 - 2.0**120, 2.0**128 - 2.0**119),
    "float32": (2.0**128 - 2.0**104, 2.0**128 - 2.0**103),
    "float64": (float(np.finfo(np.float64).max), float("inf")),
}

CheckKind = Literal["range", "finite", "integral", "binary", "refuse"]


@dataclass(frozen=True)
class ValueCheck:
    """What a cast from ``source`` to ``target`` requires of the values (see the module docstring).

    ``low``/``high`` are the inclusive integer range for ``"range"`` and ``"integral"``, and
    ``high`` the overflow threshold for ``"finite"``.
    """

    kind: CheckKind
    source: str
    target: str
    low: int | float = 0
    high: int | float = 0

    def bad(self, xp: Any, value: Any) -> Any:
        """Boolean array: where ``value`` (an array of ``source``) would change when cast to ``target``."""
        if self.kind == "range":
            info = np.iinfo(self.source) if kind_of(self.source) in "iu" else None
            below = info is None or info.min < self.low  # compare only with bounds the source dtype holds
            above = info is None or info.max > self.high
            if below and above:
                return (value < self.low) | (value > self.high)
            return value < self.low if below else value > self.high
        if self.kind == "finite":
            return xp.isfinite(value) & (xp.abs(value) >= self.high)
        if self.kind == "integral":
            inside = (value >= float(self.low)) & (value < float(self.high) + 1.0) & (value == xp.floor(value))
            return ~inside
        if self.kind == "binary":
            return ~((value == 0) | (value == 1))
        return xp.ones(value.shape, dtype=xp.bool)

    def reason(self) -> str:
        """Why a value flagged by :meth:`bad` changes."""
        if self.kind == "range":
            return f"is outside the range [{self.low}, {self.high}] of {self.target}"
        if self.kind == "finite":
            return f"overflows {self.target} (it would become inf)"
        if self.kind == "integral":
            return f"is not an integer in the range [{self.low}, {self.high}] of {self.target}"
        if self.kind == "binary":
            return "is not 0 or 1 (a boolean)"
        return f"cannot be cast to {self.target}"


def value_check(value_dtype: Any, space_dtype: Any) -> ValueCheck | None:
    """The check a cast from ``value_dtype`` to ``space_dtype`` needs, or None when it keeps every value.

    >>> value_check("uint8", "int16") is None, value_check("float32", "float64") is None
    (True, True)
    >>> value_check("uint16", "uint8")
    ValueCheck(kind='range', source='uint16', target='uint8', low=0, high=255)
    >>> value_check("float64", "float32").kind, value_check("float32", "int64").kind
    ('finite', 'integral')
    """
    return _value_check(dtype_to_name(value_dtype), dtype_to_name(space_dtype))


@functools.cache
def _value_check(source: str, target: str) -> ValueCheck | None:
    source_kind, target_kind = kind_of(source), kind_of(target)
    if source_kind == "b" or source == target:
        return None
    if target_kind == "b":
        return ValueCheck("binary", source, target)
    if source_kind == "c" or target_kind == "c":
        return None if source_kind == target_kind == "c" or target_kind == "c" else ValueCheck("refuse", source, target)
    if target_kind in "iu":
        target_info = np.iinfo(target)
        if source_kind == "f":
            return ValueCheck("integral", source, target, int(target_info.min), int(target_info.max))
        source_info = np.iinfo(source)
        if source_info.min >= target_info.min and source_info.max <= target_info.max:
            return None
        return ValueCheck("range", source, target, int(target_info.min), int(target_info.max))
    threshold = _FLOAT_LIMITS[target][1]
    if source_kind in "iu":
        source_info = np.iinfo(source)
        if max(-int(source_info.min), int(source_info.max)) < threshold:
            return None
        largest = int(np.ceil(threshold)) - 1  # integers below the threshold round to a finite float
        return ValueCheck("range", source, target, -largest, largest)
    if _FLOAT_LIMITS[source][0] < threshold:
        return None
    return ValueCheck("finite", source, target, -threshold, threshold)


def fits_exactly(value_dtype: Any, space_dtype: Any) -> bool:
    """Whether ``value_dtype`` fits ``space_dtype`` and no value of it can change in the cast.

    >>> fits_exactly("float32", "float32"), fits_exactly("uint8", "int64"), fits_exactly("uint16", "uint8")
    (True, True, False)
    """
    return _fits_exactly(dtype_to_name(value_dtype), dtype_to_name(space_dtype))


@functools.cache
def _fits_exactly(source: str, target: str) -> bool:
    return fits(source, target) and _value_check(source, target) is None


def check_values(backend: Any, value: Any, space_dtype: Any, where: str) -> None:
    """Raise unless casting ``value`` (an array of ``backend``) to ``space_dtype`` keeps every value.

    Reads the data only when the cast can change a value (see the module docstring).

    Raises:
        SpaceMismatchError: naming ``where``, the dtypes, the first changed value and its position.
    """
    check = value_check(value.dtype, space_dtype)
    if check is None or _size(value) == 0:
        return
    try:
        changed = bool(backend.xp.any(check.bad(backend.xp, value)))
    except (NotImplementedError, RuntimeError, TypeError):  # a dtype with partial support (torch uint16): on the host
        with np.errstate(invalid="ignore", over="ignore"):
            changed = bool(np.any(check.bad(np, backend.to_numpy(value))))
    if changed:
        _raise(check, backend.to_numpy(value), where)


def check_scalar(x: Any, space_dtype: Any, where: str) -> None:
    """Raise unless the scalar ``x`` (Python or NumPy) keeps its value in ``space_dtype``.

    >>> try:
    ...     check_scalar(300, "uint8", "reward")
    ... except SpaceMismatchError as error:
    ...     print(error)
    reward: expected values that uint8 holds unchanged, got int 300, which is outside the range [0, 255] of uint8
    """
    target = dtype_to_name(space_dtype)
    if isinstance(x, np.generic):
        check = value_check(x.dtype, target)
        if check is not None and bool(np.any(check.bad(np, np.asarray(x)))):
            _raise(check, np.asarray(x), where)
        return
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return
    kind = kind_of(target)
    if kind in "iu":
        info = np.iinfo(target)
        if isinstance(x, int) and not int(info.min) <= x <= int(info.max):
            _raise(ValueCheck("range", "int", target, int(info.min), int(info.max)), x, where)
    elif kind == "f":
        threshold = _FLOAT_LIMITS[target][1]
        finite = isinstance(x, int) or np.isfinite(x)
        if finite and abs(x) >= threshold:
            _raise(ValueCheck("finite", type(x).__name__, target, -threshold, threshold), x, where)


def float_overflow_threshold(space_dtype: Any) -> float:
    """The smallest magnitude that a cast to the float ``space_dtype`` turns into inf."""
    return _FLOAT_LIMITS[dtype_to_name(space_dtype)][1]


def _size(value: Any) -> int:
    return int(np.prod(tuple(value.shape)))


def _raise(check: ValueCheck, value: Any, where: str) -> None:
    got = f"{type(value).__name__} {value!r}"
    if isinstance(value, np.ndarray):
        with np.errstate(invalid="ignore", over="ignore"):
            bad = np.asarray(check.bad(np, value))
        flagged = np.argwhere(bad)
        first = tuple(int(i) for i in flagged[0]) if len(flagged) else ()
        element = value[first].item() if value.ndim else value.item()
        position = f" at {list(first)}" if first else ""
        got = f"{check.source} value {element!r}{position} ({len(flagged)} such value{'s' * (len(flagged) != 1)})"
    raise SpaceMismatchError(
        f"{where}: expected values that {check.target} holds unchanged, got {got}, which {check.reason()}"
    )
