"""BinarySpace, TextSpace, DictSpace, TupleSpace, BatchedSpace."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch import BatchedSpace, BinarySpace, BoxSpace, DictSpace, TextSpace, TupleSpace
from unibatch.errors import SpaceMismatchError


def test_binary_sample_works_and_is_contained(backend):
    space = BinarySpace(backend, (3, 5))
    _, value = space.sample(backend.random_number_generator(0))
    assert space.contains(value)
    assert backend.dtype_name(value.dtype) == "bool"
    assert 0 < to_numpy(value).sum() < 15


def test_binary_contains_and_errors(backend):
    space = BinarySpace(backend, ())
    assert space.contains(True) and space.contains(np.bool_(False))
    assert not space.contains(backend.asarray(1))
    with pytest.raises(SpaceMismatchError, match="holds booleans"):
        BinarySpace(backend, (2,), dtype="int8")


def test_text_space(backend):
    space = TextSpace(backend, 5, min_length=2, charset="abc")
    assert "ab" in space and "abcab" in space
    assert "a" not in space and "abcabc" not in space and "abd" not in space and 3 not in space
    rng = backend.random_number_generator(0)
    for _ in range(10):
        rng, value = space.sample(rng)
        assert value in space
    _, free = TextSpace(backend, 4).sample(rng)
    assert isinstance(free, str) and len(free) <= 4
    with pytest.raises(SpaceMismatchError, match="min_length <= max_length"):
        TextSpace(backend, 2, min_length=3)
    with pytest.raises(SpaceMismatchError, match="without repeats"):
        TextSpace(backend, 2, charset="aa")


def _box(backend, n=2):
    return BoxSpace(backend, -1.0, 1.0, "float32", shape=(n,))


def test_dict_keys_sorted_always(backend):
    space = DictSpace(backend, {"z": _box(backend), "a": _box(backend)})
    assert list(space.keys()) == ["a", "z"]
    space["m"] = _box(backend)
    assert list(space) == ["a", "m", "z"]
    del space["a"]
    assert list(space.keys()) == ["m", "z"]
    assert list(copy.copy(space).keys()) == ["m", "z"]
    assert list(space.to(backend).keys()) == ["m", "z"]


def test_dict_nested_mappings_become_dict_spaces(backend):
    space = DictSpace(backend, {"obs": {"b": _box(backend), "a": _box(backend)}})
    assert isinstance(space["obs"], DictSpace)
    assert list(space["obs"].keys()) == ["a", "b"]


def test_dict_contains_requires_exact_keys(backend):
    space = DictSpace(backend, {"a": BinarySpace(backend), "b": BinarySpace(backend)})
    assert space.contains({"b": True, "a": False})
    assert not space.contains({"a": True})
    assert not space.contains({"a": True, "b": True, "c": True})
    assert not space.contains([True, True])


def test_dict_rejects_bad_children(backend, other_backend):
    with pytest.raises(SpaceMismatchError, match="keys must be str"):
        DictSpace(backend, {1: _box(backend)})
    with pytest.raises(SpaceMismatchError, match=r"DictSpace\['a'\] must be a Space"):
        DictSpace(backend, {"a": 3})
    if other_backend is not backend:
        with pytest.raises(SpaceMismatchError, match="expected " + backend.simplified_name):
            DictSpace(backend, {"a": _box(other_backend)})


def test_dict_equality_and_device(backend):
    a = DictSpace(backend, {"x": _box(backend), "y": BinarySpace(backend)})
    b = DictSpace(backend, {"y": BinarySpace(backend), "x": _box(backend)})
    assert a == b
    assert a != DictSpace(backend, {"x": _box(backend)})
    device = backend.default_device
    placed = DictSpace(backend, {"x": _box(backend)}, device=device)
    assert backend.serialize_device(placed["x"].device) == backend.serialize_device(device)
    assert backend.serialize_device(placed.device) == backend.serialize_device(device)


def test_dict_sample_create_empty_to(backend, other_backend):
    space = DictSpace(backend, {"x": _box(backend), "flag": BinarySpace(backend, (2,)), "t": TextSpace(backend, 3)})
    _, value = space.sample(backend.random_number_generator(0))
    assert space.contains(value)
    empty = space.create_empty()
    assert set(empty) == {"x", "flag", "t"} and empty["t"] == ""
    moved = space.to(other_backend)
    assert moved["x"].backend is other_backend and moved.backend is other_backend


def test_tuple_space(backend):
    space = TupleSpace(backend, [_box(backend), BinarySpace(backend)])
    _, value = space.sample(backend.random_number_generator(0))
    assert isinstance(value, tuple) and space.contains(value)
    assert not space.contains(list(value))
    assert space == TupleSpace(backend, [_box(backend), BinarySpace(backend)])
    assert space != TupleSpace(backend, [BinarySpace(backend), _box(backend)])
    assert len(space) == 2 and space[1] == BinarySpace(backend)
    with pytest.raises(SpaceMismatchError, match=r"TupleSpace\[0\] must be a Space"):
        TupleSpace(backend, [1])


def test_batched_space(backend):
    space = BatchedSpace(TextSpace(backend, 3, charset="xy"), (2, 2))
    _, value = space.sample(backend.random_number_generator(0))
    assert value.shape == (2, 2) and value.dtype == object and space.contains(value)
    assert not space.contains(np.array([["xz", "x"], ["x", "y"]], dtype=object))
    empty = space.create_empty()
    assert empty.tolist() == [["", ""], ["", ""]]
    assert space == BatchedSpace(TextSpace(backend, 3, charset="xy"), (2, 2))
    assert space != BatchedSpace(TextSpace(backend, 3, charset="xy"), (2,))
