"""Buffers hosted by Ray actors: producers and learners in other processes, restarts, kills, shards.

Run inside a private network namespace (``make test``); see ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
from _distributed_workers import Producer, check_rows, learn, make_row, row_space, window_view

from unibatch.batches import FrameStackedBatch
from unibatch.errors import SpaceMismatchError, UnsupportedOperationError
from unibatch.samplers import StepSampler

pytestmark = [pytest.mark.distributed]

ray_api = pytest.importorskip("unibatch.integrations.ray")
RemoteBuffer, RemoteSampler, ShardedRemoteBuffer = (
    ray_api.RemoteBuffer,
    ray_api.RemoteSampler,
    ray_api.ShardedRemoteBuffer,
)
EPISODES, STEPS, CHUNK = 6, 20, 32


def tags_of(batch):
    """Every row's tag, read back through the handle in one request."""
    return check_rows(batch.get_at(slice(0, len(batch))) if len(batch) else {"tag": np.zeros((0, 3), np.int64)})


def assert_exactly_once(tags, producers, episodes, steps):
    expected = {(p, e, s) for p in producers for e in range(episodes) for s in range(steps)}
    seen = [tuple(int(v) for v in tag) for tag in tags]
    assert len(seen) == len(expected) and set(seen) == expected


def producer_actor(ray, buffer, producer):
    return ray.remote(Producer).options(num_cpus=0).remote(buffer, producer)


