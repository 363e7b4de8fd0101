"""RescaleTransformation: linear map of ``[low, high]`` onto ``[new_low, new_high]``."""

from __future__ import annotations

import numpy as np
import pytest
from _transformation_contract import Case, InvertibleContract, to_numpy

from unibatch.errors import SpaceMismatchError
from unibatch.spaces import BinarySpace, BoxSpace
from unibatch.transformations import RescaleTransformation


class TestUint8ToUnitFloat(InvertibleContract):
    """The usual image case; the uint8 round trip is exact."""

    def make_case(self, backend):
        source = BoxSpace(backend, 0, 255, "uint8", shape=(2, 2))
        samples = [np.array([[0, 51], [255, 102]], np.uint8), np.array([[17, 200], [1, 254]], np.uint8)]
        return Case(
            RescaleTransformation(0.0, 1.0, "float32"),
            source,
            samples,
            [(s / 255.0).astype(np.float32) for s in samples],
            target=BoxSpace(backend, 0.0, 1.0, "float32", shape=(2, 2)),
        )


class TestPerElementBounds(InvertibleContract):
    """Bounds differ per element; the third element has ``low == high`` and maps to new_low."""

    def make_case(self, backend):
        source = BoxSpace(backend, [-1.0, 0.0, 10.0], [1.0, 4.0, 10.0], "float32")
        transformation = RescaleTransformation([0.0, -2.0, 5.0], [10.0, 2.0, 7.0])
        samples = [np.array([-1.0, 4.0, 10.0], np.float32), np.array([0.5, 1.0, 10.0], np.float32)]
        expected = [np.array([0.0, 2.0, 5.0], np.float32), np.array([7.5, -1.0, 5.0], np.float32)]
        target = BoxSpace(backend, [0.0, -2.0, 5.0], [10.0, 2.0, 7.0], "float32")
        return Case(transformation, source, samples, expected, target=target)


class TestIntToInt(InvertibleContract):
    """``y = 2x - 10`` between integer boxes: exact both ways; int64 is int32 on JAX."""

    def make_case(self, backend):
        source = BoxSpace(backend, 0, 10, "int64", shape=(3,))
        samples = [np.array([0, 5, 10], np.int64), np.array([3, 7, 1], np.int64)]
        expected = [np.array([-10, 0, 10], np.int32), np.array([-4, 4, -8], np.int32)]
        target = BoxSpace(backend, -10, 10, "int32", shape=(3,))
        return Case(RescaleTransformation(-10, 10, "int32"), source, samples, expected, target=target)


class TestDefaultsKeepFloat64(InvertibleContract):
    """Defaults map onto ``[-1, 1]`` in the source dtype (float64; float32 on JAX)."""

    def make_case(self, backend):
        source = BoxSpace(backend, -2.0, 2.0, "float64", shape=(3,))
        samples = [np.array([-2.0, 0.5, 2.0], np.float64), np.array([2.0, -1.0, 0.25], np.float64)]
        expected = [s / 2.0 for s in samples]
        target = BoxSpace(backend, -1.0, 1.0, "float64", shape=(3,))
        return Case(RescaleTransformation(), source, samples, expected, target=target)


# ---------------------------------------------------------------------- specifics
def test_integer_target_is_rounded_to_nearest(backend):
    source = BoxSpace(backend, 0.0, 1.0, "float32", shape=(3,))
    t = RescaleTransformation(0, 10, "uint8")
    data = backend.from_numpy(np.array([[0.04, 0.06, 0.26], [0.94, 0.51, 0.49]], np.float32))
    result = t.transform(source, data)
    assert t.get_target_space_from_source(source) == BoxSpace(backend, 0, 10, "uint8", shape=(3,))
    assert backend.dtype_name(result.dtype) == "uint8"
    np.testing.assert_array_equal(to_numpy(result), [[0, 1, 3], [9, 5, 5]])  # 0.4, 0.6, 2.6 / 9.4, 5.1, 4.9
    back = t.direction_inverse(source).transform(t.get_target_space_from_source(source), result)
    np.testing.assert_allclose(to_numpy(back), [[0.0, 0.1, 0.3], [0.9, 0.5, 0.5]], rtol=1e-6)


