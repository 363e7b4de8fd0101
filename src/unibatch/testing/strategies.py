"""Hypothesis strategies for unibatch spaces and their values (used by property-based tests).

This module imports :mod:`hypothesis` at import time; only tests import it.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from unibatch.backends import ComputeBackend
from unibatch.spaces import BinarySpace, BoxSpace, DictSpace, Space, TextSpace, TupleSpace

FLOAT_DTYPES: tuple[str, ...] = ("float16", "float32", "float64")
"""Floating dtypes drawn for ``BoxSpace`` leaves."""
INTEGER_DTYPES: tuple[str, ...] = ("int8", "uint8", "int32", "int64")
"""Integer dtypes drawn for ``BoxSpace`` leaves."""
BOX_DTYPES: tuple[str, ...] = FLOAT_DTYPES + INTEGER_DTYPES
"""Every dtype drawn for ``BoxSpace`` leaves (64-bit ones become 32-bit on JAX)."""

LEAF_KINDS: tuple[str, ...] = ("box", "binary", "text")
"""Kinds of leaf spaces :func:`spaces` can draw."""

KEY_ALPHABET = string.ascii_letters + string.digits + "_"
"""Characters of generated ``DictSpace`` keys (mixed case, so sorted order differs from drawing order)."""

# Largest finite bound magnitude per floating dtype: wide, but with ``high - low`` finite in
# the dtype the sampler works in (float32 for float16 and float32 boxes).
_FLOAT_BOUND = {"float16": 3.0e4, "float32": 1.0e37, "float64": 1.0e300}


def seeds() -> st.SearchStrategy[int]:
    """Seeds for ``backend.random_number_generator`` (32-bit, valid on every backend)."""
    return st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def shapes(draw: st.DrawFn, max_rank: int = 3, max_side: int = 2, allow_zero: bool = True) -> tuple[int, ...]:
    """Array shapes of rank ``0..max_rank`` with sides ``1..max_side`` (about one in five may hold a 0)."""
    smallest = 0 if allow_zero and draw(st.integers(0, 4)) == 4 else 1
    return tuple(draw(st.lists(st.integers(smallest, max_side), max_size=max_rank)))


@st.composite
def _bound_shape(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts to ``shape``: scalar, or fewer leading axes, or 1 in some axes."""
    if draw(st.booleans()):
        return ()
    rank = draw(st.integers(0, len(shape)))
    tail = shape[len(shape) - rank :]
    return tuple(draw(st.sampled_from((1, side))) if side != 1 else 1 for side in tail)


