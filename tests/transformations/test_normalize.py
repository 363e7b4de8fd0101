"""NormalizeTransformation: ``(x - mean) / std``, bounds mapped the same way."""

from __future__ import annotations

import numpy as np
import pytest
from _transformation_contract import Case, InvertibleContract, to_numpy

from unibatch.errors import SpaceMismatchError
from unibatch.spaces import BinarySpace, BoxSpace
from unibatch.transformations import NormalizeTransformation


class TestStateVector(InvertibleContract):
    def make_case(self, backend):
        source = BoxSpace(backend, -10.0, 10.0, "float32", shape=(3,))
        mean, std = np.array([1.0, 2.0, 0.0]), np.array([2.0, 4.0, 0.5])
        samples = [np.array([3.0, 2.0, 0.25], np.float32), np.array([-10.0, 10.0, 10.0], np.float32)]
        expected = [((s - mean) / std).astype(np.float32) for s in samples]
        target = BoxSpace(backend, [-5.5, -3.0, -20.0], [4.5, 2.0, 20.0], "float32")
        return Case(NormalizeTransformation(mean, std), source, samples, expected, target=target)


class TestIntegerSource(InvertibleContract):
    """Integer sources normalise to float32; the way back rounds to the exact integers."""

    def make_case(self, backend):
        source = BoxSpace(backend, 0, 10, "int64", shape=(3,))
        samples = [np.array([0, 5, 10], np.int64), np.array([1, 9, 4], np.int64)]
        expected = [((s - 5.0) / 2.5).astype(np.float32) for s in samples]
        target = BoxSpace(backend, -2.0, 2.0, "float32", shape=(3,))
        return Case(NormalizeTransformation(5.0, 2.5), source, samples, expected, target=target)


class TestIntegerSourceInexactScale(InvertibleContract):
    """std = 7: the float bounds are inexact, yet the inverse's target must keep 0 and 10."""

    def make_case(self, backend):
        source = BoxSpace(backend, 0, 10, "int32", shape=(3,))
        samples = [np.array([0, 10, 3], np.int32), np.array([9, 1, 10], np.int32)]
        expected = [((s - 1.0) / 7.0).astype(np.float32) for s in samples]
        return Case(NormalizeTransformation(1.0, 7.0), source, samples, expected)


class TestUnboundedFloat64(InvertibleContract):
    """Infinite bounds stay infinite; float64 is kept (float32 on JAX)."""

    def make_case(self, backend):
        source = BoxSpace(backend, -np.inf, np.inf, "float64", shape=(3,))
        mean = np.array([0.5, -1.0, 0.0])
        samples = [np.array([0.5, 1.0, -2.0], np.float64), np.array([-3.25, 1e3, 0.125], np.float64)]
        expected = [(s - mean) / 0.25 for s in samples]
        target = BoxSpace(backend, -np.inf, np.inf, "float64", shape=(3,))
        return Case(NormalizeTransformation(mean, 0.25), source, samples, expected, target=target)


class TestSourceBoundsMapInsideTarget(InvertibleContract):
    """The images of the source bounds lie inside the target bounds (float32 rounding)."""

    exact_inverse_space = False

    def make_case(self, backend):
        source = BoxSpace(backend, 0.1, 0.7, "float32", shape=(3,))
        samples = [np.array([0.1, 0.7, 0.4], np.float32), np.array([0.7, 0.1, 0.25], np.float32)]
        expected = [((s.astype(np.float64) - 0.3) / 0.7).astype(np.float32) for s in samples]
        return Case(NormalizeTransformation(0.3, 0.7), source, samples, expected)