def test_values_outside_the_source_bounds_are_clipped(backend):
    source = BoxSpace(backend, 0.0, 10.0, "float32", shape=(3,))
    data = backend.from_numpy(np.array([-5.0, 15.0, 5.0], np.float32))
    result = RescaleTransformation(-1.0, 1.0).transform(source, data)
    np.testing.assert_array_equal(to_numpy(result), [-1.0, 1.0, 0.0])


def test_new_dtype_spellings_are_normalised():
    assert RescaleTransformation(0, 1, np.float64).new_dtype == "float64"
    assert RescaleTransformation(0, 1, "uint8").new_dtype == "uint8"
    assert RescaleTransformation(0, 1).new_dtype is None


def test_numpy_bounds_are_stored_as_python_values():
    t = RescaleTransformation(np.float32(0.5), np.array([1, 2], np.uint8))
    assert t.config() == {"new_low": 0.5, "new_high": [1, 2], "new_dtype": None}


def test_target_space_is_cached_per_source_space(backend):
    t = RescaleTransformation(0.0, 1.0, "float32")
    first = BoxSpace(backend, 0, 255, "uint8", shape=(2,))
    second = BoxSpace(backend, 0, 15, "uint8", shape=(3,))
    assert t.get_target_space_from_source(first).shape == (2,)
    assert t.get_target_space_from_source(second).shape == (3,)
    assert t.get_target_space_from_source(first).shape == (2,)


def test_unbounded_box_is_rejected(backend):
    source = BoxSpace(backend, -np.inf, np.inf, "float32", shape=(2,))
    data = backend.from_numpy(np.zeros(2, np.float32))
    with pytest.raises(SpaceMismatchError, match="needs finite bounds"):
        RescaleTransformation().get_target_space_from_source(source)
    with pytest.raises(SpaceMismatchError, match="needs finite bounds"):
        RescaleTransformation().transform(source, data)


def test_partly_unbounded_box_is_rejected(backend):
    source = BoxSpace(backend, [0.0, 0.0], [1.0, np.inf], "float32")
    with pytest.raises(SpaceMismatchError, match="needs finite bounds"):
        RescaleTransformation().get_target_space_from_source(source)


def test_wrong_space_type_is_rejected(backend):
    source = BinarySpace(backend, (2,))
    with pytest.raises(SpaceMismatchError, match="RescaleTransformation transforms a BoxSpace, got BinarySpace"):
        RescaleTransformation().get_target_space_from_source(source)
    with pytest.raises(SpaceMismatchError, match="transforms a BoxSpace"):
        RescaleTransformation().transform(source, backend.from_numpy(np.zeros(2, bool)))
    with pytest.raises(SpaceMismatchError, match="transforms a BoxSpace"):
        RescaleTransformation().direction_inverse(source)


def test_new_bounds_that_do_not_broadcast_are_rejected(backend):
    source = BoxSpace(backend, 0.0, 1.0, "float32", shape=(3,))
    with pytest.raises(SpaceMismatchError, match="does not broadcast"):
        RescaleTransformation([0.0, 0.0], [1.0, 1.0]).get_target_space_from_source(source)


def test_new_low_above_new_high_is_rejected(backend):
    source = BoxSpace(backend, 0.0, 1.0, "float32", shape=(2,))
    with pytest.raises(SpaceMismatchError, match="low <= high"):
        RescaleTransformation(1.0, 0.0).get_target_space_from_source(source)


def test_direction_inverse_needs_the_source_space():
    with pytest.raises(SpaceMismatchError, match="needs the source space"):
        RescaleTransformation().direction_inverse()
