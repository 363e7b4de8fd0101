"""Bad episode ids never poison a TrajectoryReplayBuffer (issue 16 §5).

Negative, future and backward ids, ids of episodes without episode data and episode data of
the wrong length are refused with a typed error before anything is written: the whole buffer
stays readable and unchanged (rows, ids, episode table, current episode), also after a reopen.
The rules are in ``unibatch.buffers._episode_ids``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch import BoxSpace, DictSpace, TrajectoryReplayBuffer
from unibatch.buffers.episodes import InvalidEpisodeIdError
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import concatenate


def step_space(backend):
    return DictSpace(backend, {"obs": BoxSpace(backend, -100, 100, "float32", shape=(2,))})


def episode_space(backend):
    return DictSpace(backend, {"task": BoxSpace(backend, 0, 1000, "int32")})


def steps(backend, n: int, first: float = 0.0) -> Any:
    return {"obs": backend.from_numpy(np.arange(first, first + 2 * n, dtype=np.float32).reshape(n, 2))}


def tasks(backend, *values: int) -> Any:
    return concatenate(episode_space(backend), [{"task": backend.asarray(np.int32(v))} for v in values])


def ids_of(backend, *values: int) -> Any:
    return backend.asarray(np.array(values), dtype=backend.default_integer_dtype)


def make(backend, tmp_path, persistent: bool, episodes: bool = True) -> TrajectoryReplayBuffer:
    buffer = TrajectoryReplayBuffer.create(
        step_space(backend),
        None,
        step_data_capacity=12,
        episode_data_instance_space=episode_space(backend) if episodes else None,
        episode_data_capacity=6,
        cache_path=tmp_path / "trajectory" if persistent else None,
    )
    for episode in range(2):  # episodes 0 and 1 with their data, 3 steps each; then episode 2 is current
        if episodes:
            buffer.set_current_episode_data({"task": backend.asarray(np.int32(10 * episode))})
        buffer.extend(steps(backend, 3, 10 * episode))
        buffer.mark_episode_end()
    return buffer


def state(buffer: TrajectoryReplayBuffer) -> dict[str, Any]:
    """Everything a reader sees; reading the whole buffer must work (no MissingEpisodeDataError)."""
    data, metadata = buffer.get_at_with_metadata(slice(None))
    rows = {"obs": to_numpy(data["step_data"]["obs"]).tolist()}
    if "episode_data" in data:
        rows["task"] = to_numpy(data["episode_data"]["task"]).tolist()
    return {
        "len": len(buffer),
        "current": buffer.current_episode_id,
        "table": buffer.episode_id_to_index_map,
        "ids": to_numpy(metadata["episode_ids"]).tolist(),
        "rows": rows,
    }


def assert_refused(
    buffer: TrajectoryReplayBuffer,
    write: Callable[[], None],
    tmp_path,
    persistent: bool,
    error: type[Exception] = InvalidEpisodeIdError,
    match: str | None = None,
) -> TrajectoryReplayBuffer:
    """``write`` raises ``error`` and changes nothing, in memory and after flush + reopen."""
    before = state(buffer)
    with pytest.raises(error, match=match):
        write()
    assert state(buffer) == before
    if not persistent:
        return buffer
    buffer.flush()
    buffer.close()
    again = TrajectoryReplayBuffer.load_from(tmp_path / "trajectory", backend=buffer.backend)
    assert state(again) == before
    return again


PERSISTENCE = pytest.mark.parametrize("persistent", [False, True], ids=["memory", "persistent"])


@PERSISTENCE
@pytest.mark.parametrize("with_data", [False, True], ids=["ids", "ids+data"])
@pytest.mark.parametrize(
    ("bad", "match"),
    [((-1,), "got -1"), ((2, 3), "got 3"), ((2, 1), "got episode 1 at step 7 after episode 2"), ((0,), "episode 0")],
    ids=["negative", "future", "backward-within", "backward-after-newest"],
)
def test_extend_refuses_bad_ids_and_changes_nothing(backend, tmp_path, persistent, with_data, bad, match):
    buffer = make(backend, tmp_path, persistent)
    value = {"step_data": steps(backend, len(bad), 50), "episode_ids": ids_of(backend, *bad)}
    if with_data:
        value["episode_data"] = tasks(backend, *range(len(bad)))
    buffer = assert_refused(buffer, lambda: buffer.extend(value), tmp_path, persistent, match=match)
    buffer.extend({"step_data": steps(backend, 2, 60), "episode_ids": ids_of(backend, 2, 2)})  # valid ids still work
    buffer.set_current_episode_data({"task": backend.asarray(np.int32(20))})
    assert state(buffer)["ids"] == [0, 0, 0, 1, 1, 1, 2, 2]


@PERSISTENCE
def test_ids_without_episode_data_are_refused_unless_current(backend, tmp_path, persistent):
    buffer = make(backend, tmp_path, persistent)
    buffer.current_episode_id = 4
    write = lambda: buffer.extend({"step_data": steps(backend, 1, 70), "episode_ids": ids_of(backend, 3)})  # noqa: E731
    buffer = assert_refused(buffer, write, tmp_path, persistent, match="episode 3 .* has no episode data")
    with_data = {
        "step_data": steps(backend, 1, 70),
        "episode_ids": ids_of(backend, 3),
        "episode_data": tasks(backend, 30),
    }
    buffer.extend(with_data)
    buffer.extend({"step_data": steps(backend, 1, 80), "episode_ids": ids_of(backend, 4)})  # the current episode
    buffer.set_current_episode_data({"task": backend.asarray(np.int32(40))})  # its data may come after its steps
    assert state(buffer)["ids"][-2:] == [3, 4] and buffer.episode_id_to_index_map[3] is not None


@PERSISTENCE
@pytest.mark.parametrize(
    ("position", "bad", "match"),
    [
        (1, 7, "got 7"),
        (1, -1, "got -1"),
        (5, 0, "after episode 0|episode 0 at step"),
        (0, 2, "episode 0 at step 1 after episode 2"),
    ],
    ids=["future", "negative", "backward", "ahead-of-next"],
)
def test_set_at_refuses_bad_ids_and_changes_nothing(backend, tmp_path, persistent, position, bad, match):
    buffer = make(backend, tmp_path, persistent)
    write = lambda: buffer.set_at(position, {"episode_ids": ids_of(backend, bad)[0]})  # noqa: E731
    buffer = assert_refused(buffer, write, tmp_path, persistent, match=match)
    index = backend.asarray(np.array([position, 2]), dtype=backend.default_index_dtype)
    batch = lambda: buffer.set_at(index, {"episode_ids": ids_of(backend, bad, 0)})  # noqa: E731
    assert_refused(buffer, batch, tmp_path, False)


def test_set_at_of_an_id_without_episode_data_is_refused(backend, tmp_path):
    buffer = make(backend, tmp_path, False)
    buffer.extend(steps(backend, 2, 90))  # episode 2, current, no data yet: readable once its data is set
    buffer.set_current_episode_data({"task": backend.asarray(np.int32(20))})
    buffer.current_episode_id = 4
    write = lambda: buffer.set_at(7, {"episode_ids": ids_of(backend, 3)[0]})  # noqa: E731
    assert_refused(buffer, write, tmp_path, False, match="episode 3 .* has no episode data")
    # With its episode data in the same call the id is fine; so is the current episode.
    buffer.set_at(6, {"episode_ids": ids_of(backend, 1)[0]})
    assert state(buffer)["ids"] == [0, 0, 0, 1, 1, 1, 1, 2]


@PERSISTENCE
def test_episode_data_of_another_length_is_a_typed_error(backend, tmp_path, persistent):
    buffer = make(backend, tmp_path, persistent)
    buffer.current_episode_id = 3
    value = {"step_data": steps(backend, 2), "episode_ids": ids_of(backend, 2, 3), "episode_data": tasks(backend, 1)}
    assert_refused(buffer, lambda: buffer.extend(value), tmp_path, persistent, SpaceMismatchError, "expected 2 rows")


def test_negative_episode_data_ids_and_current_ids_are_refused(backend, tmp_path):
    buffer = make(backend, tmp_path, False)
    one = {"task": backend.asarray(np.int32(5))}
    assert_refused(buffer, lambda: buffer.set_episode_data_at(-1, one), tmp_path, False, match="non-negative")
    several = lambda: buffer.set_episode_data_at(ids_of(backend, 4, -2), tasks(backend, 1, 2))  # noqa: E731
    assert_refused(buffer, several, tmp_path, False, match="non-negative")

    def set_current(value: Any) -> None:
        buffer.current_episode_id = value

    assert_refused(buffer, lambda: set_current(-1), tmp_path, False, match="got -1")
    assert_refused(buffer, lambda: set_current(0), tmp_path, False, match=r"newest step \(1\)")
    assert_refused(buffer, lambda: set_current(2.5), tmp_path, False)


@PERSISTENCE
def test_without_episode_data_ids_may_interleave_but_stay_in_range(backend, tmp_path, persistent):
    """Several producers may record at once (Ray hosts): ids may go back, never below 0 or past the current."""
    buffer = make(backend, tmp_path, persistent, episodes=False)
    buffer.extend({"step_data": steps(backend, 2), "episode_ids": ids_of(backend, 0, 2)})
    negative = {"step_data": steps(backend, 1), "episode_ids": ids_of(backend, -1)}
    buffer = assert_refused(buffer, lambda: buffer.extend(negative), tmp_path, persistent)
    future = {"step_data": steps(backend, 1), "episode_ids": ids_of(backend, 3)}
    buffer = assert_refused(buffer, lambda: buffer.extend(future), tmp_path, persistent)
    assert state(buffer)["ids"] == [0, 0, 0, 1, 1, 1, 0, 2]


def test_a_full_ring_releases_episode_slots_in_order(backend, tmp_path):
    """Valid ids keep every remaining step readable while the ring overwrites whole episodes."""
    buffer = make(backend, tmp_path, False)
    for episode in range(2, 8):
        buffer.set_current_episode_data({"task": backend.asarray(np.int32(10 * episode))})
        ids = ids_of(backend, episode, episode, episode)
        buffer.extend({"step_data": steps(backend, 3, episode), "episode_ids": ids})
        buffer.mark_episode_end()
        assert len(state(buffer)["rows"]["task"]) == len(buffer)
    assert state(buffer)["ids"] == [4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 7]
