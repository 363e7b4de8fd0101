"""Slice- and frame-stacked windows: hand-checked examples at episode boundaries and data ends."""

from __future__ import annotations

import numpy as np
import pytest
from tests.batches.sources import robot_batch
from tests.conftest import to_numpy

from unibatch import BinarySpace, BoxSpace, DictSpace
from unibatch.batches import BatchBase, CombinedBatch, FrameStackedBatch, SliceStackedBatch
from unibatch.errors import ReadOnlyError, SpaceMismatchError
from unibatch.spaces import batch_space
from unibatch.testing.conformance import assert_tree_equal
from unibatch.testing.memory_batch import InMemoryBatch

EPISODES = [0, 0, 0, 1, 1, 1, 1, 2]


def episode_source(backend, ends=False, in_metadata=False):
    """Frames 0..7 in the episodes of semantics.md §3.8, ids in data or metadata."""
    n = len(EPISODES)
    value = {"x": backend.asarray(np.arange(n, dtype=np.float32))}
    space = {"x": BoxSpace(backend, 0, 100, "float32")}
    column = {}
    if ends:
        flags = np.array([EPISODES[i] != EPISODES[i + 1] if i + 1 < n else True for i in range(n)])
        column["episode_end"] = backend.asarray(flags)
        column_space = {"episode_end": BinarySpace(backend, ())}
    else:
        column["episode_id"] = backend.asarray(np.asarray(EPISODES, np.int32))
        column_space = {"episode_id": BoxSpace(backend, 0, 10, "int32")}
    if in_metadata:
        return InMemoryBatch(DictSpace(backend, space), value, DictSpace(backend, column_space), column)
    return InMemoryBatch(DictSpace(backend, {**space, **column_space}), {**value, **column})


def mask_function(ends, in_metadata):
    if ends:
        return SliceStackedBatch.get_valid_mask_function_with_episode_end_key(is_in_metadata=in_metadata)
    return SliceStackedBatch.get_valid_mask_function_with_episodeid_key(is_in_metadata=in_metadata)


@pytest.mark.parametrize("ends", [False, True], ids=["episode-id", "episode-end"])
@pytest.mark.parametrize("in_metadata", [False, True], ids=["in-data", "in-metadata"])
def test_semantics_example_with_corrected_masks(backend, ends, in_metadata):
    source = episode_source(backend, ends, in_metadata)
    stacked = SliceStackedBatch(source, [-2, -1, 0, 1], mask_function(ends, in_metadata))
    data, metadata = stacked.get_at_with_metadata([3, 0, 7])
    assert to_numpy(data["x"]).tolist() == [[3, 3, 3, 4], [0, 0, 0, 1], [7, 7, 7, 7]]
    # Clipped frames before 0 and after the end are invalid (the original called them valid).
    assert to_numpy(metadata["slice_valid_mask"]).tolist() == [
        [False, False, True, True],
        [False, False, True, True],
        [False, False, True, False],
    ]


def test_without_fill_frames_are_raw_and_clipped(backend):
    stacked = SliceStackedBatch(episode_source(backend), [-2, -1, 0, 1], mask_function(False, False), False)
    assert to_numpy(stacked.get_at(3)["x"]).tolist() == [1, 2, 3, 4]
    assert to_numpy(stacked.get_at(0)["x"]).tolist() == [0, 0, 0, 1]


def test_negative_and_last_indices(backend):
    stacked = FrameStackedBatch(episode_source(backend), prefetch_horizon=1)
    assert to_numpy(stacked.get_at(-1)["x"]).tolist() == [6, 7]
    assert to_numpy(stacked.expand_index(-1)).tolist() == [6, 7]
    assert to_numpy(stacked.expand_index([0, 2])).tolist() == [[-1, 0], [1, 2]]