def wait_for(path, at_least, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and json.loads(path.read_text()) >= at_least:
            return json.loads(path.read_text())
        time.sleep(0.01)
    raise AssertionError(f"{path} did not reach {at_least} in {timeout} s")


def test_two_producers_and_a_learner_exchange_every_row_once(ray_instance, tmp_path):
    ray = ray_instance
    actor = ray_api.serve_trajectory_buffer(row_space(), cache_path=tmp_path / "buffer")
    buffer = RemoteBuffer(actor, chunk_size=CHUNK)
    producers = [producer_actor(ray, buffer, p) for p in (1, 2)]
    writes = [p.episodes.remote(EPISODES, STEPS) for p in producers]
    while len(buffer) < STEPS:  # the learner starts while the producers write
        time.sleep(0.01)

    def sampler():
        return RemoteSampler(RemoteBuffer(actor), 64, view=window_view(), seed=0, batches_per_call=4)

    learner = ray.remote(learn).options(num_cpus=0).remote(sampler, 40)
    assert sum(ray.get(writes)) == 2 * EPISODES * STEPS
    assert ray.get(learner) == 40 * 64
    data, metadata = buffer.get_at_with_metadata(slice(0, len(buffer)))
    tags = check_rows(data["step_data"])
    assert_exactly_once(tags, (1, 2), EPISODES, STEPS)
    # Each episode has one global id, its steps are contiguous and in order (one chunk per episode).
    ids = np.asarray(metadata["episode_ids"])
    for episode_id in np.unique(ids):
        rows = tags[ids == episode_id]
        assert len({(int(p), int(e)) for p, e, _ in rows}) == 1 and rows[:, 2].tolist() == list(range(STEPS))
    assert len(np.unique(ids)) == 2 * EPISODES
    # The handle is a BatchBase: a local window view and a StepSampler work on it unchanged.
    local = FrameStackedBatch(
        buffer, prefetch_horizon=2, get_valid_mask_function=window_view().keywords["get_valid_mask_function"]
    )
    windows, window_metadata = local.get_at_with_metadata(np.arange(len(buffer)))
    assert np.asarray(window_metadata["slice_valid_mask"]).sum() == 2 * EPISODES * (3 * STEPS - 3)
    assert StepSampler(buffer, 16, seed=0).sample()["step_data"]["tag"].shape == (16, 3)


def test_results_come_from_the_object_store_without_copies(ray_instance):
    actor = ray_api.serve_replay_buffer(row_space())
    buffer = RemoteBuffer(actor, chunk_size=128)
    buffer.extend({"image": np.zeros((256, 3, 24, 24), np.uint8), "tag": np.zeros((256, 3), np.int64)})
    buffer.flush()
    batch = RemoteSampler(buffer, 256, seed=0).sample()
    image = batch["image"]  # 442 KB: above Ray's inline limit, so it lives in the object store
    assert image.shape == (256, 3, 24, 24) and not image.flags.writeable and not image.flags.owndata


def test_a_killed_producer_loses_at_most_its_unflushed_chunk(ray_instance, tmp_path):
    ray = ray_instance
    actor = ray_api.serve_replay_buffer(row_space(), cache_path=tmp_path / "buffer")
    buffer = RemoteBuffer(actor, chunk_size=8, max_in_flight=2)
    progress = tmp_path / "acknowledged.json"
    producer = producer_actor(ray, buffer, 5)
    pid = ray.get(producer.pid.remote())
    producer.rows.remote(20_000, flush_every=8, progress=str(progress), pause=0.002)
    wait_for(progress, 200)
    os.kill(pid, signal.SIGKILL)
    acknowledged = json.loads(progress.read_text())
    time.sleep(0.5)  # anything still on the wire lands now
    tags = tags_of(buffer)
    steps = tags[:, 2].tolist()
    assert steps == list(range(len(steps)))  # a prefix: nothing lost in the middle, nothing twice
    assert acknowledged <= len(steps) <= acknowledged + 8 * 3  # at most the staged chunk and those in flight
    assert len(steps) < 20_000


def test_the_actor_restarts_from_its_storage_and_applies_retried_chunks_once(ray_instance, tmp_path):
    actor = ray_api.serve_replay_buffer(row_space(), cache_path=tmp_path / "buffer", capacity=None)
    buffer = RemoteBuffer(actor, chunk_size=16, max_in_flight=4)
    first_pid = ray_instance.get(actor.pid.remote())
    for step in range(400):
        buffer.append(make_row(7, 0, step))
        if step == 200:  # chunks are in flight: Ray retries them on the restarted actor
            os.kill(first_pid, signal.SIGKILL)
    buffer.flush()
    assert ray_instance.get(actor.pid.remote()) != first_pid
    assert tags_of(buffer)[:, 2].tolist() == list(range(400))


def test_shards_take_whole_episodes_and_sample_as_one_buffer(ray_instance):
    ray = ray_instance
    actors = [ray_api.serve_trajectory_buffer(row_space()) for _ in range(2)]
    buffer = ShardedRemoteBuffer(actors, chunk_size=CHUNK)
    ray.get(producer_actor(ray, buffer, 3).episodes.remote(EPISODES, STEPS))
    assert len(buffer) == EPISODES * STEPS and [len(shard) for shard in buffer.shards] == [EPISODES // 2 * STEPS] * 2
    data, metadata = buffer.get_at_with_metadata(np.arange(len(buffer)))
    assert_exactly_once(check_rows(data["step_data"]), (3,), EPISODES, STEPS)
    assert sorted(set(np.asarray(metadata["batch_index"]).tolist())) == [0, 1]
    sampler = RemoteSampler(buffer, 64, view=window_view(), seed=1, batches_per_call=2, calls_in_flight=2)
    for _ in range(10):
        batch = sampler.sample()
        assert batch["step_data"]["tag"].shape == (64, 3, 3)
    assert learn(lambda: RemoteSampler(buffer, 32, view=window_view(), seed=2), 5) == 5 * 32


def test_bad_rows_are_refused_before_anything_ships(ray_instance):
    actor = ray_api.serve_trajectory_buffer(row_space())
    buffer = RemoteBuffer(actor, chunk_size=4)
    buffer.append(make_row(1, 0, 0))
    with pytest.raises(SpaceMismatchError, match="tag"):
        buffer.append({"image": np.zeros((3, 24, 24), np.uint8), "tag": np.zeros(4, np.int64)})
    with pytest.raises(SpaceMismatchError, match="episode ids are given by the host"):
        buffer.extend({"step_data": {}, "episode_ids": np.zeros(1)})
    buffer.flush()
    assert len(buffer) == 1
    replay = RemoteBuffer(ray_api.serve_replay_buffer(row_space()))
    replay.append(make_row(0, 0, 0))
    replay.flush()
    with pytest.raises(UnsupportedOperationError, match="trajectory"):
        replay.mark_episode_end()
    with pytest.raises(UnsupportedOperationError, match="set_at"):
        replay.set_at(0, make_row(0, 0, 0))
