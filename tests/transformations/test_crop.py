"""CropTransformation: keep ``[start, end)`` of each of the trailing axes."""

from __future__ import annotations

import numpy as np
import pytest
from _transformation_contract import Case, NonInvertibleContract, to_numpy

from unibatch.backends import backend_from_name
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import BinarySpace, BoxSpace, DictSpace
from unibatch.transformations import CropTransformation


class TestImageCHW(NonInvertibleContract):
    def make_case(self, backend):
        source = BoxSpace(backend, 0, 255, "uint8", shape=(2, 3, 4))
        samples = [
            np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
            np.arange(124, 100, -1, dtype=np.uint8).reshape(2, 3, 4),
        ]
        expected = [s[:, 1:3, 1:4] for s in samples]
        target = BoxSpace(backend, 0, 255, "uint8", shape=(2, 2, 3))
        return Case(CropTransformation([1, 1], [3, 4]), source, samples, expected, target=target)


class TestPerElementBounds(NonInvertibleContract):
    """Bounds that differ along the cropped axis are cropped with the values."""

    def make_case(self, backend):
        low = np.arange(6, dtype=np.float32).reshape(2, 3)
        source = BoxSpace(backend, low, low + 10, "float32")
        samples = [low + 1, low + 5.5]
        expected = [s[:, 1:3] for s in samples]
        target = BoxSpace(backend, low[:, 1:3], low[:, 1:3] + 10, "float32")
        return Case(CropTransformation([1], [3]), source, samples, expected, target=target)


class TestBinary(NonInvertibleContract):
    def make_case(self, backend):
        samples = [np.array([True, False, True, True]), np.array([False, True, False, False])]
        expected = [s[1:3] for s in samples]
        return Case(
            CropTransformation([1], [3]),
            BinarySpace(backend, (4,)),
            samples,
            expected,
            target=BinarySpace(backend, (2,)),
        )


# ---------------------------------------------------------------------- specifics
def test_config():
    assert CropTransformation((0, 2), (np.int64(3), 4)).config() == {"start": [0, 2], "end": [3, 4]}


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ([2], [2], "0 <= start < end"),
        ([3], [1], "0 <= start < end"),
        ([-1], [2], "0 <= start < end"),
        ([0, 0], [1], "one non-zero length"),
        ([], [], "one non-zero length"),
    ],
)
def test_bad_start_end_are_rejected(start, end, message):
    with pytest.raises(SpaceMismatchError, match=message):
        CropTransformation(start, end)


@pytest.mark.parametrize(
    ("start", "end", "shape"),
    [([0], [5], (3,)), ([0, 1], [2, 4], (3, 3)), ([0, 0], [1, 1], (3,)), ([0], [1], ())],
    ids=["end-past-size", "second-axis-past-size", "more-axes-than-rank", "scalar"],
)
def test_crop_out_of_range_is_rejected(backend, start, end, shape):
    source = BoxSpace(backend, 0.0, 1.0, "float32", shape=shape)
    data = backend.from_numpy(np.zeros(shape, np.float32))
    t = CropTransformation(start, end)
    with pytest.raises(SpaceMismatchError, match=r"CropTransformation end \[.*\] does not fit trailing shape"):
        t.get_target_space_from_source(source)
    with pytest.raises(SpaceMismatchError, match="does not fit trailing shape"):
        t.transform(source, data)


def test_wrong_space_type_is_rejected(backend):
    source = DictSpace(backend, {"a": BoxSpace(backend, 0.0, 1.0, "float32", shape=(3,))})
    data = {"a": backend.from_numpy(np.zeros(3, np.float32))}
    t = CropTransformation([0], [1])
    with pytest.raises(SpaceMismatchError, match="crops a BoxSpace or BinarySpace, got DictSpace"):
        t.get_target_space_from_source(source)
    with pytest.raises(SpaceMismatchError, match="crops a BoxSpace or BinarySpace, got DictSpace"):
        t.transform(source, data)


def test_crop_of_reversed_numpy_view_on_torch():
    """Regression: a reversed (negative-stride) NumPy sample reaches a torch crop (it is copied)."""
    pytest.importorskip("torch")
    torch_backend = backend_from_name("torch")
    sample = np.arange(6, dtype=np.float32)[::-1]
    source = BoxSpace(torch_backend, 0.0, 10.0, "float32", shape=(6,))
    result = CropTransformation([1], [3]).transform(source, torch_backend.from_numpy(sample))
    np.testing.assert_array_equal(to_numpy(result), [4.0, 3.0])
