"""Flattening family: ``flat_dim``, ``flat_dtype``, ``flatten_space``, ``flatten_data``, ``unflatten_data``.

A value flattens to one vector per batch element: leaves in sorted-key (dict) or positional
(tuple) order, each reshaped to one axis and cast to the one flat dtype (decision 3). The
first ``start_dim`` axes of the *data* are batch axes and are kept; the space's own leading
axes are ignored, so ``flatten_data(batch_space(space, 1), batch, start_dim=1)`` flattens a
batch of any size.

Leaves are ``BoxSpace``, ``BinarySpace`` (0/1 of the flat dtype) and ``TextSpace`` with a
charset (character indices padded with ``len(charset)``; in a batch, ``BatchedSpace``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from unibatch._typing import Array, DType
from unibatch.backends import dtype_to_name
from unibatch.errors import SpaceMismatchError, UnsupportedSpaceError
from unibatch.spaces._casts import ValueCheck, check_values, value_check
from unibatch.spaces._dtypes import flat_dtype_name
from unibatch.spaces._space import Space
from unibatch.spaces._tree import leaves as _leaves
from unibatch.spaces._tree import text_of as _text_of
from unibatch.spaces._tree import walk as _walk
from unibatch.spaces.binary import BinarySpace
from unibatch.spaces.box import BoxSpace
from unibatch.spaces.dict import DictSpace
from unibatch.spaces.text import TextSpace
from unibatch.spaces.tuple import TupleSpace

TEXT_CODE_DTYPE = "int32"
"""Dtype that text leaves contribute to the flat dtype rule (character indices)."""


def _leaf_dim(space: Space, start_dim: int, path: str) -> int:
    if isinstance(space, (BoxSpace, BinarySpace)):
        return math.prod(space.shape[start_dim:])
    text = _text_of(space)
    text_rank = 0 if isinstance(space, TextSpace) else len(space.shape or ())
    if text is not None and text.charset is not None and start_dim == text_rank:
        return text.max_length
    raise UnsupportedSpaceError(
        f"cannot flatten {path or 'the value'}: {space!r} with start_dim={start_dim} "
        "(texts need a charset and start_dim equal to their batch rank)"
    )


# ---------------------------------------------------------------------- dims and dtypes
def flat_dim(space: Space, start_dim: int = 0) -> int | None:
    """Length of the flat vector of one value, or None when ``space`` cannot be flattened.

    >>> from unibatch import BoxSpace, NumpyComputeBackend as np_backend
    >>> flat_dim(BoxSpace(np_backend, 0, 1, "float32", shape=(3, 4)))
    12
    """
    try:
        return sum(_leaf_dim(leaf, start_dim, path) for path, leaf in _leaves(space))
    except UnsupportedSpaceError:
        return None


def _leaf_dtype_name(space: Space) -> str:
    if isinstance(space, BoxSpace):
        return space.backend.dtype_name(space.dtype)
    if isinstance(space, BinarySpace):
        return "bool"
    return TEXT_CODE_DTYPE


def flat_dtype(space: Space) -> DType:
    """The dtype of ``flatten_data(space, ...)`` on the space's backend (decision 3)."""
    return space.backend.as_dtype(flat_dtype_name(_leaf_dtype_name(leaf) for _, leaf in _leaves(space)))


# ---------------------------------------------------------------------- flatten_space
def flatten_space(space: Space, start_dim: int = 0) -> BoxSpace:
    """The ``BoxSpace`` of flattened values: shape ``space.shape[:start_dim] + (flat_dim,)``.

    >>> from unibatch import BinarySpace, BoxSpace, DictSpace, NumpyComputeBackend as np_backend
    >>> space = DictSpace(np_backend, {"a": BoxSpace(np_backend, -1, 1, "float32", shape=(2,)),
    ...                               "b": BinarySpace(np_backend, (1,))})
    >>> flat = flatten_space(space)
    >>> flat.shape, flat.dtype.name, flat.low.tolist()
    ((3,), 'float32', [-1.0, -1.0, 0.0])
    """
    lows, highs, lead = [], [], None
    for path, leaf in _leaves(space):
        width = _leaf_dim(leaf, start_dim, path)
        low, high, leaf_lead = _leaf_flat_bounds(leaf, start_dim, width)
        if lead is not None and leaf_lead != lead:
            raise SpaceMismatchError(f"flatten_space: {path} has leading shape {leaf_lead}, expected {lead}")
        lead = leaf_lead
        lows.append(low)
        highs.append(high)
    if lead is None:
        raise UnsupportedSpaceError(f"cannot flatten an empty {space!r}")
    dtype = flat_dtype(space)
    host_dtype = space.backend.numpy_dtype(dtype)
    with np.errstate(over="ignore"):  # cast each leaf as flatten_data casts its values
        low = np.concatenate([b.astype(host_dtype) for b in _common(lows)], -1)
        high = np.concatenate([b.astype(host_dtype) for b in _common(highs)], -1)
    return BoxSpace(space.backend, low, high, dtype, space.device, shape=(*lead, low.shape[-1]))


