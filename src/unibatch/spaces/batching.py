"""Batching family: ``batch_space``, ``batch_size``, ``concatenate``, ``get_at``, ``set_at``, ``iterate``.

Each function dispatches on the space type (``functools.singledispatch``); register a new
space type with ``batch_space.register(MySpace)`` and so on. ``get_at``, ``set_at`` and
``iterate`` only follow the *structure* of the space, so they accept the space of one sample
or of the batch alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import singledispatch
from typing import Any

import numpy as np

from unibatch._typing import Array
from unibatch.backends import get_backend_or_none
from unibatch.errors import SpaceMismatchError, UnsupportedSpaceError
from unibatch.spaces._space import Space
from unibatch.spaces.batched import BatchedSpace
from unibatch.spaces.binary import BinarySpace
from unibatch.spaces.box import BoxSpace
from unibatch.spaces.dict import DictSpace
from unibatch.spaces.text import TextSpace
from unibatch.spaces.tuple import TupleSpace


# ---------------------------------------------------------------------- batch_space
@singledispatch
def batch_space(space: Space, n: int) -> Space:
    """The space of ``n`` stacked values of ``space`` (a new leading axis of size ``n``).

    >>> from unibatch import BoxSpace, NumpyComputeBackend as np_backend
    >>> batch_space(BoxSpace(np_backend, 0.0, 1.0, "float32", shape=(3,)), 5).shape
    (5, 3)
    """
    raise UnsupportedSpaceError(f"batch_space does not support {type(space).__name__}")


@batch_space.register
def _(space: BoxSpace, n: int) -> Space:
    low, high = space.host_bounds()
    return BoxSpace(space.backend, low[None], high[None], space.dtype, space.device, shape=(int(n), *space.shape))


@batch_space.register
def _(space: BinarySpace, n: int) -> Space:
    return BinarySpace(space.backend, (int(n), *space.shape), space.dtype, space.device)


@batch_space.register
def _(space: DictSpace, n: int) -> Space:
    return DictSpace(space.backend, {k: batch_space(s, n) for k, s in space.items()}, space.device)


@batch_space.register
def _(space: TupleSpace, n: int) -> Space:
    return TupleSpace(space.backend, [batch_space(s, n) for s in space.spaces], space.device)


@batch_space.register
def _(space: TextSpace, n: int) -> Space:
    return BatchedSpace(space, (int(n),))


@batch_space.register
def _(space: BatchedSpace, n: int) -> Space:
    return BatchedSpace(space.single_space, (int(n), *space.batch_shape))


# ---------------------------------------------------------------------- batch_size
@singledispatch
def batch_size(space: Space) -> int | None:
    """The leading dimension of a batched space, or None when it has none."""
    return None


@batch_size.register(BoxSpace)
@batch_size.register(BinarySpace)
@batch_size.register(BatchedSpace)
def _(space: Space) -> int | None:
    return space.shape[0] if space.shape else None


@batch_size.register
def _(space: DictSpace) -> int | None:
    return _first_size(batch_size(s) for s in space.values())


@batch_size.register
def _(space: TupleSpace) -> int | None:
    return _first_size(batch_size(s) for s in space.spaces)


def _first_size(sizes: Iterator[int | None]) -> int | None:
    """The first known size among children (empty containers have none)."""
    return next((size for size in sizes if size is not None), None)


def batch_size_data(data: Any) -> int | None:
    """The leading dimension of batched data; None for scalars and strings.

    Arrays give ``shape[0]``, dicts their first value's, tuples their first element's, lists of
    Python values their length.
    """
    if isinstance(data, np.ndarray) or get_backend_or_none(data) is not None:
        return int(data.shape[0]) if data.ndim > 0 else None
    if isinstance(data, Mapping):
        return _first_size(batch_size_data(v) for v in data.values())
    if isinstance(data, tuple):
        return _first_size(batch_size_data(v) for v in data)
    if isinstance(data, list):
        return len(data)
    return None


# ---------------------------------------------------------------------- concatenate
@singledispatch
def concatenate(space: Space, items: Sequence[Any]) -> Any:
    """Stack a sequence of unbatched values of ``space`` into one batch (a new leading axis).

    >>> from unibatch import BoxSpace, NumpyComputeBackend as np_backend
    >>> space = BoxSpace(np_backend, 0, 9, "int64", shape=(2,))
    >>> concatenate(space, [np.array([1, 2]), np.array([3, 4])]).tolist()
    [[1, 2], [3, 4]]
    """
    raise UnsupportedSpaceError(f"concatenate does not support {type(space).__name__}")


@concatenate.register(BoxSpace)
@concatenate.register(BinarySpace)
def _(space: Space, items: Sequence[Any]) -> Array:
    if len(items) == 0:
        return batch_space(space, 0).create_empty()
    backend = space.backend
    arrays = [
        x if backend.is_backendarray(x) else backend.asarray(x, dtype=space.dtype, device=space.device) for x in items
    ]
    shapes = {tuple(a.shape) for a in arrays}
    if shapes != {space.shape}:
        bad = next(s for s in (tuple(a.shape) for a in arrays) if s != space.shape)
        raise SpaceMismatchError(f"concatenate: expected items of shape {space.shape}, got {bad}")
    return backend.xp.stack(arrays)


@concatenate.register
def _(space: DictSpace, items: Sequence[Any]) -> dict[str, Any]:
    for item in items:
        if not isinstance(item, Mapping) or set(item) != set(space.keys()):
            got = sorted(item) if isinstance(item, Mapping) else type(item).__name__
            raise SpaceMismatchError(f"concatenate: expected dicts with keys {sorted(space.keys())}, got {got}")
    return {key: concatenate(sub, [item[key] for item in items]) for key, sub in space.items()}


@concatenate.register
def _(space: TupleSpace, items: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(concatenate(sub, [item[i] for item in items]) for i, sub in enumerate(space.spaces))


@concatenate.register
def _(space: TextSpace, items: Sequence[Any]) -> np.ndarray:
    result = np.empty(len(items), dtype=object)
    result[:] = list(items)
    return result


@concatenate.register
def _(space: BatchedSpace, items: Sequence[Any]) -> np.ndarray:
    result = np.empty((len(items), *space.batch_shape), dtype=object)
    for position, item in enumerate(items):
        result[position] = item
    return result


# ---------------------------------------------------------------------- get_at / set_at
@singledispatch
def get_at(space: Space, data: Any, index: Any) -> Any:
    """``data[index]`` for every leaf of batched ``data`` (any NumPy-style index)."""
    raise UnsupportedSpaceError(f"get_at does not support {type(space).__name__}")


@get_at.register(BoxSpace)
@get_at.register(BinarySpace)
def _(space: Space, data: Any, index: Any) -> Any:
    result = data[index]
    # NumPy turns a 0-d result into a scalar; keep arrays, like PyTorch and JAX do.
    return np.asarray(result) if isinstance(result, np.generic) else result


@get_at.register
def _(space: DictSpace, data: Any, index: Any) -> dict[str, Any]:
    return {key: get_at(sub, data[key], index) for key, sub in space.items()}


@get_at.register
def _(space: TupleSpace, data: Any, index: Any) -> tuple[Any, ...]:
    return tuple(get_at(sub, value, index) for sub, value in zip(space.spaces, data, strict=True))


@get_at.register(TextSpace)
@get_at.register(BatchedSpace)
def _(space: Space, data: Any, index: Any) -> Any:
    return np.asarray(data, dtype=object)[_host_index(index)]


@singledispatch
def set_at(space: Space, data: Any, index: Any, value: Any) -> Any:
    """Write ``value`` at ``index`` of every leaf and return the updated data.

    The result is ``data`` itself on NumPy and PyTorch and a new object on JAX. A scalar
    ``value`` is broadcast to every leaf.
    """
    raise UnsupportedSpaceError(f"set_at does not support {type(space).__name__}")


@set_at.register(BoxSpace)
@set_at.register(BinarySpace)
def _(space: Space, data: Any, index: Any, value: Any) -> Any:
    return space.backend.at(data)[index].set(value)


@set_at.register
def _(space: DictSpace, data: Any, index: Any, value: Any) -> dict[str, Any]:
    result = dict(data)
    for key, sub in space.items():
        result[key] = set_at(sub, data[key], index, value[key] if isinstance(value, Mapping) else value)
    return result


@set_at.register
def _(space: TupleSpace, data: Any, index: Any, value: Any) -> tuple[Any, ...]:
    values = value if isinstance(value, tuple) else (value,) * len(space.spaces)
    return tuple(set_at(sub, d, index, v) for sub, d, v in zip(space.spaces, data, values, strict=True))


@set_at.register(TextSpace)
@set_at.register(BatchedSpace)
def _(space: Space, data: Any, index: Any, value: Any) -> Any:
    data[_host_index(index)] = value
    return data


def iterate(space: Space, data: Any) -> Iterator[Any]:
    """Yield the unbatched values of batched ``data`` one by one.

    >>> from unibatch import BinarySpace, NumpyComputeBackend as np_backend
    >>> [bool(v) for v in iterate(BinarySpace(np_backend, (2,)), np.array([True, False]))]
    [True, False]
    """
    size = batch_size_data(data)
    if size is None:
        raise SpaceMismatchError(f"iterate: data of {space!r} has no batch axis")
    for position in range(size):
        yield get_at(space, data, position)


def _host_index(index: Any) -> Any:
    """An index usable on a NumPy object array (backend arrays are moved to the host)."""
    backend = get_backend_or_none(index)
    return index if backend is None else backend.to_numpy(index)
