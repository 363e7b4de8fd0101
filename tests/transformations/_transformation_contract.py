"""Conformance suite every transformation must pass, subclassed once per case.

A subclass defines ``make_case(backend) -> Case``: a transformation, its source space and a few
NumPy samples with their hand-computed transformed values. The suite then checks, on every
backend (the ``backend`` fixture of ``tests/conftest.py``):

- the target space (when the case states it) and that of ``batch_space(source, 1)``;
- values, dtypes and membership of the results in the target space;
- the same per-sample results with 0, 1 and 2 leading batch axes, and when the source space
  passed is ``batch_space(source, 1)``: data ``(1, *shape)`` and ``(2, n, *shape)``;
- the JSON round trip (``allow_nan=False``): equal transformation, same output;
- the inverse (:class:`InvertibleContract`) or its absence (:class:`NonInvertibleContract`).

Samples are trees (dicts) of NumPy arrays for DictSpace cases; expected arrays carry the
intended dtype (``float64``/``int64`` become 32-bit on JAX). Shapes are few on purpose: JAX
compiles every operation once per operand shape, which dominates the run time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optree
import pytest

from unibatch.backends import get_backend
from unibatch.errors import UnsupportedOperationError
from unibatch.spaces import BoxSpace, DictSpace, Space, batch_space
from unibatch.transformations import (
    DataTransformation,
    json_to_transformation,
    transformation_to_json,
)


# ---------------------------------------------------------------------- helpers
def to_numpy(x: Any) -> np.ndarray:
    return get_backend(x).to_numpy(x)


def tree_to_numpy(tree: Any) -> Any:
    return optree.tree_map(to_numpy, tree)


def tree_to_backend(backend: Any, tree: Any) -> Any:
    return optree.tree_map(lambda a: backend.from_numpy(np.asarray(a)), tree)


def stack(trees: list[Any]) -> Any:
    """NumPy trees stacked along a new leading axis."""
    return optree.tree_map(lambda *leaves: np.stack(leaves), *trees)


def with_batch_axes(samples: list[Any], leading: int) -> Any:
    """``samples`` with ``leading`` batch axes: 0 -> the first sample, 1 -> all stacked,
    2 -> ``(2, n)``: the stack and the reversed stack."""
    if leading == 0:
        return samples[0]
    if leading == 1:
        return stack(samples)
    return stack([stack(samples), stack(samples[::-1])])


def assert_tree_close(actual: Any, expected: Any, *, atol: float = 1e-6, rtol: float = 1e-6) -> None:
    """Backend results equal NumPy expectations: exact for bool/int leaves, close for floats."""
    actual_leaves, actual_spec = optree.tree_flatten(tree_to_numpy(actual))
    expected_leaves, expected_spec = optree.tree_flatten(expected)
    assert actual_spec == expected_spec
    for got, want in zip(actual_leaves, expected_leaves):
        want = np.asarray(want)
        assert got.shape == want.shape
        if want.dtype.kind in "biu":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)


def assert_tree_dtypes(backend: Any, actual: Any, expected: Any) -> None:
    """Each result leaf has the dtype of its expectation, as the backend spells it."""
    actual_leaves, _ = optree.tree_flatten(actual)
    expected_leaves, _ = optree.tree_flatten(expected)
    for got, want in zip(actual_leaves, expected_leaves):
        want_name = backend.dtype_name(backend.as_dtype(np.asarray(want).dtype))
        assert backend.dtype_name(got.dtype) == want_name


def assert_spaces_close(actual: Space, expected: Space) -> None:
    """Same structure, shapes and dtypes; box bounds equal up to float rounding."""
    assert type(actual) is type(expected)
    if isinstance(expected, DictSpace):
        assert list(actual.keys()) == list(expected.keys())
        for key in expected:
            assert_spaces_close(actual[key], expected[key])
    elif isinstance(expected, BoxSpace):
        assert actual.shape == expected.shape
        assert actual.backend.dtype_name(actual.dtype) == expected.backend.dtype_name(expected.dtype)
        for got, want in zip(actual.host_bounds(), expected.host_bounds()):
            np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-6)
    else:
        assert actual == expected


@dataclass
class Case:
    transformation: DataTransformation
    source: Space
    samples: list[Any]
    """At least two distinct NumPy values (or trees) of ``source``."""
    expected: list[Any]
    """The transformed ``samples``, computed by hand in NumPy."""
    target: Space | None = None
    """The expected target space (compared with ``==``), when the case states it."""
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------- the suite
class TransformationContract:
    """Subclass and define :meth:`make_case`; mix in one of the inverse contracts below."""

    atol = 1e-6
    rtol = 1e-6

    def make_case(self, backend: Any) -> Case:
        raise NotImplementedError

    @pytest.fixture
    def case(self, backend: Any) -> Case:
        return self.make_case(backend)

    def test_target_space(self, case: Case) -> None:
        target = case.transformation.get_target_space_from_source(case.source)
        if case.target is not None:
            assert target == case.target
        assert target.backend is case.source.backend

    def test_target_of_batch_space_is_batch_of_target(self, case: Case) -> None:
        t = case.transformation
        batched_target = t.get_target_space_from_source(batch_space(case.source, 1))
        assert batched_target == batch_space(t.get_target_space_from_source(case.source), 1)

    def test_values_dtypes_and_membership(self, backend: Any, case: Case) -> None:
        target = case.transformation.get_target_space_from_source(case.source)
        for sample, expected in zip(case.samples, case.expected):
            result = case.transformation.transform(case.source, tree_to_backend(backend, sample))
            assert_tree_close(result, expected, atol=self.atol, rtol=self.rtol)
            assert_tree_dtypes(backend, result, expected)
            assert result in target

    @pytest.mark.parametrize("leading", [1, 2], ids=["1-batch-axis", "2-batch-axes"])
    def test_leading_batch_axes(self, backend: Any, case: Case, leading: int) -> None:
        data = tree_to_backend(backend, with_batch_axes(case.samples, leading))
        result = case.transformation.transform(case.source, data)
        expected = with_batch_axes(case.expected, leading)
        assert_tree_close(result, expected, atol=self.atol, rtol=self.rtol)
        assert_tree_dtypes(backend, result, expected)

    @pytest.mark.parametrize("leading", [0, 1], ids=["batch-of-1", "extra-axis-and-batch-of-n"])
    def test_source_is_batch_space_of_one(self, backend: Any, case: Case, leading: int) -> None:
        """With ``batch_space(source, 1)``: data of exactly that space, ``(1, *shape)``, and data
        ``(2, n, *shape)`` with one more leading axis whose size-1 batch axis broadcasts to n."""
        source = batch_space(case.source, 1)
        if leading == 0:
            data, want = stack(case.samples[:1]), stack(case.expected[:1])
        else:
            data, want = with_batch_axes(case.samples, 2), with_batch_axes(case.expected, 2)
        result = case.transformation.transform(source, tree_to_backend(backend, data))
        assert_tree_close(result, want, atol=self.atol, rtol=self.rtol)
        assert_tree_dtypes(backend, result, want)

    def test_json_round_trip(self, backend: Any, case: Case) -> None:
        t = case.transformation
        text = json.dumps(transformation_to_json(t), allow_nan=False)
        rebuilt = json_to_transformation(json.loads(text))
        assert type(rebuilt) is type(t)
        assert rebuilt == t
        assert json.loads(json.dumps(transformation_to_json(rebuilt), allow_nan=False)) == json.loads(text)
        data = tree_to_backend(backend, with_batch_axes(case.samples, 1))
        assert_tree_close(
            rebuilt.transform(case.source, data), tree_to_numpy(t.transform(case.source, data)), atol=0, rtol=0
        )


class InvertibleContract(TransformationContract):
    """The inverse recovers the samples: exactly for integer leaves, closely for floats."""

    inverse_atol = 1e-5
    exact_inverse_space = True
    """Whether the inverse's target space equals the source space (else: equal up to rounding)."""

    def test_has_inverse(self, case: Case) -> None:
        assert case.transformation.has_inverse is True

    @pytest.mark.parametrize("leading", [0, 1], ids=["sample", "batch"])
    def test_inverse_recovers_data(self, backend: Any, case: Case, leading: int) -> None:
        t = case.transformation
        target = t.get_target_space_from_source(case.source)
        inverse = t.direction_inverse(case.source)
        original = with_batch_axes(case.samples, leading)
        recovered = inverse.transform(target, t.transform(case.source, tree_to_backend(backend, original)))
        assert_tree_close(recovered, original, atol=self.inverse_atol, rtol=0)
        assert_tree_dtypes(backend, recovered, original)

    def test_inverse_target_space_is_source(self, case: Case) -> None:
        t = case.transformation
        target = t.get_target_space_from_source(case.source)
        back = t.direction_inverse(case.source).get_target_space_from_source(target)
        if self.exact_inverse_space:
            assert back == case.source
        else:
            assert_spaces_close(back, case.source)

    def test_inverse_is_serializable(self, backend: Any, case: Case) -> None:
        inverse = case.transformation.direction_inverse(case.source)
        text = json.dumps(transformation_to_json(inverse), allow_nan=False)
        assert json_to_transformation(json.loads(text)) == inverse


class NonInvertibleContract(TransformationContract):
    def test_has_no_inverse(self, case: Case) -> None:
        assert case.transformation.has_inverse is False
        with pytest.raises(UnsupportedOperationError, match="has no inverse"):
            case.transformation.direction_inverse(case.source)
