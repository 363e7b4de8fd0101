"""space_to_json / json_to_space on hand-written examples, including infinities and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unibatch import BatchedSpace, BinarySpace, BoxSpace, DictSpace, TextSpace, TupleSpace
from unibatch.errors import SpaceMismatchError, UnknownNameError
from unibatch.spaces import batch_space, json_to_space, space_to_json


def all_kinds(backend):
    return DictSpace(
        backend,
        {
            "box": BoxSpace(backend, [-np.inf, 0.0], [np.inf, 1.0], "float32"),
            "int": BoxSpace(backend, -np.inf, np.inf, "int64", shape=(2, 3)),
            "flag": BinarySpace(backend, (4,)),
            "pair": TupleSpace(backend, [BinarySpace(backend), TextSpace(backend, 5, charset="ab")]),
            "note": TextSpace(backend, 8, min_length=1),
            "notes": BatchedSpace(TextSpace(backend, 2), (3,)),
        },
    )


def _round_trip(space, backend):
    text = json.dumps(space_to_json(space), allow_nan=False)
    return json_to_space(json.loads(text), backend)


def test_every_kind_round_trips(backend):
    space = all_kinds(backend)
    assert _round_trip(space, backend) == space
    batched = batch_space(space, 7)
    assert _round_trip(batched, backend) == batched


def test_round_trip_across_backends(backend, other_backend):
    space = all_kinds(backend)
    assert _round_trip(space, other_backend) == space.to(other_backend)


def test_box_json_layout(backend):
    space = BoxSpace(backend, -np.inf, [1.0, 2.0], "float32")
    assert space_to_json(space) == {
        "type": "BoxSpace",
        "shape": [2],
        "dtype": "float32",
        "low": ["-inf"],
        "high": [1.0, 2.0],
    }


def test_loader_accepts_json_infinity(backend):
    data = json.loads('{"type": "BoxSpace", "shape": [1], "dtype": "float32", "low": [-Infinity], "high": [Infinity]}')
    space = json_to_space(data, backend)
    assert not space.is_bounded


def test_errors(backend):
    with pytest.raises(UnknownNameError, match="unknown space type 'Graph'"):
        json_to_space({"type": "Graph"}, backend)
    with pytest.raises(SpaceMismatchError, match="not a serialized space"):
        json_to_space([1, 2], backend)
    with pytest.raises(UnknownNameError, match="unknown dtype name 'float8'"):
        json_to_space({"type": "BoxSpace", "shape": [], "dtype": "float8", "low": 0, "high": 1}, backend)