def test_non_contiguous_validity_fills_toward_the_centre(backend):
    stacked = SliceStackedBatch(episode_source(backend), [-3, -2, -1, 0, 1, 2])
    valid = backend.asarray(np.array([[True, False, True, True, False, True]]))
    data = {"x": backend.asarray(np.arange(6, dtype=np.float32)[None])}
    filled = stacked.fill_data_with_stack_mask(
        DictSpace(backend, {"x": BoxSpace(backend, 0, 9, "float32")}), data, valid
    )
    # Frame 1 takes frame 2 (nearest valid toward the centre), frame 4 takes the centre.
    assert to_numpy(filled["x"]).tolist() == [[0, 2, 2, 3, 3, 5]]


def test_spaces_and_metadata_layout(backend):
    source = episode_source(backend, in_metadata=True)
    stacked = FrameStackedBatch(source, 2, 1, stack_metadata=False)
    assert stacked.single_space == batch_space(source.single_space, 4)
    assert set(stacked.single_metadata_space.keys()) == {"episode_id", "slice_valid_mask"}
    _, metadata = stacked.get_at_with_metadata([4, 5])
    assert to_numpy(metadata["episode_id"]).tolist() == [1, 1]  # the centre frame's
    assert tuple(metadata["slice_valid_mask"].shape) == (2, 4)
    stacked_meta = FrameStackedBatch(source, 2, 1, stack_metadata=True)
    _, metadata = stacked_meta.get_at_with_metadata([3])
    assert to_numpy(metadata["episode_id"]).tolist() == [[0, 0, 1, 1]]
    filled = FrameStackedBatch(source, 2, 1, mask_function(False, True), stack_metadata=True)
    _, metadata = filled.get_at_with_metadata([3])
    assert to_numpy(metadata["episode_id"]).tolist() == [[1, 1, 1, 1]]


def test_flattened_path(backend):
    stacked = FrameStackedBatch(
        episode_source(backend), prefetch_horizon=2, get_valid_mask_function=mask_function(False, False)
    )
    flat, metadata = stacked.get_flattened_at_with_metadata([3, 4])
    assert tuple(flat.shape) == (2, 3, 2)  # (B, T, D) with D = episode_id + x
    assert to_numpy(flat)[0, :, 1].tolist() == [3, 3, 3]
    assert to_numpy(metadata["slice_valid_mask"]).tolist() == [[False, False, True], [False, True, True]]
    assert tuple(stacked.get_flattened_at(0).shape) == (3, 2)
    frames = stacked.expand_index([3, 4])
    raw = SliceStackedBatch(stacked.batch, [-2, -1, 0], mask_function(False, False), fill_invalid_data=False)
    raw_valid = raw.get_valid_mask_flattened(frames, raw.get_flattened_at([3, 4]), None)
    assert to_numpy(raw_valid).tolist() == [[False, False, True], [False, True, True]]
    filled_valid = stacked.get_valid_mask_flattened(frames, flat, None)  # filled frames share the episode
    assert to_numpy(filled_valid).tolist() == [[True, True, True], [True, True, True]]


def test_metadata_carrying_source(backend):
    first, _ = robot_batch(backend, 3)
    second, _ = robot_batch(backend, 3, start=3)
    combined = CombinedBatch([first, second])
    stacked = FrameStackedBatch(combined, prefetch_horizon=1, get_valid_mask_function=mask_function(False, False))
    data, metadata = stacked.get_at_with_metadata(slice(None))
    assert to_numpy(metadata["batch_index"]).tolist() == [0, 0, 0, 1, 1, 1]
    assert tuple(data["obs"]["image"].shape) == (6, 2, 2, 2)


class CountingBatch(BatchBase):
    """Records every read request."""

    def __init__(self, source, expensive):
        super().__init__(source.single_space, source.single_metadata_space)
        self.source, self.requests, self.has_expensive_reads = source, [], expensive

    def __len__(self):
        return len(self.source)

    def _get(self, index, with_metadata):
        self.requests.append(to_numpy(index).tolist() if not isinstance(index, int) else index)
        return self.source._get(index, with_metadata)


