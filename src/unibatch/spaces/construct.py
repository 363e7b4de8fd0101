"""Infer a space from one sample of data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from unibatch.backends import ComputeBackend, NumpyComputeBackend, convert, get_backend_or_none
from unibatch.errors import UnsupportedSpaceError
from unibatch.spaces._space import Space
from unibatch.spaces.binary import BinarySpace
from unibatch.spaces.box import BoxSpace
from unibatch.spaces.dict import DictSpace
from unibatch.spaces.text import TextSpace
from unibatch.spaces.tuple import TupleSpace

INFERRED_TEXT_MAX_LENGTH = 1024
"""``max_length`` of a TextSpace inferred from a string (or the string's length if longer)."""


def construct_space_from_data(data: Any, backend: ComputeBackend | None = None) -> Space:
    """The widest space that contains ``data``: unbounded boxes, binaries, texts, dicts, tuples.

    Args:
        data: one sample: arrays of any backend, Python/NumPy scalars, ``str``, dicts, tuples.
        backend: the backend of the space; by default the backend of the arrays in ``data``
            (NumPy for Python scalars).

    >>> construct_space_from_data({"pos": np.zeros(3, np.float32), "done": np.bool_(True)})
    DictSpace({'done': BinarySpace(()), 'pos': BoxSpace(-inf, inf, (3,), float32)})
    """
    if backend is None:
        backend = _backend_of(data) or NumpyComputeBackend
    return _construct(data, backend)


def _backend_of(data: Any) -> ComputeBackend | None:
    found = get_backend_or_none(data)
    if found is not None:
        return found
    children = data.values() if isinstance(data, Mapping) else data if isinstance(data, (tuple, list)) else ()
    return next((b for b in (_backend_of(child) for child in children) if b is not None), None)


def _construct(data: Any, backend: ComputeBackend) -> Space:
    if isinstance(data, Mapping):
        return DictSpace(backend, {str(k): _construct(v, backend) for k, v in data.items()})
    if isinstance(data, tuple):
        return TupleSpace(backend, [_construct(v, backend) for v in data])
    if isinstance(data, str):
        return TextSpace(backend, max(len(data), INFERRED_TEXT_MAX_LENGTH))
    source = get_backend_or_none(data)
    if source is not None:
        array, device = convert(data, backend), source.device(data)
        device = device if source is backend else None
    elif isinstance(data, (bool, int, float, np.generic, np.ndarray)):
        array, device = backend.asarray(data), None
    else:
        raise UnsupportedSpaceError(f"cannot infer a space from {type(data).__name__}")
    shape = tuple(array.shape)
    name = backend.dtype_name(array.dtype)
    if name == "bool":
        return BinarySpace(backend, shape, device=device)
    if name.startswith(("int", "uint", "float", "bfloat")):
        return BoxSpace(backend, -np.inf, np.inf, array.dtype, device=device, shape=shape)
    raise UnsupportedSpaceError(f"cannot infer a space for dtype {name}")
