"""``StepSampler(reuse_outputs=N)``: the same batches as without, written into buffers reused every N calls."""

from __future__ import annotations

import numpy as np
import pytest

from unibatch import FrameStackedBatch, ReplayBuffer, StepSampler
from unibatch.storages import MemmapStorage, MemoryStorage
from unibatch.storages._outputs import OutputArena, take_rows
from unibatch.testing.conformance import assert_tree_equal, host
from unibatch.testing.storage_conformance import storage_sample, storage_space


def filled(backend, kind, tmp_path, rows=40):
    space = storage_space(backend)
    if kind == "memmap":
        buffer = ReplayBuffer.create(MemmapStorage, space, cache_path=tmp_path / "b", capacity=rows)
    else:
        buffer = ReplayBuffer.create(MemoryStorage, space, capacity=rows)
    for i in range(rows):
        buffer.append(storage_sample(backend, i))
    return buffer


def leaves(tree):
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in leaves(value)]
    return [np.asarray(host(tree))]


@pytest.mark.parametrize("kind", ["memory", "memmap"])
def test_batches_equal_those_of_a_sampler_without_reuse(backend, kind, tmp_path):
    buffer = filled(backend, kind, tmp_path)
    mask = FrameStackedBatch.get_valid_mask_function_with_episode_end_key("done")
    for data in (buffer, FrameStackedBatch(buffer, prefetch_horizon=2, get_valid_mask_function=mask)):
        plain, reused = StepSampler(data, 8, seed=3), StepSampler(data, 8, seed=3, reuse_outputs=2)
        for _ in range(4):
            assert_tree_equal(reused.sample_with_metadata(), plain.sample_with_metadata())
            assert_tree_equal(reused.sample(), plain.sample())
        assert_tree_equal(next(iter(reused.epoch_iter())), next(iter(plain.epoch_iter())))
    buffer.close()


def test_a_batch_stays_valid_for_n_calls_then_its_buffers_are_reused(tmp_path):
    from unibatch.backends import backend_from_name

    buffer = filled(backend_from_name("numpy"), "memory", tmp_path)
    sampler = StepSampler(buffer, 8, seed=0, reuse_outputs=2)
    first = sampler.sample()
    copy = [leaf.copy() for leaf in leaves(first)]
    second = sampler.sample()
    assert all(np.array_equal(a, b) for a, b in zip(leaves(first), copy))  # valid one call later
    assert not any(np.shares_memory(a, b) for a, b in zip(leaves(first), leaves(second)))
    third = sampler.sample()
    assert any(np.shares_memory(a, b) for a, b in zip(leaves(first), leaves(third)))  # slot reused
    with pytest.raises(ValueError, match="reuse_outputs must be positive"):
        StepSampler(buffer, 8, reuse_outputs=-1)


def test_take_rows_uses_the_arena_only_while_it_is_active():
    rows = np.arange(20).reshape(10, 2)
    arena = OutputArena(1)
    with arena:
        inside = take_rows(rows, np.array([3, 1]))
    outside = take_rows(rows, np.array([3, 1]))
    with arena:
        again = take_rows(rows, np.array([0, 0]))
    assert again is inside and outside is not inside and outside.tolist() == [[6, 7], [2, 3]]
    assert take_rows(np.array(["a", "b"], dtype=object), np.array([1])).tolist() == ["b"]