@pytest.mark.parametrize("expensive", [False, True])
def test_each_request_reads_the_source_once(backend, expensive):
    counting = CountingBatch(episode_source(backend), expensive)
    stacked = FrameStackedBatch(counting, prefetch_horizon=3)
    data = stacked.get_at([4, 5])
    assert len(counting.requests) == 1
    request = counting.requests[0]
    if expensive:
        assert request == sorted(set(request))  # each distinct row once
    else:
        assert len(request) == 8  # one call with the B*T frames
    assert to_numpy(data["x"]).tolist() == [[1, 2, 3, 4], [2, 3, 4, 5]]


def test_empty_source_and_errors(backend):
    empty = InMemoryBatch(episode_source(backend).single_space)
    stacked = FrameStackedBatch(empty, prefetch_horizon=1)
    assert len(stacked) == 0
    assert tuple(stacked.get_at(slice(None))["x"].shape) == (0, 2)
    with pytest.raises(IndexError, match="out of range for length 0"):
        stacked.get_at(0)
    with pytest.raises(SpaceMismatchError, match="at least one > 0"):
        FrameStackedBatch(empty)
    with pytest.raises(SpaceMismatchError, match="strictly increasing and contain 0"):
        SliceStackedBatch(empty, [1, 2])
    with pytest.raises(SpaceMismatchError, match="strictly increasing"):
        SliceStackedBatch(empty, [0, 0])
    with pytest.raises(ReadOnlyError):
        stacked.append({"x": backend.asarray(np.float32(1)), "episode_id": backend.asarray(np.int32(0))})


def test_missing_mask_key_is_named(backend):
    stacked = FrameStackedBatch(episode_source(backend), 1, get_valid_mask_function=mask_function(True, False))
    with pytest.raises(SpaceMismatchError, match="'episode_end' is not in the data"):
        stacked.get_at(1)


@pytest.mark.parametrize("ends", [False, True], ids=["episode-id", "episode-end"])
@pytest.mark.parametrize("stack_metadata", [False, True])
@pytest.mark.parametrize("expensive", [False, True], ids=["cheap-rows", "expensive-rows"])
def test_column_first_plan_equals_the_row_path(backend, ends, stack_metadata, expensive):
    """A ReplayBuffer reads the mask column alone, then each row once; results equal the row path.

    Windows take that plan for sources with expensive reads (and on devices); the others read
    every frame, then fill: both must give the same windows.
    """
    from unibatch import ReplayBuffer
    from unibatch.storages import MemoryStorage

    class ExpensiveMemoryStorage(MemoryStorage):
        has_expensive_reads = True

    rows = episode_source(backend, ends)
    storage_class = ExpensiveMemoryStorage if expensive else MemoryStorage
    buffer = ReplayBuffer.create(storage_class, rows.single_space, capacity=6)
    buffer.extend(rows.get_at(slice(None)))  # 8 frames into 6 slots: the ring wraps
    requests = []
    read_key = buffer._read_key

    def recorded_read_key(key, in_metadata, index):
        requests.append(key)
        return read_key(key, in_metadata, index)

    buffer._read_key = recorded_read_key
    reference = InMemoryBatch(rows.single_space, rows.get_at(slice(2, None)))
    mask = mask_function(ends, False)
    planned = SliceStackedBatch(buffer, [-2, -1, 0, 1], mask, stack_metadata=stack_metadata)
    plain = SliceStackedBatch(reference, [-2, -1, 0, 1], mask, stack_metadata=stack_metadata)
    index = backend.asarray([0, 3, 5, 1], dtype=backend.default_index_dtype)
    assert planned._plan_filled_frames(planned._frames(planned._index(index))) is not None
    assert plain._plan_filled_frames(plain._frames(plain._index(index))) is None
    requests.clear()
    assert_tree_equal(planned.get_at_with_metadata(index), plain.get_at_with_metadata(index))
    assert_tree_equal(planned.get_flattened_at(index), plain.get_flattened_at(index))
    planned_on_the_column = expensive or backend.simplified_name == "jax"
    assert bool(requests) == planned_on_the_column


