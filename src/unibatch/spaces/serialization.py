"""``space_to_json`` / ``json_to_space``: every space as strict JSON, through a name registry.

Bounds are abbreviated nested lists; infinities are written as the strings ``"inf"`` and
``"-inf"`` so the result is valid JSON (``json.dumps(..., allow_nan=False)`` works). The
backend and device are not stored: the loader chooses them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import singledispatch
from typing import Any

import numpy as np

from unibatch._typing import Device
from unibatch.backends import ComputeBackend
from unibatch.errors import SpaceMismatchError, UnknownNameError, UnsupportedSpaceError
from unibatch.spaces._space import Space
from unibatch.spaces.batched import BatchedSpace
from unibatch.spaces.binary import BinarySpace
from unibatch.spaces.box import BoxSpace
from unibatch.spaces.dict import DictSpace
from unibatch.spaces.text import TextSpace
from unibatch.spaces.tuple import TupleSpace

JsonDict = dict[str, Any]
SpaceLoader = Callable[[JsonDict, ComputeBackend, Device], Space]

_LOADERS: dict[str, SpaceLoader] = {}


def register_space_loader(type_name: str) -> Callable[[SpaceLoader], SpaceLoader]:
    """Register the function that rebuilds spaces whose JSON ``"type"`` is ``type_name``."""

    def decorate(loader: SpaceLoader) -> SpaceLoader:
        _LOADERS[type_name] = loader
        return loader

    return decorate


@singledispatch
def space_to_json(space: Space) -> JsonDict:
    """A JSON-compatible dict describing ``space`` (with a ``"type"`` field).

    >>> from unibatch import BoxSpace, NumpyComputeBackend as np_backend
    >>> space_to_json(BoxSpace(np_backend, 0.0, float("inf"), "float32", shape=(2,)))
    {'type': 'BoxSpace', 'shape': [2], 'dtype': 'float32', 'low': [0.0], 'high': ['inf']}
    """
    raise UnsupportedSpaceError(f"space_to_json does not support {type(space).__name__}")


def json_to_space(data: JsonDict, backend: ComputeBackend, device: Device | None = None) -> Space:
    """Rebuild a space from :func:`space_to_json` output on ``backend`` and ``device``."""
    if not isinstance(data, dict) or "type" not in data:
        raise SpaceMismatchError(f"not a serialized space (a dict with a 'type'): {data!r}")
    try:
        loader = _LOADERS[data["type"]]
    except KeyError:
        raise UnknownNameError(f"unknown space type {data['type']!r}; known: {sorted(_LOADERS)}") from None
    return loader(data, backend, device)


# ---------------------------------------------------------------------- Box
@space_to_json.register
def _(space: BoxSpace) -> JsonDict:
    low, high = space.host_bounds()
    return {
        "type": "BoxSpace",
        "shape": list(space.shape),
        "dtype": space.backend.dtype_name(space.dtype),
        "low": _bounds_to_json(low),
        "high": _bounds_to_json(high),
    }


@register_space_loader("BoxSpace")
def _load_box(data: JsonDict, backend: ComputeBackend, device: Device) -> Space:
    low, high = (_bounds_from_json(data[k]) for k in ("low", "high"))
    return BoxSpace(backend, low, high, data["dtype"], device, shape=tuple(data["shape"]))


def _bounds_to_json(bound: np.ndarray) -> Any:
    if bound.dtype.kind != "f":
        return bound.tolist()
    as_float = bound.astype(np.float64)
    as_object = as_float.astype(object)
    as_object[np.isposinf(as_float)] = "inf"
    as_object[np.isneginf(as_float)] = "-inf"
    return as_object.tolist()


def _bounds_from_json(bound: Any) -> np.ndarray:
    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return [decode(v) for v in value]
        return float(value) if isinstance(value, str) else value

    return np.asarray(decode(bound))


# ---------------------------------------------------------------------- the others
@space_to_json.register
def _(space: BinarySpace) -> JsonDict:
    return {"type": "BinarySpace", "shape": list(space.shape)}


@register_space_loader("BinarySpace")
def _load_binary(data: JsonDict, backend: ComputeBackend, device: Device) -> Space:
    return BinarySpace(backend, tuple(data["shape"]), device=device)


@space_to_json.register
def _(space: DictSpace) -> JsonDict:
    return {"type": "DictSpace", "spaces": {key: space_to_json(sub) for key, sub in space.items()}}


@register_space_loader("DictSpace")
def _load_dict(data: JsonDict, backend: ComputeBackend, device: Device) -> Space:
    children = {key: json_to_space(sub, backend, device) for key, sub in data["spaces"].items()}
    return DictSpace(backend, children, device)


@space_to_json.register
def _(space: TupleSpace) -> JsonDict:
    return {"type": "TupleSpace", "spaces": [space_to_json(sub) for sub in space.spaces]}


@register_space_loader("TupleSpace")
def _load_tuple(data: JsonDict, backend: ComputeBackend, device: Device) -> Space:
    return TupleSpace(backend, [json_to_space(sub, backend, device) for sub in data["spaces"]], device)


@space_to_json.register
def _(space: TextSpace) -> JsonDict:
    return {
        "type": "TextSpace",
        "min_length": space.min_length,
        "max_length": space.max_length,
        "charset": space.charset,
    }


@register_space_loader("TextSpace")
def _load_text(data: JsonDict, backend: ComputeBackend, device: Device) -> Space:
    return TextSpace(
        backend, data["max_length"], min_length=data.get("min_length", 0), charset=data.get("charset"), device=device
    )


@space_to_json.register
def _(space: BatchedSpace) -> JsonDict:
    return {
        "type": "BatchedSpace",
        "batch_shape": list(space.batch_shape),
        "single_space": space_to_json(space.single_space),
    }


@register_space_loader("BatchedSpace")
def _load_batched(data: JsonDict, backend: ComputeBackend, device: Device) -> Space:
    return BatchedSpace(json_to_space(data["single_space"], backend, device), tuple(data["batch_shape"]))
