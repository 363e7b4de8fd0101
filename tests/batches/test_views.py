"""Behaviour specific to each view: routing, write-through, conversion, errors, lifecycle."""

from __future__ import annotations

import numpy as np
import pytest
from tests.batches.sources import robot_batch, robot_sample
from tests.conftest import to_numpy

from unibatch import BoxSpace, DictSpace
from unibatch.backends import backend_from_name, get_backend
from unibatch.batches import (
    BatchBase,
    CombinedBatch,
    SubIndexedBatch,
    SubItemBatch,
    ToBackendOrDeviceBatch,
    TransformedBatch,
)
from unibatch.errors import ReadOnlyError, SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import concatenate
from unibatch.testing.conformance import assert_tree_equal
from unibatch.testing.memory_batch import InMemoryBatch
from unibatch.transformations import CropTransformation, DictTransformation, RescaleTransformation


def states(batch, index=slice(None)):
    return to_numpy(batch.get_at(index)["obs"]["state"])[..., 0].tolist()


# ---------------------------------------------------------------------- CombinedBatch
def test_combined_keeps_request_order_and_sees_growth_elsewhere(backend):
    first, _ = robot_batch(backend, 2)
    second, _ = robot_batch(backend, 2, start=10)
    combined = CombinedBatch([first, second])
    assert states(combined, [3, 0, 2, 1]) == [11, 0, 10, 1]
    first.extend(concatenate(first.single_space, [robot_sample(backend, 5)]))  # through another handle
    assert len(combined) == 5
    assert states(combined) == [0, 1, 5, 10, 11]
    _, metadata = combined.get_at_with_metadata([4, 2])
    assert to_numpy(metadata["batch_index"]).tolist() == [1, 0]


def test_combined_writes_route_per_child_and_extend_goes_last(backend):
    first, _ = robot_batch(backend, 2)
    second, _ = robot_batch(backend, 2, start=10)
    combined = CombinedBatch([first, second])
    combined.set_at([3, 0], concatenate(combined.single_space, [robot_sample(backend, 30), robot_sample(backend, 40)]))
    assert states(first) == [40, 1] and states(second) == [10, 30]
    combined.extend(concatenate(combined.single_space, [robot_sample(backend, 50)]))
    assert len(second) == 3 and states(combined, -1) == 50
    flat = combined.get_flattened_at([0])
    combined.set_flattened_at([3], flat)
    assert states(second, 1) == 40
    combined.remove_at([0, 4])
    assert states(combined) == [1, 10, 40]


def test_combined_rejects_mismatched_children(backend, other_backend):
    first, _ = robot_batch(backend, 1)
    other = InMemoryBatch(DictSpace(backend, {"x": BoxSpace(backend, 0, 1, "float32")}))
    with pytest.raises(SpaceMismatchError, match=r"batches\[1\] has space"):
        CombinedBatch([first, other])
    if other_backend is not backend:
        foreign, _ = robot_batch(other_backend, 1)
        with pytest.raises(SpaceMismatchError, match="on backend"):
            CombinedBatch([first, foreign])
    with pytest.raises(SpaceMismatchError, match="at least one"):
        CombinedBatch([])


def test_views_do_not_close_their_sources(backend):
    class Closing(InMemoryBatch):
        closed = False

        def close(self):
            self.closed = True

    source = Closing(robot_batch(backend, 2)[0].single_space)
    with CombinedBatch([source]) as combined, SubIndexedBatch(source, ...) as view:
        assert len(combined) == len(view) == 0
    TransformedBatch(source, DictTransformation({})).close()
    assert not source.closed
    with source:
        pass
    assert source.closed


# ---------------------------------------------------------------------- SubIndexedBatch
def test_sub_index_forms(backend):
    batch, _ = robot_batch(backend, 6)
    assert states(batch.get_slice(-2)) == [4]
    assert states(batch.get_slice(np.int64(1))) == [1]
    assert states(batch.get_slice(backend.asarray([5, 0]))) == [5, 0]
    assert states(batch.get_slice(slice(None, None, 2)).get_slice([-1])) == [4]
    view = batch.get_slice(slice(1, 3))
    view.set_at(0, robot_sample(backend, 99))
    assert states(batch, 1) == 99
    with pytest.raises(UnsupportedOperationError, match="live view"):
        view.extend(concatenate(batch.single_space, [robot_sample(backend, 1)]))
    live = batch.get_slice(...)
    live.extend(concatenate(batch.single_space, [robot_sample(backend, 7)]))
    assert len(batch) == 7 and len(live) == 7


# ---------------------------------------------------------------------- SubItemBatch
def test_column_views(backend):
    first, samples = robot_batch(backend, 3)
    combined = CombinedBatch([first])
    column = combined.get_column(["obs", "image"])
    assert isinstance(column, SubItemBatch)
    data, metadata = column.get_at_with_metadata([2, 0])
    assert to_numpy(data)[:, 0, 0].tolist() == [2, 0]
    assert to_numpy(metadata["batch_index"]).tolist() == [0, 0]
    assert tuple(column.get_flattened_at([1]).shape) == (1, 4)
    assert_tree_equal(first.get_column("done").get_at(2), samples[2]["done"])
    with pytest.raises(SpaceMismatchError, match="column 'obs/missing' does not exist"):
        first.get_column(["obs", "missing"])
    with pytest.raises(ReadOnlyError):
        column.set_at(0, data[0])


