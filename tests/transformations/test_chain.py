"""ChainedTransformation (steps in order, inverse in reverse order) and IdentityTransformation."""

from __future__ import annotations

import numpy as np
import pytest
from _transformation_contract import Case, InvertibleContract, NonInvertibleContract, to_numpy

from unibatch.errors import SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import BinarySpace, BoxSpace, DictSpace
from unibatch.transformations import (
    ChainedTransformation,
    CropTransformation,
    DictExcludeTransformation,
    DictTransformation,
    IdentityTransformation,
    NormalizeTransformation,
    RescaleTransformation,
)


class TestCropThenRescale(NonInvertibleContract):
    """The docstring example: crop an int64 vector, then rescale it to float32."""

    def make_case(self, backend):
        source = BoxSpace(backend, 0, 10, "int64", shape=(3,))
        samples = [np.array([5, 10, 0], np.int64), np.array([1, 2, 3], np.int64)]
        expected = [(s[:2] / 10.0).astype(np.float32) for s in samples]
        target = BoxSpace(backend, 0.0, 1.0, "float32", shape=(2,))
        t = ChainedTransformation([CropTransformation([0], [2]), RescaleTransformation(0.0, 1.0, "float32")])
        return Case(t, source, samples, expected, target=target)


class TestRescaleThenNormalize(InvertibleContract):
    """uint8 -> [0, 1] -> (y - 0.5) / 0.25; the inverse runs the inverses in reverse order."""

    def make_case(self, backend):
        source = BoxSpace(backend, 0, 255, "uint8", shape=(2, 2))
        samples = [np.array([[0, 51], [255, 102]], np.uint8), np.array([[17, 200], [1, 254]], np.uint8)]
        expected = [((s / 255.0 - 0.5) / 0.25).astype(np.float32) for s in samples]
        target = BoxSpace(backend, -2.0, 2.0, "float32", shape=(2, 2))
        t = ChainedTransformation([RescaleTransformation(0.0, 1.0, "float32"), NormalizeTransformation(0.5, 0.25)])
        return Case(t, source, samples, expected, target=target)


class TestDictSelectionThenPerKey(NonInvertibleContract):
    def make_case(self, backend):
        source = DictSpace(
            backend,
            {"done": BinarySpace(backend), "img": BoxSpace(backend, 0, 255, "uint8", shape=(2, 2))},
        )
        samples = [
            {"done": np.array(False), "img": np.array([[0, 51], [255, 102]], np.uint8)},
            {"done": np.array(True), "img": np.array([[17, 200], [1, 254]], np.uint8)},
        ]
        expected = [{"img": (s["img"] / 255.0).astype(np.float32)} for s in samples]
        t = ChainedTransformation(
            [
                DictExcludeTransformation(["done"]),
                DictTransformation({"img": RescaleTransformation(0.0, 1.0, "float32")}),
            ]
        )
        target = DictSpace(backend, {"img": BoxSpace(backend, 0.0, 1.0, "float32", shape=(2, 2))})
        return Case(t, source, samples, expected, target=target)


class TestIdentity(InvertibleContract):
    def make_case(self, backend):
        source = BoxSpace(backend, -1.0, 1.0, "float32", shape=(3,))
        samples = [np.array([-1.0, 0.5, 1.0], np.float32), np.array([0.25, 0.0, -0.75], np.float32)]
        return Case(IdentityTransformation(), source, samples, samples, target=source)


class TestChainOfOneIdentity(InvertibleContract):
    def make_case(self, backend):
        source = BinarySpace(backend, (2,))
        samples = [np.array([True, False]), np.array([False, False])]
        return Case(ChainedTransformation([IdentityTransformation()]), source, samples, samples, target=source)


# ---------------------------------------------------------------------- specifics
def test_target_space_is_the_composition(backend):
    source = BoxSpace(backend, 0, 255, "uint8", shape=(3, 4))
    crop, rescale = CropTransformation([1], [3]), RescaleTransformation(-1.0, 1.0, "float32")
    chain = ChainedTransformation([crop, rescale])
    expected = rescale.get_target_space_from_source(crop.get_target_space_from_source(source))
    assert chain.get_target_space_from_source(source) == expected
    assert expected == BoxSpace(backend, -1.0, 1.0, "float32", shape=(3, 2))


def test_inverse_steps_are_reversed(backend):
    source = BoxSpace(backend, 0, 255, "uint8", shape=(2, 2))
    rescale, normalize = RescaleTransformation(0.0, 1.0, "float32"), NormalizeTransformation(0.5, 0.25)
    inverse = ChainedTransformation([rescale, normalize]).direction_inverse(source)
    middle = rescale.get_target_space_from_source(source)
    assert inverse == ChainedTransformation([normalize.direction_inverse(middle), rescale.direction_inverse(source)])
    target = ChainedTransformation([rescale, normalize]).get_target_space_from_source(source)
    result = inverse.transform(target, backend.from_numpy(np.array([[-2.0, 2.0], [0.0, 1.0]], np.float32)))
    np.testing.assert_array_equal(to_numpy(result), [[0, 255], [128, 191]])  # 127.5 -> 128, 191.25 -> 191


def test_has_inverse_needs_every_step():
    assert ChainedTransformation([IdentityTransformation(), RescaleTransformation()]).has_inverse
    assert not ChainedTransformation([RescaleTransformation(), CropTransformation([0], [1])]).has_inverse


def test_non_invertible_step_makes_the_chain_non_invertible(backend):
    source = BoxSpace(backend, 0.0, 1.0, "float32", shape=(3,))
    chain = ChainedTransformation([RescaleTransformation(), CropTransformation([0], [1])])
    with pytest.raises(UnsupportedOperationError, match="CropTransformation has no inverse"):
        chain.direction_inverse(source)


def test_empty_chain_is_rejected():
    with pytest.raises(SpaceMismatchError, match="needs at least one transformation"):
        ChainedTransformation([])


def test_inverse_needs_the_source_space():
    with pytest.raises(SpaceMismatchError, match="needs the source space"):
        ChainedTransformation([IdentityTransformation()]).direction_inverse()


def test_identity_inverse_needs_no_space():
    assert IdentityTransformation().direction_inverse() == IdentityTransformation()


def test_bad_step_input_is_reported_by_that_step(backend):
    source = BinarySpace(backend, (3,))
    chain = ChainedTransformation([CropTransformation([0], [2]), RescaleTransformation()])
    with pytest.raises(SpaceMismatchError, match="RescaleTransformation transforms a BoxSpace, got BinarySpace"):
        chain.get_target_space_from_source(source)


def test_close_reaches_every_step():
    closed = []

    class Recording(IdentityTransformation):
        def close(self) -> None:
            closed.append(self)

    first, second = Recording(), Recording()
    ChainedTransformation([first, DictTransformation({"a": second})]).close()
    assert closed == [first, second]
