"""BoxSpace: construction, bounds, contains, sample, to, equality, errors."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch import BoxSpace
from unibatch.errors import SpaceMismatchError


def test_shape_from_bounds_and_abbreviation(backend):
    space = BoxSpace(backend, np.zeros((3, 1)), np.ones((3, 4)), "float32")
    assert space.shape == (3, 4)
    low, high = space.host_bounds()
    assert low.shape == (1, 1) and high.shape == (1, 1)
    assert to_numpy(space.low).shape == (3, 4)


def test_non_uniform_bounds_are_kept(backend):
    space = BoxSpace(backend, [0.0, -1.0], [1.0, 1.0], "float32")
    assert space.host_bounds()[0].tolist() == [0.0, -1.0]
    assert space.host_bounds()[1].tolist() == [1.0]


def test_integer_infinite_bounds_become_dtype_limits(backend):
    space = BoxSpace(backend, -np.inf, np.inf, "int16", shape=(2,))
    assert to_numpy(space.low).tolist() == [-32768, -32768]
    assert to_numpy(space.high).tolist() == [32767, 32767]


def test_integer_bounds_round_inwards(backend):
    space = BoxSpace(backend, 0.5, 9.5, "int32", shape=())
    assert int(to_numpy(space.low)) == 1 and int(to_numpy(space.high)) == 9


@pytest.mark.parametrize("dtype", ["bool", "complex64"])
def test_rejects_non_real_dtypes(backend, dtype):
    with pytest.raises(SpaceMismatchError, match="real floating or integer dtype"):
        BoxSpace(backend, 0, 1, dtype)


def test_rejects_bad_bounds(backend):
    with pytest.raises(SpaceMismatchError, match="low <= high"):
        BoxSpace(backend, 1, 0, "float32")
    with pytest.raises(SpaceMismatchError, match="NaN"):
        BoxSpace(backend, np.nan, 0, "float32")
    with pytest.raises(SpaceMismatchError, match="does not broadcast to shape"):
        BoxSpace(backend, np.zeros(3), 1, "float32", shape=(2,))
    with pytest.raises(SpaceMismatchError, match="do not broadcast"):
        BoxSpace(backend, np.zeros(3), np.ones(2), "float32")


def test_contains(backend):
    space = BoxSpace(backend, 0, 10, "int32", shape=(2,))
    assert space.contains(backend.asarray([0, 10], dtype="int32"))
    assert backend.asarray([3, 4], dtype="int32") in space
    assert not space.contains(backend.asarray([3, 11], dtype="int32"))
    assert not space.contains(backend.asarray([3], dtype="int32"))
    assert not space.contains(backend.asarray([1.0, 2.0], dtype="float32"))
    assert not space.contains([1, 2])


def test_contains_scalars(backend):
    space = BoxSpace(backend, 0.0, 1.0, "float32")
    assert space.contains(0.5) and space.contains(1) and space.contains(np.float32(0.25))
    assert not space.contains(2.0) and not space.contains("0.5")
    assert not BoxSpace(backend, 0, 5, "int32").contains(0.5)


@pytest.mark.parametrize(
    ("low", "high", "dtype"),
    [
        (-1.0, 1.0, "float32"),
        (0.0, np.inf, "float32"),
        (-np.inf, 0.0, "float64"),
        (-np.inf, np.inf, "float32"),
        (0, 255, "uint8"),
        (-np.inf, np.inf, "int64"),
        ([0.0, -np.inf], [np.inf, 2.0], "float32"),
        (-3, 3, "int8"),
    ],
)
def test_sample_is_contained_and_deterministic(backend, low, high, dtype):
    space = BoxSpace(backend, low, high, dtype, shape=(64, 2))
    _, first = space.sample(backend.random_number_generator(3))
    _, second = space.sample(backend.random_number_generator(3))
    assert space.contains(first)
    np.testing.assert_array_equal(to_numpy(first), to_numpy(second))


def test_integer_sample_covers_inclusive_range(backend):
    space = BoxSpace(backend, -1, 1, "int32", shape=(2000,))
    _, value = space.sample(backend.random_number_generator(0))
    assert set(to_numpy(value).tolist()) == {-1, 0, 1}


def test_create_empty(backend):
    value = BoxSpace(backend, 0, 1, "float32", shape=(2, 3)).create_empty()
    assert tuple(value.shape) == (2, 3) and backend.dtype_name(value.dtype) == "float32"


def test_equality_ignores_device_but_not_dtype_or_bounds(backend):
    a = BoxSpace(backend, 0, 1, "float32", shape=(2,))
    assert a == BoxSpace(backend, [0, 0], [1, 1], "float32")
    assert a == BoxSpace(backend, 0, 1, "float32", shape=(2,), device=backend.default_device)
    assert a != BoxSpace(backend, 0, 2, "float32", shape=(2,))
    assert a != BoxSpace(backend, 0, 1, "float16", shape=(2,))
    assert a != BoxSpace(backend, 0, 1, "float32", shape=(3,))


def test_to_other_backend(backend, other_backend):
    space = BoxSpace(backend, [0.0, -1.0], 1.0, "float32")
    moved = space.to(other_backend)
    assert moved.backend is other_backend
    assert other_backend.dtype_name(moved.dtype) == "float32"
    np.testing.assert_array_equal(to_numpy(moved.low), [0.0, -1.0])
    if other_backend is backend:
        assert moved is space


def test_spaces_are_unhashable(backend):
    with pytest.raises(TypeError):
        hash(BoxSpace(backend, 0, 1, "float32"))
