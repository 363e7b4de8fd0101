"""TrajectoryReplayBuffer on every path of decision 10, on all backends."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch import BinarySpace, BoxSpace, DictSpace, FrameStackedBatch, TrajectoryReplayBuffer
from unibatch.buffers import EpisodeCapacityError, MissingEpisodeDataError
from unibatch.errors import ReadOnlyError, SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import batch_space, concatenate, flatten_data
from unibatch.testing.conformance import BatchCase, BatchTests, assert_tree_equal


def step_space(backend):
    return DictSpace(
        backend, {"obs": BoxSpace(backend, -100, 100, "float32", shape=(2,)), "done": BinarySpace(backend)}
    )


def episode_space(backend):
    return DictSpace(backend, {"task": BoxSpace(backend, 0, 1000, "int32")})


def step(backend, episode, t):
    return {"obs": backend.asarray(np.array([episode, t], np.float32)), "done": backend.asarray(t == 2)}


def task(backend, episode):
    return {"task": backend.asarray(np.int32(episode * 10))}


def record(buffer, backend, episodes, steps=3, first=0):
    for episode in range(first, first + episodes):
        if buffer.episode_data_buffer is not None:
            buffer.set_current_episode_data(task(backend, episode))
        for t in range(steps):
            buffer.append(step(backend, episode, t))
        buffer.mark_episode_end()


def make(backend, tmp_path=None, capacity=10, episode_capacity=5, episodes=True, **kwargs):
    return TrajectoryReplayBuffer.create(
        step_space(backend),
        None,
        step_data_capacity=capacity,
        episode_data_instance_space=episode_space(backend) if episodes else None,
        episode_data_capacity=episode_capacity,
        cache_path=None if tmp_path is None else tmp_path / "trajectory",
        **kwargs,
    )


class TestTrajectoryConformance(BatchTests):
    def make_case(self, backend):
        buffer = make(backend, capacity=10, episode_capacity=5)
        record(buffer, backend, 6)  # 18 steps into 10 slots: the oldest episodes are gone
        samples, metadata = [], []
        for i in range(8, 18):
            episode, t = divmod(i, 3)
            samples.append({"step_data": step(backend, episode, t), "episode_data": task(backend, episode)})
            metadata.append({"episode_ids": np.asarray(episode)})
        new = {"step_data": step(backend, 9, 9), "episode_data": task(backend, 9)}
        return BatchCase(buffer, samples, metadata, new_sample=new)


def test_int_reads_with_episode_data_and_metadata(backend):
    buffer = make(backend)
    record(buffer, backend, 2)
    data, metadata = buffer.get_at_with_metadata(4)
    assert to_numpy(data["step_data"]["obs"]).tolist() == [1, 1]
    assert int(to_numpy(data["episode_data"]["task"])) == 10
    assert int(to_numpy(metadata["episode_ids"])) == 1
    batch = buffer.get_at(backend.asarray([5, 0], dtype=backend.default_index_dtype))
    assert to_numpy(batch["episode_data"]["task"]).tolist() == [10, 0]


def test_flat_layout_is_flatten_data_of_the_single_space(backend):
    buffer = make(backend)
    record(buffer, backend, 2)
    structured = buffer.get_at([0, 4])
    expected = flatten_data(batch_space(buffer.single_space, 1), structured, start_dim=1)
    assert_tree_equal(buffer.get_flattened_at([0, 4]), expected)
    assert list(buffer.single_space.keys()) == ["episode_data", "step_data"]


def test_episode_ids_to_slots_for_ints_and_arrays(backend):
    buffer = make(backend)
    record(buffer, backend, 3)
    assert buffer.episode_id_to_episode_data_index(2) == 2
    ids = backend.asarray([2, 0, 2], dtype=backend.default_integer_dtype)
    assert to_numpy(buffer.episode_id_to_episode_data_index(ids)).tolist() == [2, 0, 2]
    with pytest.raises(MissingEpisodeDataError, match=r"episodes \[7\] have no episode data"):
        buffer.episode_id_to_episode_data_index(7)


def test_slots_are_released_when_an_episode_is_overwritten(backend):
    buffer = make(backend, capacity=6, episode_capacity=3)
    record(buffer, backend, 8)  # would need 8 slots without release
    assert sorted(buffer.episode_id_to_index_map) == [6, 7]
    assert to_numpy(buffer.get_at(0)["episode_data"]["task"]).item() == 60


def test_episode_capacity_exhausted_leaves_buffer_unchanged(backend):
    buffer = make(backend, capacity=20, episode_capacity=2)
    record(buffer, backend, 2)
    before = buffer.episode_id_to_index_map
    with pytest.raises(EpisodeCapacityError, match="capacity 2 is exhausted"):
        buffer.set_current_episode_data(task(backend, 2))
    assert buffer.episode_id_to_index_map == before


def test_episode_data_updates_and_before_first_step(backend):
    buffer = make(backend)
    buffer.set_episode_data_at(3, task(backend, 30))  # before any step of episode 3
    buffer.set_current_episode_data(task(backend, 1))
    buffer.append(step(backend, 0, 0))
    buffer.set_current_episode_data(task(backend, 2))  # an update is not ignored
    assert int(to_numpy(buffer.get_at(0)["episode_data"]["task"])) == 20
    ids = backend.asarray([0, 3], dtype=backend.default_integer_dtype)
    buffer.set_episode_data_at(ids, concatenate(episode_space(backend), [task(backend, 5), task(backend, 6)]))
    assert buffer.episode_id_to_index_map == {0: 1, 3: 0}
    with pytest.raises(SpaceMismatchError, match="distinct episode ids"):
        buffer.set_episode_data_at(backend.asarray([1, 1]), concatenate(episode_space(backend), [task(backend, 1)] * 2))


def test_extend_forms(backend):
    buffer = make(backend, episodes=False)
    steps = concatenate(step_space(backend), [step(backend, 0, t) for t in range(3)])
    buffer.extend(steps)  # raw step data
    buffer.extend({"step_data": steps})  # without episode ids
    ids = backend.asarray([4, 4, 5], dtype=backend.default_integer_dtype)
    buffer.current_episode_id = 5  # explicit ids never pass the current episode
    buffer.extend({"step_data": steps, "episode_ids": ids})
    assert to_numpy(buffer.get_at_with_metadata(slice(None))[1]["episode_ids"]).tolist() == [0, 0, 0, 0, 0, 0, 4, 4, 5]
    with pytest.raises(SpaceMismatchError, match="no episode data buffer"):
        buffer.extend({"step_data": steps, "episode_data": {}})
    with_episodes = make(backend)
    with_episodes.current_episode_id = 5
    episodes = concatenate(episode_space(backend), [task(backend, 1), task(backend, 1), task(backend, 2)])
    with_episodes.extend({"step_data": steps, "episode_ids": ids, "episode_data": episodes})
    assert to_numpy(with_episodes.get_at(2)["episode_data"]["task"]).item() == 20


def test_set_at_parts(backend):
    buffer = make(backend)
    record(buffer, backend, 2)
    buffer.set_at(1, {"step_data": step(backend, 7, 7)})
    assert to_numpy(buffer.get_at(1)["step_data"]["obs"]).tolist() == [7, 7]
    buffer.set_at(1, {"episode_data": task(backend, 9)})
    assert to_numpy(buffer.get_at(0)["episode_data"]["task"]).item() == 90  # episode 0's data
    with pytest.raises(SpaceMismatchError, match="set_at expects a dict"):
        buffer.set_at(1, step(backend, 1, 1))
    flat = buffer.get_flattened_at([3])
    buffer.set_flattened_at([0], flat)
    assert to_numpy(buffer.get_at(0)["step_data"]["obs"]).tolist() == [1, 0]


def test_bad_append_leaves_everything_unchanged(backend):
    buffer = make(backend)
    record(buffer, backend, 1)
    bad = step(backend, 0, 0)
    bad["obs"] = backend.zeros((3,))
    with pytest.raises(SpaceMismatchError, match=r"obs: expected shape \(2,\)"):
        buffer.append(bad)
    assert len(buffer) == 3 and len(buffer.step_data_buffer) == 3


def test_frame_stacking_with_episode_ids_in_metadata(backend):
    buffer = make(backend)
    record(buffer, backend, 3)
    mask = FrameStackedBatch.get_valid_mask_function_with_episodeid_key("episode_ids", is_in_metadata=True)
    stacked = FrameStackedBatch(buffer, prefetch_horizon=2, get_valid_mask_function=mask)
    data, metadata = stacked.get_at_with_metadata([3, 5])
    assert to_numpy(data["step_data"]["obs"])[:, :, 1].tolist() == [[0, 0, 0], [0, 1, 2]]
    assert to_numpy(metadata["slice_valid_mask"]).tolist() == [[False, False, True], [True, True, True]]
    assert to_numpy(metadata["episode_ids"]).tolist() == [1, 1]


def test_persistence_and_reopen(backend, tmp_path):
    buffer = make(backend, tmp_path)
    record(buffer, backend, 5)  # mark_episode_end commits
    buffer.append(step(backend, 5, 0))  # not committed; the row it overwrote left the committed range first
    loaded = TrajectoryReplayBuffer.load_from(tmp_path / "trajectory", backend=backend)
    assert len(loaded) == 9 and loaded.current_episode_id == 5
    assert to_numpy(loaded.get_at(0)["step_data"]["obs"]).tolist() == [2, 0]
    assert loaded.episode_id_to_index_map == {2: 2, 3: 3, 4: 4}
    assert to_numpy(loaded.get_at(-1)["step_data"]["obs"]).tolist() == [4, 2]
    record(loaded, backend, 1, first=5)  # reopened read-write by default
    copy = tmp_path / "copy"
    loaded.dumps(copy)
    again = TrajectoryReplayBuffer.load_from(copy, backend=backend, read_only=True)
    assert to_numpy(again.get_at(-1)["episode_data"]["task"]).item() == 50
    with pytest.raises(ReadOnlyError):
        again.append(step(backend, 0, 0))
    assert TrajectoryReplayBuffer.is_loadable_from(copy)
    assert not TrajectoryReplayBuffer.is_loadable_from(copy / "step_data")


def test_extra_metadata_is_committed_with_the_steps(backend, tmp_path):
    buffer = make(backend, tmp_path)
    buffer.extra_metadata["seq"] = 3
    record(buffer, backend, 1)  # mark_episode_end commits
    loaded = TrajectoryReplayBuffer.load_from(tmp_path / "trajectory", backend=backend, read_only=True)
    assert loaded.extra_metadata == {"seq": 3} and len(loaded) == len(buffer)


def test_growable_and_clear(backend, tmp_path):
    buffer = make(backend, tmp_path, capacity=None, episode_capacity=None)
    record(buffer, backend, 4)
    assert len(buffer) == 12 and buffer.capacity is None and buffer.episode_capacity is None
    loaded = TrajectoryReplayBuffer.load_from(tmp_path / "trajectory", backend=backend)
    assert len(loaded) == 12 and to_numpy(loaded.get_at(11)["episode_data"]["task"]).item() == 30
    loaded.clear()
    assert len(loaded) == 0 and loaded.current_episode_id == 0 and loaded.episode_id_to_index_map == {}


def test_creation_checks(backend):
    with pytest.raises(SpaceMismatchError, match="must be equal"):
        TrajectoryReplayBuffer.create(step_space(backend), None, step_data_capacity=4, step_episode_id_capacity=5)
    without = make(backend, episodes=False)
    with pytest.raises(UnsupportedOperationError, match="no episode data"):
        without.set_current_episode_data(task(backend, 0))
    with pytest.raises(UnsupportedOperationError, match="remove_at"):
        without.remove_at(0) if len(without) else without.extend(
            concatenate(step_space(backend), [step(backend, 0, 0)])
        ) or without.remove_at(0)


def _record_in_child(buffer, episodes):
    from unibatch.backends import backend_from_name

    record(buffer, backend_from_name("numpy"), episodes)


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX warns about fork; the child never uses JAX
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_multiprocessing_writer_in_another_process(context):
    import multiprocessing

    from unibatch.backends import backend_from_name

    backend = backend_from_name("numpy")
    buffer = make(backend, capacity=12, episode_capacity=5, multiprocessing=True)
    assert buffer.is_multiprocessing_safe
    process = multiprocessing.get_context(context).Process(target=_record_in_child, args=(buffer, 5))
    process.start()
    process.join(timeout=60)
    assert process.exitcode == 0
    assert len(buffer) == 12 and buffer.current_episode_id == 5
    assert buffer.episode_id_to_index_map == {1: 1, 2: 2, 3: 3, 4: 4}
    data, metadata = buffer.get_at_with_metadata(slice(None))
    assert to_numpy(metadata["episode_ids"]).tolist() == [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3
    assert to_numpy(data["episode_data"]["task"]).tolist() == [10] * 3 + [20] * 3 + [30] * 3 + [40] * 3
    buffer.close()


def test_an_extend_that_cannot_get_episode_slots_changes_nothing(backend):
    buffer = make(backend, capacity=6, episode_capacity=2)
    record(buffer, backend, 2)
    steps = concatenate(step_space(backend), [step(backend, 2, t) for t in range(3)])
    ids = backend.asarray([2, 3, 4], dtype=backend.default_integer_dtype)
    episodes = concatenate(episode_space(backend), [task(backend, e) for e in (2, 3, 4)])
    buffer.current_episode_id = 4
    with pytest.raises(EpisodeCapacityError, match="3 new episodes"):
        buffer.extend({"step_data": steps, "episode_ids": ids, "episode_data": episodes})
    assert buffer.episode_id_to_index_map == {0: 0, 1: 1} and len(buffer) == 6
    assert int(to_numpy(buffer.get_at(0)["episode_data"]["task"])) == 0


def test_memory_backed_trajectory_buffer_commits_snapshots(backend, tmp_path):
    from unibatch.storages import MemoryStorage

    buffer = TrajectoryReplayBuffer.create(
        step_space(backend),
        MemoryStorage,
        step_data_capacity=6,
        cache_path=tmp_path / "t",
        step_episode_id_storage_cls=MemoryStorage,
    )
    record(buffer, backend, 3)  # each episode end commits a new snapshot
    loaded = TrajectoryReplayBuffer.load_from(tmp_path / "t", backend=backend)
    assert to_numpy(loaded.get_at(slice(None))["step_data"]["obs"])[:, 0].tolist() == [1, 1, 1, 2, 2, 2]
    assert sorted(p.name for p in (tmp_path / "t" / "step_data").iterdir() if p.is_dir()) in (
        ["storage"],
        ["storage.1"],
    )


def test_extend_flattened_round_trips_steps_and_episode_data(backend):
    # The flat layout holds step and episode data, not episode ids: the steps join the current episode.
    source = make(backend)
    record(source, backend, 1)
    flat = source.get_flattened_at(slice(None))
    target = make(backend)
    target.extend_flattened(flat)
    assert_tree_equal(target.get_at(slice(None)), source.get_at(slice(None)))