# ---------------------------------------------------------------------- TransformedBatch
def test_transformed_reads_writes_and_metadata(backend):
    space = DictSpace(backend, {"x": BoxSpace(backend, 0, 10, "float32", shape=(2,))})
    meta_space = DictSpace(backend, {"m": BoxSpace(backend, 0, 4, "float32", shape=(2,))})
    data = {"x": backend.asarray(np.array([[0, 10], [5, 5]], np.float32))}
    metadata = {"m": backend.asarray(np.array([[0, 4], [2, 2]], np.float32))}
    source = InMemoryBatch(space, data, meta_space, metadata)
    rescale = DictTransformation({"x": RescaleTransformation(0.0, 1.0)})
    view = TransformedBatch(source, rescale, DictTransformation({"m": RescaleTransformation(-1.0, 1.0)}))
    values, meta = view.get_at_with_metadata(slice(None))
    assert to_numpy(values["x"]).tolist() == [[0.0, 1.0], [0.5, 0.5]]
    assert to_numpy(meta["m"]).tolist() == [[-1.0, 1.0], [0.0, 0.0]]
    view.set_at(1, {"x": backend.asarray(np.array([0.2, 0.8], np.float32))})
    np.testing.assert_allclose(to_numpy(source.get_at(1)["x"]), [2.0, 8.0], rtol=1e-6)
    cropped = TransformedBatch(source, DictTransformation({"x": CropTransformation([0], [1])}))
    assert not cropped.is_mutable
    with pytest.raises(ReadOnlyError):
        cropped.set_at(0, {"x": backend.asarray(np.array([1.0], np.float32))})


# ---------------------------------------------------------------------- ToBackendOrDeviceBatch
def test_backend_conversion_both_ways(backend, other_backend):
    batch, samples = robot_batch(backend, 3)
    view = ToBackendOrDeviceBatch(batch, other_backend, other_backend.default_device)
    value = view.get_at(other_backend.asarray([2, 0], dtype=other_backend.default_index_dtype))
    assert get_backend(value["obs"]["state"]) is other_backend
    new = robot_sample(other_backend, 64)
    view.set_at(0, new)
    assert get_backend(batch.get_at(0)["done"]) is backend
    assert states(batch, 0) == 64
    view.extend(concatenate(view.single_space, [robot_sample(other_backend, 65)]))
    assert len(batch) == 4 and states(batch, 3) == 65


# ---------------------------------------------------------------------- BatchBase
class ReadOnlySource(BatchBase):
    def __init__(self, backend):
        super().__init__(DictSpace(backend, {"x": BoxSpace(backend, 0, 9, "float32")}))

    def __len__(self):
        return 2

    def _get(self, index, with_metadata):
        backend = self.backend
        value = (
            backend.asarray(np.float32(index))
            if isinstance(index, int)
            else backend.xp.astype(index, backend.as_dtype("float32"))
        )
        return {"x": value}, None


def test_one_primitive_gives_every_read_and_named_errors(backend):
    source = ReadOnlySource(backend)
    assert to_numpy(source.get_flattened_at([1, 0])).tolist() == [[1.0], [0.0]]
    assert source.get_at_with_metadata(1)[1] is None
    value = {"x": backend.asarray(np.float32(1))}
    with pytest.raises(UnsupportedOperationError, match="does not support set_at"):
        source.set_at(0, value)
    with pytest.raises(UnsupportedOperationError, match="does not support extend"):
        source.append(value)
    with pytest.raises(UnsupportedOperationError, match="remove_at"):
        del source[0]
    assert [float(to_numpy(item["x"])) for item in source] == [0.0, 1.0]


def test_failed_writes_leave_data_untouched(backend):
    batch, _ = robot_batch(backend, 3)
    before = to_numpy(batch.get_flattened_at(slice(None)))
    bad = robot_sample(backend, 5)
    bad["obs"]["image"] = backend.zeros((3, 3), dtype=backend.as_dtype("uint8"))
    with pytest.raises(SpaceMismatchError, match=r"obs/image: expected shape \(2, 2\), got \(3, 3\)"):
        batch.set_at(0, bad)
    with pytest.raises(SpaceMismatchError, match="batch of 2 values"):
        batch.set_at([0, 1], concatenate(batch.single_space, [robot_sample(backend, 1)]))
    with pytest.raises(SpaceMismatchError, match="flat value of shape"):
        batch.set_flattened_at(0, backend.zeros((3,)))
    with pytest.raises(SpaceMismatchError, match="obs/image"):
        batch.append(bad)
    np.testing.assert_array_equal(to_numpy(batch.get_flattened_at(slice(None))), before)
    assert len(batch) == 3


def test_flattened_writes_and_appends(backend):
    batch, _ = robot_batch(backend, 2)
    flat = batch.get_flattened_at([1, 0])
    batch.set_flattened_at([0, 1], flat)
    assert states(batch) == [1, 0]
    batch.append_flattened(flat[0])
    batch.extend_flattened(flat)
    assert states(batch) == [1, 0, 1, 1, 0]


def test_extend_from_in_chunks_with_progress(backend, capsys):
    source, _ = robot_batch(backend, 10)
    target, _ = robot_batch(backend, 0)
    target.extend_from(source, chunk_size=4, tqdm=True)
    assert states(target) == list(range(10))
    assert "10/10" in capsys.readouterr().err
    numpy_target, _ = robot_batch(backend_from_name("numpy"), 0)
    with pytest.raises(ValueError, match="chunk_size must be positive"):
        numpy_target.extend_from(source, chunk_size=0)


def test_index_lists_mixing_bools_and_ints_are_refused(backend):
    from unibatch.errors import InvalidIndexError

    batch, _ = robot_batch(backend, 3)
    with pytest.raises(InvalidIndexError, match="mixes bools and integers"):
        batch.get_at([1, True])
    assert states(batch, [True, False, True]) == [0, 2]