# ---------------------------------------------------------------------- specifics
def test_per_channel_mean_and_std_broadcast_over_chw(backend):
    """Mean and std of shape ``(C, 1, 1)``: values, per-channel target bounds and inverse."""
    source = BoxSpace(backend, 0.0, 1.0, "float32", shape=(2, 1, 2))
    mean, std = np.array([0.5, 0.25]).reshape(2, 1, 1), np.array([0.5, 0.25]).reshape(2, 1, 1)
    t = NormalizeTransformation(mean.tolist(), std.tolist())
    image = np.array([[[0.0, 1.0]], [[0.5, 0.25]]], np.float32)
    result = t.transform(source, backend.from_numpy(image))
    np.testing.assert_array_equal(to_numpy(result), [[[-1.0, 1.0]], [[1.0, 0.0]]])
    target = t.get_target_space_from_source(source)
    assert target == BoxSpace(backend, [[[-1.0]], [[-1.0]]], [[[1.0]], [[3.0]]], "float32", shape=(2, 1, 2))
    back = t.direction_inverse(source).transform(target, result)
    np.testing.assert_allclose(to_numpy(back), image, atol=1e-6)


def test_integer_new_dtype_rounds_values_and_bounds_alike(backend):
    """With an integer result, bounds are rounded to nearest as the values are."""
    source = BoxSpace(backend, 0.0, 10.0, "float32", shape=(3,))
    t = NormalizeTransformation(0.0, 10.0 / 3.6, "int32")
    target = t.get_target_space_from_source(source)
    result = t.transform(source, backend.from_numpy(np.array([10.0, 0.0, 5.0], np.float32)))
    np.testing.assert_array_equal(to_numpy(result), [4, 0, 2])  # 3.6 -> 4, 1.8 -> 2
    assert backend.dtype_name(result.dtype) == "int32"
    assert target == BoxSpace(backend, 0, 4, "int32", shape=(3,))
    assert result in target


def test_default_dtype(backend):
    integer = BoxSpace(backend, 0, 10, "uint8", shape=(1,))
    floating = BoxSpace(backend, 0.0, 1.0, "float64", shape=(1,))
    t = NormalizeTransformation(0.0, 1.0)
    assert backend.dtype_name(t.get_target_space_from_source(integer).dtype) == "float32"
    assert backend.dtype_name(t.get_target_space_from_source(floating).dtype) == backend.dtype_name(
        backend.as_dtype("float64")
    )


def test_explicit_new_dtype(backend):
    source = BoxSpace(backend, 0.0, 1.0, "float32", shape=(2,))
    t = NormalizeTransformation(0.5, 0.5, np.float64)
    assert t.new_dtype == "float64"
    result = t.transform(source, backend.from_numpy(np.array([0.0, 1.0], np.float32)))
    assert backend.dtype_name(result.dtype) == backend.dtype_name(backend.as_dtype("float64"))
    np.testing.assert_array_equal(to_numpy(result), [-1.0, 1.0])


@pytest.mark.parametrize("std", [0.0, -1.0, [1.0, 0.0], [2.0, -0.5], float("nan"), [1.0, float("nan")]])
def test_std_must_be_positive(std):
    with pytest.raises(SpaceMismatchError, match="std > 0"):
        NormalizeTransformation(0.0, std)


def test_wrong_space_type_is_rejected(backend):
    source = BinarySpace(backend, (2,))
    t = NormalizeTransformation(0.0, 1.0)
    with pytest.raises(SpaceMismatchError, match="NormalizeTransformation transforms a BoxSpace, got BinarySpace"):
        t.get_target_space_from_source(source)
    with pytest.raises(SpaceMismatchError, match="transforms a BoxSpace"):
        t.transform(source, backend.from_numpy(np.zeros(2, bool)))
    with pytest.raises(SpaceMismatchError, match="transforms a BoxSpace"):
        t.direction_inverse(source)


def test_mean_that_does_not_broadcast_is_rejected(backend):
    source = BoxSpace(backend, 0.0, 1.0, "float32", shape=(3,))
    with pytest.raises(SpaceMismatchError, match=r"shape \(2,\) does not broadcast to shape \(3,\)"):
        NormalizeTransformation([0.0, 1.0], 1.0).get_target_space_from_source(source)


def test_direction_inverse_needs_the_source_space():
    with pytest.raises(SpaceMismatchError, match="needs the source space"):
        NormalizeTransformation(0.0, 1.0).direction_inverse()
