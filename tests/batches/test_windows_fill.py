"""Window fills against a frame-by-frame reference: random episodes, holes in masks, rings, read-only sources."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch import BoxSpace, DictSpace, ReplayBuffer
from unibatch.batches import FrameStackedBatch, SliceStackedBatch
from unibatch.storages import MemoryStorage
from unibatch.testing.memory_batch import InMemoryBatch


def episodes_source(backend, ids: np.ndarray) -> InMemoryBatch:
    """Frame ``i`` holds ``x = i`` (as float and as a 2-vector) and its episode id."""
    n = len(ids)
    space = DictSpace(
        backend,
        {
            "x": BoxSpace(backend, 0, 1e6, "float32"),
            "pair": BoxSpace(backend, 0, 1e6, "int64", shape=(2,)),
            "episode_id": BoxSpace(backend, 0, 1e6, "int32"),
        },
    )
    values = {
        "x": backend.asarray(np.arange(n, dtype=np.float32)),
        "pair": backend.asarray(np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.int64)),
        "episode_id": backend.asarray(ids.astype(np.int32)),
    }
    return InMemoryBatch(space, values)


def reference_frames(rows, offsets, valid_frame) -> tuple[np.ndarray, np.ndarray]:
    """The filled source frame and the validity of every ``(b, t)``, one frame at a time."""
    centre = offsets.index(0)
    frames, valid = np.zeros((len(rows), len(offsets)), np.int64), np.zeros((len(rows), len(offsets)), bool)
    for b, row in enumerate(rows):
        ok = [valid_frame(row, row + offset) for offset in offsets]
        valid[b] = ok
        for t in range(len(offsets)):
            if ok[t] or t == centre:
                source = t
            elif t < centre:  # the nearest valid position toward the centre (the centre counts as valid)
                source = next(s for s in range(t + 1, centre + 1) if ok[s] or s == centre)
            else:
                source = next(s for s in range(t - 1, centre - 1, -1) if ok[s] or s == centre)
            frames[b, t] = row + offsets[source]
    return frames, valid


class HoleMask:
    """A mask with holes: frames whose index is a multiple of 3 are invalid (plus the episode rule)."""

    def __call__(self, stacked, frames, data, metadata):
        ids = data["episode_id"]
        return (ids == ids[:, stacked.centre_position : stacked.centre_position + 1]) & (frames % 3 != 0)


@pytest.mark.parametrize("holes", [False, True], ids=["episodes", "holes"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_windows_equal_the_reference(backend, holes, seed):
    rng = np.random.default_rng(seed)
    n = 60
    ids = np.cumsum(rng.random(n) < 0.15)  # random episode lengths
    offsets = sorted({0, *rng.choice(np.arange(-6, 4), size=4, replace=False).tolist()})
    rows = rng.integers(0, n, 40)
    rows[:3] = [0, n - 1, n // 2]

    def valid_frame(row, frame):
        inside = 0 <= frame < n and ids[frame] == ids[row]
        return inside and (not holes or frame % 3 != 0)

    mask = HoleMask() if holes else SliceStackedBatch.get_valid_mask_function_with_episodeid_key()
    expected_frames, expected_valid = reference_frames(rows.tolist(), offsets, valid_frame)
    source = episodes_source(backend, ids)
    ring = ReplayBuffer.create(MemoryStorage, source.single_space, capacity=n)
    ring.extend(source.get_at(slice(n - 7, n)))  # the ring wraps: logical rows start mid-storage
    ring.extend(source.get_at(slice(None)))
    for data in (source, ring):
        stacked = SliceStackedBatch(data, offsets, mask, stack_metadata=True)
        index = backend.asarray(rows, dtype=backend.default_index_dtype)
        values, metadata = stacked.get_at_with_metadata(index)
        assert to_numpy(metadata["slice_valid_mask"]).tolist() == expected_valid.tolist()
        assert to_numpy(values["x"]).tolist() == expected_frames.astype(np.float32).tolist()
        assert to_numpy(values["pair"])[..., 1].tolist() == (-expected_frames).tolist()
        assert to_numpy(values["episode_id"]).tolist() == ids[expected_frames].tolist()


class ReadOnlyBatch(InMemoryBatch):
    """A source whose reads return read-only NumPy arrays (as results shared by Ray's object store are)."""

    def _get(self, index, with_metadata):
        data, metadata = super()._get(index, with_metadata)
        for leaf in data.values():
            leaf.flags.writeable = False
        return data, metadata


def test_read_only_results_are_filled_on_copies():
    from unibatch.backends import backend_from_name

    numpy_backend = backend_from_name("numpy")
    ids = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    plain = episodes_source(numpy_backend, ids)
    source = ReadOnlyBatch(plain.single_space, plain.get_at(slice(None)))
    mask = FrameStackedBatch.get_valid_mask_function_with_episodeid_key()
    values = FrameStackedBatch(source, prefetch_horizon=2, get_valid_mask_function=mask).get_at(np.array([3, 4]))
    assert values["x"].tolist() == [[3, 3, 3], [3, 3, 4]]
    assert source.get_at(slice(None))["x"].tolist() == list(range(8))  # the source is unchanged


def test_windows_never_write_into_their_source(backend):
    ids = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    source = episodes_source(backend, ids)
    before = to_numpy(source.get_at(slice(None))["x"]).tolist()
    mask = FrameStackedBatch.get_valid_mask_function_with_episodeid_key()
    stacked = FrameStackedBatch(source, prefetch_horizon=3, postfetch_horizon=1, get_valid_mask_function=mask)
    stacked.get_at(backend.asarray(np.arange(8), dtype=backend.default_index_dtype))
    assert to_numpy(source.get_at(slice(None))["x"]).tolist() == before


class IntegerMask:
    """A mask function answering with 0/1 integers instead of booleans."""

    def __call__(self, stacked, frames, data, metadata):
        ids = data["episode_id"]
        centre = stacked.centre_position
        return (ids == ids[:, centre : centre + 1]) * 1


def test_a_mask_of_integers_fills_like_a_boolean_one(backend):
    ids = np.array([0, 0, 0, 1, 1, 1])
    source = episodes_source(backend, ids)
    index = backend.asarray(np.arange(6), dtype=backend.default_index_dtype)
    boolean = SliceStackedBatch(source, [-1, 0, 1], SliceStackedBatch.get_valid_mask_function_with_episodeid_key())
    integer = SliceStackedBatch(source, [-1, 0, 1], IntegerMask())
    expected = [[0, 0, 1], [0, 1, 2], [1, 2, 2], [3, 3, 4], [3, 4, 5], [4, 5, 5]]
    for stacked in (boolean, integer):
        values, metadata = stacked.get_at_with_metadata(index)
        assert to_numpy(values["x"]).tolist() == expected
        assert to_numpy(metadata["slice_valid_mask"]).dtype == bool