def test_expensive_source_with_metadata_keeps_the_metadata_space(backend):
    """Regression: distinct-row reads re-expanded the metadata with the data's space (KeyError)."""
    from unibatch.integrations.episodes import EpisodeDataset

    source = episode_source(backend)
    counting = CountingBatch(EpisodeDataset(source, [len(source)]), expensive=True)
    stacked = FrameStackedBatch(counting, prefetch_horizon=2, stack_metadata=True)
    _, metadata = stacked.get_at_with_metadata([4, 5])
    assert tuple(metadata["episode_ids"].shape) == (2, 3)


def test_views_pass_on_expensive_reads(backend):
    """Windows over a view of an expensive source still read each distinct row once."""
    from unibatch import CombinedBatch, SubIndexedBatch, ToBackendOrDeviceBatch

    counting = CountingBatch(episode_source(backend), expensive=True)
    views = [
        SubIndexedBatch(counting, slice(0, 6)),
        CombinedBatch([counting, counting]),
        ToBackendOrDeviceBatch(counting, backend=backend),
        FrameStackedBatch(counting, prefetch_horizon=1),
    ]
    assert all(view.has_expensive_reads for view in views)
    assert not SubIndexedBatch(CountingBatch(episode_source(backend), expensive=False), slice(0, 6)).has_expensive_reads
    counting.requests.clear()
    FrameStackedBatch(views[0], prefetch_horizon=3).get_at([4, 5])
    assert counting.requests[0] == sorted(set(counting.requests[0]))  # distinct rows, once each


def test_the_episode_mask_in_one_call_for_every_source_with_episode_ids(tmp_path) -> None:
    """Trajectory buffers and imported datasets keep ids in metadata ``episode_ids``; plain dicts as data."""
    from unibatch import NumpyComputeBackend as NP
    from unibatch import TrajectoryReplayBuffer
    from unibatch.integrations.episodes import EpisodeDataset

    step = DictSpace(NP, {"x": BoxSpace(NP, 0, 100, "int64")})
    buffer = TrajectoryReplayBuffer.create(step, None, step_data_capacity=10)
    for length in (3, 4):
        buffer.extend({"x": np.arange(length)})
        buffer.mark_episode_end()
    dataset = EpisodeDataset(InMemoryBatch.from_range(7), [3, 4])
    with_ids_space = DictSpace(NP, {"x": BoxSpace(NP, 0, 100, "int64"), "episode_id": BoxSpace(NP, 0, 100, "int64")})
    with_ids = InMemoryBatch(with_ids_space, {"x": np.arange(7), "episode_id": np.array([0, 0, 0, 1, 1, 1, 1])})
    for source in (buffer, dataset, with_ids):
        mask = FrameStackedBatch.get_valid_mask_function_for_episodes(source)
        windows = FrameStackedBatch(source, prefetch_horizon=2, get_valid_mask_function=mask)
        _, metadata = windows.get_at_with_metadata(np.array([3, 4, 6]))
        assert to_numpy(metadata["slice_valid_mask"]).tolist() == [
            [False, False, True],  # the first step of the second episode
            [False, True, True],
            [True, True, True],
        ], type(source).__name__
    assert FrameStackedBatch.get_valid_mask_function_for_episodes(buffer).is_in_metadata
    assert not FrameStackedBatch.get_valid_mask_function_for_episodes(with_ids).is_in_metadata
    with pytest.raises(SpaceMismatchError, match="carries no episode ids: looked for the metadata keys"):
        FrameStackedBatch.get_valid_mask_function_for_episodes(InMemoryBatch.from_range(3))