def _infinite_mask(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Where a bound is infinite: everywhere, or element by element."""
    everywhere = st.just(np.ones(shape, dtype=bool))
    return st.one_of(everywhere, hnp.arrays(np.bool_, shape, elements=st.booleans()))


def _finite_elements(dtype_name: str, np_dtype: np.dtype) -> st.SearchStrategy[Any]:
    if np_dtype.kind == "f":
        limit = _FLOAT_BOUND[dtype_name]
        return st.one_of(
            st.floats(-8.0, 8.0, allow_nan=False, allow_infinity=False),
            st.floats(-limit, limit, allow_nan=False, allow_infinity=False),
        )
    info = np.iinfo(np_dtype)
    # Small dtypes also get bounds outside their range (clipped by BoxSpace); int64 stays in range.
    pad = 100 if info.bits <= 16 else 0
    low, high = int(info.min) - pad, int(info.max) + pad
    return st.one_of(st.integers(-8, 8), st.integers(low, high))


@st.composite
def box_spaces(
    draw: st.DrawFn,
    backend: ComputeBackend,
    dtypes: tuple[str, ...] = BOX_DTYPES,
    shape: st.SearchStrategy[tuple[int, ...]] | None = None,
    allow_infinite: bool = True,
) -> BoxSpace:
    """``BoxSpace`` with finite, half-infinite or infinite, scalar or array bounds."""
    dtype_name = draw(st.sampled_from(dtypes))
    np_dtype = np.dtype(dtype_name)
    value_shape = draw(shapes() if shape is None else shape)
    bound_shape = draw(_bound_shape(value_shape))
    elements = _finite_elements(dtype_name, np_dtype)
    first = draw(hnp.arrays(np.float64 if np_dtype.kind == "f" else np.int64, bound_shape, elements=elements))
    second = draw(hnp.arrays(first.dtype, bound_shape, elements=elements))
    low, high = np.minimum(first, second), np.maximum(first, second)
    if allow_infinite:
        low = np.where(draw(_infinite_mask(bound_shape)), -np.inf, low) if draw(st.booleans()) else low
        high = np.where(draw(_infinite_mask(bound_shape)), np.inf, high) if draw(st.booleans()) else high
    low_arg: Any = low
    high_arg: Any = high
    if bound_shape == () and draw(st.booleans()):
        low_arg, high_arg = low.item(), high.item()  # Python scalars as bounds
    explicit_shape = value_shape if bound_shape != value_shape or draw(st.booleans()) else None
    return BoxSpace(backend, low_arg, high_arg, dtype_name, shape=explicit_shape)


@st.composite
def binary_spaces(
    draw: st.DrawFn, backend: ComputeBackend, shape: st.SearchStrategy[tuple[int, ...]] | None = None
) -> BinarySpace:
    """``BinarySpace`` of a small random shape."""
    return BinarySpace(backend, draw(shapes() if shape is None else shape))


def charsets(max_size: int = 6) -> st.SearchStrategy[str]:
    """Non-empty character sets without repeats (any non-surrogate characters)."""
    return st.lists(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=max_size, unique=True).map("".join)


@st.composite
def text_spaces(
    draw: st.DrawFn, backend: ComputeBackend, require_charset: bool = False, max_lengths: tuple[int, int] = (0, 4)
) -> TextSpace:
    """``TextSpace`` with ``max_length`` in the range ``max_lengths``, any ``min_length``, with or without a charset."""
    longest = draw(st.integers(*max_lengths))
    shortest = draw(st.integers(0, longest))
    charset = draw(charsets()) if require_charset else draw(st.none() | charsets())
    return TextSpace(backend, longest, min_length=shortest, charset=charset)


def leaf_spaces(
    backend: ComputeBackend,
    *,
    kinds: tuple[str, ...] = LEAF_KINDS,
    dtypes: tuple[str, ...] = BOX_DTYPES,
    require_charset: bool = False,
    text_max_lengths: tuple[int, int] = (0, 4),
    shape: st.SearchStrategy[tuple[int, ...]] | None = None,
) -> st.SearchStrategy[Space]:
    """One leaf space: ``BoxSpace``, ``BinarySpace`` or ``TextSpace`` (as ``kinds`` allows)."""
    options: list[st.SearchStrategy[Space]] = []
    if "box" in kinds:
        options.append(box_spaces(backend, dtypes, shape=shape))
    if "binary" in kinds:
        options.append(binary_spaces(backend, shape=shape))
    if "text" in kinds:
        options.append(text_spaces(backend, require_charset=require_charset, max_lengths=text_max_lengths))
    return st.one_of(*options)


def dict_keys() -> st.SearchStrategy[str]:
    """Short ``DictSpace`` keys."""
    return st.text(KEY_ALPHABET, min_size=1, max_size=4)


@st.composite
def spaces(
    draw: st.DrawFn,
    backend: ComputeBackend,
    max_depth: int = 2,
    *,
    kinds: tuple[str, ...] = LEAF_KINDS,
    dtypes: tuple[str, ...] = BOX_DTYPES,
    require_charset: bool = False,
    text_max_lengths: tuple[int, int] = (0, 4),
    allow_empty: bool = True,
    max_children: int = 3,
    shape: st.SearchStrategy[tuple[int, ...]] | None = None,
) -> Space:
    """Random nested spaces: leaves (:func:`leaf_spaces`) in ``DictSpace``/``TupleSpace`` nests up to ``max_depth``."""
    leaf = leaf_spaces(
        backend,
        kinds=kinds,
        dtypes=dtypes,
        require_charset=require_charset,
        text_max_lengths=text_max_lengths,
        shape=shape,
    )
    if max_depth <= 0 or draw(st.integers(0, 2)) == 0:
        return draw(leaf)
    child = spaces(
        backend,
        max_depth - 1,
        kinds=kinds,
        dtypes=dtypes,
        require_charset=require_charset,
        text_max_lengths=text_max_lengths,
        allow_empty=allow_empty,
        max_children=max_children,
        shape=shape,
    )
    min_children = 0 if allow_empty else 1
    if draw(st.booleans()):
        children = draw(st.dictionaries(dict_keys(), child, min_size=min_children, max_size=max_children))
        return DictSpace(backend, children)
    return TupleSpace(backend, draw(st.lists(child, min_size=min_children, max_size=max_children)))


def flattenable_spaces(backend: ComputeBackend, max_depth: int = 2, **kwargs: Any) -> st.SearchStrategy[Space]:
    """Spaces :func:`~unibatch.spaces.flatten_data` accepts: texts have a charset, no empty containers."""
    kwargs.setdefault("allow_empty", False)
    return spaces(backend, max_depth, require_charset=True, **kwargs)


@st.composite
def samples(draw: st.DrawFn, space: Space) -> Any:
    """A value of ``space`` drawn with ``space.sample`` from a seed chosen by hypothesis."""
    rng = space.backend.random_number_generator(draw(seeds()))
    return space.sample(rng)[1]


@st.composite
def sample_lists(draw: st.DrawFn, space: Space, min_size: int = 0, max_size: int = 3) -> list[Any]:
    """Several values of ``space`` from one seed (one RNG stream)."""
    size = draw(st.integers(min_size, max_size))
    rng = space.backend.random_number_generator(draw(seeds()))
    values = []
    for _ in range(size):
        rng, value = space.sample(rng)
        values.append(value)
    return values


__all__ = [
    "BOX_DTYPES",
    "FLOAT_DTYPES",
    "INTEGER_DTYPES",
    "LEAF_KINDS",
    "binary_spaces",
    "box_spaces",
    "charsets",
    "dict_keys",
    "flattenable_spaces",
    "leaf_spaces",
    "sample_lists",
    "samples",
    "seeds",
    "shapes",
    "spaces",
    "text_spaces",
]
