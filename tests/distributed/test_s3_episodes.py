"""Episodes on an S3-compatible object store (moto on 127.0.0.1): producers in other processes,
a learner sampling windows from a local pool, killed writers, the local chunk cache.

Run inside a private network namespace (``make test``); see ``conftest.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from _distributed_workers import check_rows, check_windows, make_row, row_space, window_view, write_store_episodes

from unibatch.errors import SpaceMismatchError
from unibatch.spaces import BoxSpace, DictSpace
from unibatch.storages import ZarrStorage

pytestmark = [pytest.mark.distributed]

object_store = pytest.importorskip("unibatch.integrations.object_store")
episode_pool = pytest.importorskip("unibatch.integrations.episode_pool")
EpisodeStore, EpisodePoolSampler = object_store.EpisodeStore, episode_pool.EpisodePoolSampler
EPISODES, STEPS = 4, 25


def all_tags(store):
    parts = [check_rows(store.read_episode(episode)) for episode in store.episodes()]
    return np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)


def test_two_producer_processes_and_a_learner_share_a_dataset(ray_instance, s3_server, s3_url, tmp_path):
    ray = ray_instance
    write = ray.remote(write_store_episodes).options(num_cpus=0)
    done = ray.get([write.remote(s3_url, s3_server, producer, EPISODES, STEPS) for producer in (1, 2)])
    assert done == [EPISODES * STEPS] * 2

    store = EpisodeStore.open(s3_url, storage_options=s3_server, local_cache=tmp_path / "cache")
    episodes = store.episodes()
    assert [(e.producer, e.seq, e.length) for e in episodes] == [
        (f"p{p}", seq, STEPS) for p in (1, 2) for seq in range(EPISODES)
    ]
    tags = all_tags(store)  # every row once, unchanged
    expected = {(p, e, s) for p in (1, 2) for e in range(EPISODES) for s in range(STEPS)}
    assert len(tags) == len(expected) and {tuple(int(v) for v in t) for t in tags} == expected
    assert any((tmp_path / "cache").rglob("c/*")), "chunks read are kept in the local cache"

    def learner(url, options, cache):
        sampler = EpisodePoolSampler(
            EpisodeStore.open(url, storage_options=options, local_cache=cache),
            32,
            pool_steps=60,
            piece_steps=10,
            view=window_view(),
            seed=0,
        )
        windows = 0
        for batch in range(30):
            windows += check_windows(*sampler.sample_with_metadata(), episodes_from_step_zero=False)
            if batch % 10 == 9:
                sampler.refresh(wait=True)  # (sampling never waits for pulls; this learner does)
        pieces = sampler.pulled_pieces
        assert len(sampler.pool) <= 60
        sampler.close()
        return windows, pieces

    learner_process = ray.remote(learner).options(num_cpus=0)
    windows, pieces = ray.get(learner_process.remote(s3_url, s3_server, str(tmp_path / "c2")))
    assert windows == 30 * 32 and pieces >= 4


def test_windows_of_pooled_pieces_never_join_two_pieces(s3_server, s3_url):
    store = EpisodeStore.create(s3_url, row_space(), storage_options=s3_server)
    writer = store.writer("solo")
    for episode in range(3):
        writer.extend({k: np.stack([make_row(0, episode, s)[k] for s in range(12)]) for k in ("image", "tag")})
        assert writer.end_episode().length == 12
    assert writer.end_episode() is None  # nothing staged
    sampler = EpisodePoolSampler(
        store, 16, pool_steps=24, piece_steps=5, pieces_per_refresh=2, refresh_every=2, view=window_view(), seed=3
    )
    for _ in range(20):
        data, metadata = sampler.sample_with_metadata()
        assert check_windows(data, metadata, episodes_from_step_zero=False) == 16
        assert np.asarray(metadata["episode_ids"]).shape == (16,)
        assert len(sampler.pool) <= 24
    sampler.close()


def test_a_killed_producer_loses_only_its_unfinished_episode(ray_instance, s3_server, s3_url):
    ray = ray_instance
    write = ray.remote(write_store_episodes).options(num_cpus=0, max_retries=0)
    with pytest.raises(ray.exceptions.WorkerCrashedError):
        ray.get(write.remote(s3_url, s3_server, 4, 2, STEPS, stop_after_steps=7))
    store = EpisodeStore.open(s3_url, storage_options=s3_server)
    assert [(e.seq, e.length) for e in store.episodes()] == [(0, STEPS), (1, STEPS)]
    # A writer killed between an episode's data and its marker leaves an unmarked group: invisible,
    # and replaced by the producer's next writer.
    leftover = ZarrStorage.create(
        row_space(), capacity=3, cache_path=f"{s3_url}/episodes/p4/00000002", storage_options=s3_server
    )
    leftover.close()
    assert len(store.episodes()) == 2
    assert ray.get(write.remote(s3_url, s3_server, 4, 1, 5)) == 5
    assert [(e.seq, e.length) for e in store.episodes()] == [(0, STEPS), (1, STEPS), (2, 5)]
    assert check_rows(store.read_episode(store.episodes()[2]))[:, 1].tolist() == [2] * 5


def test_zarr_storage_on_s3_and_store_checks(s3_server, s3_url):
    space = row_space()
    rows = {k: np.stack([make_row(9, 0, s)[k] for s in range(40)]) for k in ("image", "tag")}
    storage = ZarrStorage.create(
        space, capacity=None, cache_path=f"{s3_url}/storage", storage_options=s3_server, chunk_rows=16
    )
    storage.extend_length(40)
    storage.set(slice(0, 40), rows)
    storage.flush()
    reader = ZarrStorage.load_from(f"{s3_url}/storage", space, storage_options=s3_server)
    assert len(reader) == 40
    assert check_rows(reader.get(np.array([39, 0, 17, 17])))[:, 2].tolist() == [39, 0, 17, 17]
    EpisodeStore.create(f"{s3_url}/episodes", space, storage_options=s3_server)
    assert EpisodeStore.create(f"{s3_url}/episodes", space, storage_options=s3_server).episodes() == []  # reopens
    other = DictSpace(
        space.backend, {**dict(space.items()), "extra": BoxSpace(space.backend, 0, 1, np.float32, shape=())}
    )
    with pytest.raises(SpaceMismatchError, match="holds episodes of"):
        EpisodeStore.create(f"{s3_url}/episodes", other, storage_options=s3_server)
    with pytest.raises(FileNotFoundError, match="no episode store"):
        EpisodeStore.open(f"{s3_url}/nothing", storage_options=s3_server)
    with pytest.raises(ValueError, match="producer ids"):
        EpisodeStore.open(f"{s3_url}/episodes", storage_options=s3_server).writer("a/b")