def _common(bounds: list[np.ndarray]) -> list[np.ndarray]:
    """Bounds broadcast to one common leading shape (leading axes may be abbreviated)."""
    lead = np.broadcast_shapes(*(b.shape[:-1] for b in bounds))
    return [np.broadcast_to(b, lead + b.shape[-1:]) for b in bounds]


def _leaf_flat_bounds(leaf: Space, start_dim: int, width: int) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Flat ``(low, high)`` of one leaf as ``(abbreviated leading axes..., width)`` and its lead shape."""
    if isinstance(leaf, BoxSpace):
        lead = leaf.shape[:start_dim]
        result = []
        for bound in leaf.host_bounds():
            kept = bound.shape[:start_dim]
            result.append(np.broadcast_to(bound, kept + leaf.shape[start_dim:]).reshape(kept + (width,)))
        return result[0], result[1], lead
    if isinstance(leaf, BinarySpace):
        ones = (1,) * start_dim
        return np.zeros(ones + (width,), np.uint8), np.ones(ones + (width,), np.uint8), leaf.shape[:start_dim]
    text = _text_of(leaf)
    charset_size = len(text.charset or "") if text is not None else 0  # _leaf_dim checked both
    ones = (1,) * start_dim
    high = np.full(ones + (width,), charset_size, np.int64)
    return np.zeros_like(high), high, tuple(leaf.shape or ())[:start_dim]


# ---------------------------------------------------------------------- flatten_data
def flatten_data(space: Space, data: Any, start_dim: int = 0) -> Array:
    """Flatten ``data`` (a value of ``space`` with ``start_dim`` leading batch axes).

    The result has shape ``batch_shape + (flat_dim,)`` and dtype :func:`flat_dtype`.

    Raises:
        SpaceMismatchError: keys, structure or shapes of ``data`` do not fit ``space``.
        UnsupportedSpaceError: ``space`` has leaves that cannot be flattened.

    >>> from unibatch import BinarySpace, BoxSpace, DictSpace, NumpyComputeBackend as np_backend
    >>> space = DictSpace(np_backend, {"a": BoxSpace(np_backend, -1, 1, "float32", shape=(2,)),
    ...                               "b": BinarySpace(np_backend, (1,))})
    >>> flatten_data(space, {"a": np.array([0.5, -0.5], np.float32), "b": np.array([True])}).tolist()
    [0.5, -0.5, 1.0]
    """
    _backend, xp = space.backend, space.backend.xp
    dtype = flat_dtype(space)
    parts, lead = [], None
    for path, leaf, value in _walk(space, data):
        width = _leaf_dim(leaf, start_dim, path)
        array = _leaf_array(leaf, value, start_dim, path)
        leaf_lead = tuple(array.shape[:start_dim])
        if lead is not None and leaf_lead != lead:
            raise SpaceMismatchError(f"{path}: expected batch shape {lead}, got {leaf_lead}")
        lead = leaf_lead
        parts.append(xp.reshape(xp.astype(array, dtype, copy=False), (*leaf_lead, width)))
    if not parts:
        raise UnsupportedSpaceError(f"cannot flatten an empty {space!r}")
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=-1)


def _leaf_array(leaf: Space, value: Any, start_dim: int, path: str) -> Array:
    """The leaf's data as a backend array of rank ``start_dim + rank of the leaf's features``."""
    backend = leaf.backend
    text = _text_of(leaf)
    if text is not None:
        return backend.from_numpy(_encode_texts(text, value, path), device=leaf.device)
    if not backend.is_backendarray(value):
        if leaf.shape == () and isinstance(value, (bool, int, float, np.generic)):
            value = backend.asarray(value, dtype=leaf.dtype, device=leaf.device)
        else:
            raise SpaceMismatchError(
                f"{path or 'value'}: expected a {backend.simplified_name} array, got {type(value).__name__}"
            )
    shape: tuple[int, ...] = leaf.shape or ()
    features = shape[start_dim:]
    if value.ndim != len(shape) or tuple(value.shape[start_dim:]) != features:
        raise SpaceMismatchError(
            f"{path or 'value'}: expected shape (batch..., {', '.join(map(str, features))}) with "
            f"{start_dim} batch axes, got {tuple(value.shape)}"
        )
    return value


def _encode_texts(text: TextSpace, value: Any, path: str) -> np.ndarray:
    strings = np.asarray(value, dtype=object)
    codes = np.full((*strings.shape, text.max_length), len(text.charset or ""), np.int64)
    flat_codes = codes.reshape(strings.size, text.max_length)
    for row, string in enumerate(strings.reshape(-1)):
        if not isinstance(string, str) or len(string) > text.max_length:
            raise SpaceMismatchError(
                f"{path or 'value'}: expected a str of at most {text.max_length} characters, got {string!r}"
            )
        flat_codes[row, : len(string)] = [text.character_index(c) for c in string]
    return codes


# ---------------------------------------------------------------------- checks of flat values
def check_flat_values(space: Space, data: Array) -> None:
    """Raise unless unflattening ``data`` (flat rows ``(..., flat_dim)``) keeps every value.

    Each leaf's columns are cast to the leaf's dtype on the way back; a cast that could change a
    value is checked (see :mod:`unibatch.spaces._casts`): a float column into an integer leaf
    must hold integers in the leaf's range (not ``2.7``, NaN or ``1e10`` into ``uint8``), an
    integer column must fit a narrower integer leaf, a column of a ``BinarySpace`` leaf must
    hold 0 or 1. Columns of leaves that hold every value of ``data``'s dtype are not read.

    Raises:
        SpaceMismatchError: naming the leaf's key path, its dtype, the first changed value and its position.

    >>> from unibatch import BoxSpace, DictSpace, NumpyComputeBackend as np_backend
    >>> space = DictSpace(np_backend, {"a": BoxSpace(np_backend, 0, 255, "uint8", shape=(1,)),
    ...                               "b": BoxSpace(np_backend, -1, 1, "float32", shape=(1,))})
    >>> check_flat_values(space, np.array([7.0, 0.5], np.float32))
    >>> try:
    ...     check_flat_values(space, np.array([-7.0, 0.5], np.float32))
    ... except SpaceMismatchError as error:
    ...     print(str(error).split(" (1 such")[0])
    a (flat columns 0:1): expected values that uint8 holds unchanged, got float32 value -7.0 at [0]
    """
    backend = space.backend
    for start, stop, path, leaf_dtype in _flat_checks(space, dtype_to_name(data.dtype)):
        check_values(backend, data[..., start:stop], leaf_dtype, f"{path or 'value'} (flat columns {start}:{stop})")


def _flat_checks(space: Space, source: str) -> list[tuple[int, int, str, Any]]:
    """``(start, stop, key path, leaf dtype)`` of the leaves whose cast from ``source`` needs a check (cached)."""
    cache: tuple[int, dict[str, list[tuple[int, int, str, Any]]]] | None = space.__dict__.get("_flat_value_checks")
    if cache is None or cache[0] != Space.structure_version:
        cache = space.__dict__["_flat_value_checks"] = (Space.structure_version, {})
    checks = cache[1].get(source)
    if checks is None:
        checks = []
        start = 0
        for path, leaf in _leaves(space):
            width = _leaf_dim(leaf, 0, path)
            if isinstance(leaf, (BoxSpace, BinarySpace)):
                dtype = "bool" if isinstance(leaf, BinarySpace) else leaf.dtype
                needed: ValueCheck | None = value_check(source, dtype)
                if needed is not None:
                    checks.append((start, start + width, path, dtype))
            start += width
        cache[1][source] = checks
    return checks


# ---------------------------------------------------------------------- unflatten_data
def unflatten_data(space: Space, data: Array, start_dim: int = 0) -> Any:
    """Inverse of :func:`flatten_data`.

    Splits the last axis of ``data`` back into the leaves of ``space``, reshapes them and casts
    each to its own dtype.

    >>> from unibatch import BoxSpace, NumpyComputeBackend as np_backend
    >>> space = BoxSpace(np_backend, 0, 9, "int64", shape=(2, 2))
    >>> unflatten_data(space, np.arange(4.0)).tolist()
    [[0, 1], [2, 3]]
    """
    backend, xp = space.backend, space.backend.xp
    total = flat_dim(space, start_dim)
    if total is None:
        raise UnsupportedSpaceError(f"cannot unflatten {space!r} with start_dim={start_dim}")
    if not backend.is_backendarray(data):
        raise SpaceMismatchError(
            f"unflatten_data: expected a {backend.simplified_name} array, got {type(data).__name__}"
        )
    if data.ndim != start_dim + 1 or data.shape[-1] != total:
        raise SpaceMismatchError(
            f"unflatten_data: expected shape (batch..., {total}) with {start_dim} batch axes, got {tuple(data.shape)}"
        )
    lead = tuple(data.shape[:-1])
    offset = 0

    def rebuild(sub: Space, path: str) -> Any:
        nonlocal offset
        if isinstance(sub, DictSpace):
            return {key: rebuild(child, f"{path}/{key}") for key, child in sub.items()}
        if isinstance(sub, TupleSpace):
            return tuple(rebuild(child, f"{path}/{i}") for i, child in enumerate(sub.spaces))
        width = _leaf_dim(sub, start_dim, path)
        piece = data[..., offset : offset + width]
        offset += width
        text = _text_of(sub)
        if text is not None:
            return _decode_texts(text, backend.to_numpy(piece))
        piece = xp.reshape(piece, (*lead, *(sub.shape or ())[start_dim:]))
        if isinstance(sub, BinarySpace):
            return backend.asarray(piece != 0)  # NumPy gives a scalar for 0-d; keep an array
        return xp.astype(piece, sub.dtype, copy=False)

    return rebuild(space, "")


def _decode_texts(text: TextSpace, codes: np.ndarray) -> Any:
    charset = text.charset or ""
    rows = codes.reshape(int(np.prod(codes.shape[:-1])), codes.shape[-1]).astype(np.int64)
    strings = ["".join(charset[c] for c in row if 0 <= c < len(charset)) for row in rows]
    if codes.ndim == 1:
        return strings[0]
    result = np.empty(len(strings), dtype=object)
    result[:] = strings
    return result.reshape(codes.shape[:-1])
