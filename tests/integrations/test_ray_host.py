"""The body of a buffer actor, without Ray: exactly-once chunks, ordering, restarts from disk, episode ids."""

from __future__ import annotations

import asyncio
import functools

import numpy as np
import pytest

from unibatch.backends import backend_from_name
from unibatch.batches import FrameStackedBatch
from unibatch.errors import SpaceMismatchError
from unibatch.integrations.ray import BufferActor, BufferHost, BufferSpec
from unibatch.spaces import BoxSpace, DictSpace, json_to_space, space_to_json

NUMPY = backend_from_name("numpy")
SPACE = DictSpace(NUMPY, {"step": BoxSpace(NUMPY, 0, 1 << 30, np.int64, shape=())})


def rows(*steps):
    return {"step": np.asarray(steps, np.int64)}


def spec(kind, path=None, capacity=None):
    return BufferSpec(kind, space_to_json(SPACE), None if path is None else str(path), capacity)


def stored(host):
    return host.get(slice(0, host.length()), False)[0]["step"].tolist()


@pytest.mark.parametrize("persistent", [False, True])
def test_chunks_apply_once_and_in_order(tmp_path, persistent):
    host = BufferHost(spec("replay", tmp_path / "b" if persistent else None))
    assert host.extend("a", 0, rows(0, 1)) == (True, 2)
    assert host.extend("a", 0, rows(0, 1)) == (False, 2)  # a retried chunk
    assert host.extend("b", 0, rows(10)) == (True, 3)
    with pytest.raises(ValueError, match="chunk 3 of producer a arrived before chunk 1"):
        host.extend("a", 3, rows(5))
    assert host.extend("a", 1, rows(2)) == (True, 4)
    assert stored(host) == [0, 1, 10, 2] and host.applied() == {"a": 1, "b": 0}
    with pytest.raises(SpaceMismatchError):
        host.extend("a", 2, {"step": np.zeros((1, 2), np.int64)})
    assert host.next_seq("a") == 2 and stored(host) == [0, 1, 10, 2]  # a refused chunk changes nothing


def test_a_restarted_host_reopens_its_rows_and_producer_records(tmp_path):
    host = BufferHost(spec("replay", tmp_path / "b", capacity=3))
    for seq in range(3):
        host.extend("a", seq, rows(2 * seq, 2 * seq + 1))
    host.close()
    again = BufferHost(spec("replay", tmp_path / "b", capacity=3))  # what Ray runs after a restart
    assert stored(again) == [3, 4, 5] and again.applied() == {"a": 2}
    assert again.extend("a", 2, rows(4, 5)) == (False, 3)  # the retry of the last chunk is not applied twice
    assert again.extend("a", 3, rows(6)) == (True, 3) and stored(again) == [4, 5, 6]


def test_trajectory_hosts_give_each_producer_episode_a_global_id(tmp_path):
    host = BufferHost(spec("trajectory", tmp_path / "t"))
    host.extend("a", 0, rows(0, 1), np.array([0, 0]))
    host.extend("b", 0, rows(10, 11, 12), np.array([0, 0, 1]))
    host.extend("a", 1, rows(2, 3), np.array([0, 1]))
    host.close()
    again = BufferHost(spec("trajectory", tmp_path / "t"))  # the episode in progress keeps its id
    again.extend("a", 2, rows(4), np.array([1]))
    data, metadata, length = again.get(slice(0, 8), True)
    assert length == 8 and data["step_data"]["step"].tolist() == [0, 1, 10, 11, 12, 2, 3, 4]
    assert metadata["episode_ids"].tolist() == [0, 0, 1, 1, 2, 0, 3, 3]
    with pytest.raises(SpaceMismatchError, match="episode ids"):
        again.extend("a", 3, rows(5))


def test_views_are_built_once_and_sampled_from_seeds(tmp_path):
    host = BufferHost(spec("trajectory"))
    host.extend("a", 0, rows(*range(10)), np.array([0] * 5 + [1] * 5))
    mask = FrameStackedBatch.get_valid_mask_function_with_episodeid_key("episode_ids", is_in_metadata=True)
    info = host.register_view(
        "w", functools.partial(FrameStackedBatch, prefetch_horizon=1, get_valid_mask_function=mask)
    )
    view_space = json_to_space(info["space"], NUMPY)
    assert info["length"] == 10 and view_space == FrameStackedBatch(host.buffer, prefetch_horizon=1).single_space
    batches, length = host.sample("w", [4, 3], [7, 8], True, False)
    again, _ = host.sample("w", [4, 3], [7, 8], True, False)
    assert length == 10 and [b[0]["step_data"]["step"].shape for b in batches] == [(4, 2), (3, 2)]
    assert batches[0][0]["step_data"]["step"].tolist() == again[0][0]["step_data"]["step"].tolist()
    steps = batches[0][0]["step_data"]["step"]
    valid = batches[0][1]["slice_valid_mask"]
    assert (valid[:, 0] == ~np.isin(steps[:, 1], [0, 5])).all()
    flat, _ = host.sample("w", [2], [1], False, True)
    assert flat[0][0].shape == (2, 2, 1)
    empty = BufferHost(spec("replay"))
    empty.register_view("all", None)
    with pytest.raises(IndexError, match="empty"):
        empty.sample("all", [1], [0], False, False)


def test_an_early_chunk_waits_for_its_predecessor():
    async def scenario():
        actor = BufferActor(spec("replay"), gap_timeout=5.0)
        early = asyncio.ensure_future(actor.extend("a", 1, rows(2, 3)))
        await asyncio.sleep(0.05)
        assert not early.done() and await actor.length() == 0
        assert (await actor.extend("a", 0, rows(0, 1)))[0] is True
        assert await early == (True, 4)
        assert stored(actor.host) == [0, 1, 2, 3]
        late = BufferActor(spec("replay"), gap_timeout=0.05)
        with pytest.raises(TimeoutError, match="never came"):
            await late.extend("a", 1, rows(1))
        assert await late.length() == 0

    asyncio.run(scenario())


def test_chunks_that_arrive_together_share_one_commit(tmp_path):
    async def scenario():
        actor = BufferActor(spec("replay", tmp_path / "b"))
        commits = []
        commit = actor.host.commit
        actor.host.commit = lambda: (commits.append(actor.host.length()), commit())[1]
        replies = await asyncio.gather(*(actor.extend("a", seq, rows(seq)) for seq in range(5)))
        assert [applied for applied, _ in replies] == [True] * 5 and len(commits) < 5 and commits[-1] == 5
        again = BufferHost(spec("replay", tmp_path / "b"))  # every acknowledged chunk is committed
        assert stored(again) == [0, 1, 2, 3, 4] and again.applied() == {"a": 4}

    asyncio.run(scenario())


def test_records_of_uncommitted_chunks_never_reach_the_disk(tmp_path):
    host = BufferHost(spec("replay", tmp_path / "b", capacity=4))
    host.extend("a", 0, rows(0, 1, 2, 3))
    host.extend("a", 1, rows(4, 5), commit=False)  # a full ring commits by itself before overwriting
    reopened = BufferHost(spec("replay", tmp_path / "b", capacity=4))
    assert reopened.applied() == {"a": 0}  # so Ray's retry of chunk 1 is applied, not taken as a duplicate
    assert reopened.extend("a", 1, rows(4, 5)) == (True, 4) and stored(reopened) == [2, 3, 4, 5]


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="kind"):
        BufferSpec("ring", space_to_json(SPACE))
