"""Recording Gymnasium rollouts: real environments, values checked against what the environment returned."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from tests.conftest import to_numpy

from unibatch import BinarySpace, BoxSpace, NumpyComputeBackend, TrajectoryReplayBuffer
from unibatch.errors import ReadOnlyError, SpaceMismatchError, UnsupportedOperationError
from unibatch.integrations.gym import create_rollout_buffer, record_rollouts, rollout_step_space

NP = NumpyComputeBackend


class Reacher(gymnasium.Env):
    """A point moving towards a goal; Dict observations (Box, Discrete, MultiBinary); 3 + goal steps long."""

    observation_space = spaces.Dict(
        {
            "position": spaces.Box(-10.0, 10.0, (2,), np.float32),
            "goal": spaces.Discrete(4),
            "contacts": spaces.MultiBinary(3),
        }
    )
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._steps = 0
        self._position = self.np_random.uniform(-1, 1, size=2).astype(np.float32)
        self._goal = int(self.np_random.integers(4))
        return self._observation(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self._steps += 1
        self._position = np.clip(self._position + action, -10, 10).astype(np.float32)
        reward = -float(np.abs(self._position).sum())
        return self._observation(), reward, self._steps >= 3 + self._goal, False, {}

    def _observation(self) -> dict[str, Any]:
        contacts = (np.abs(np.array([*self._position, self._goal])) > 0.5).astype(np.int8)
        return {"position": self._position.copy(), "goal": np.int64(self._goal), "contacts": contacts}


class Recorder(gymnasium.Wrapper):
    """Keeps a copy of everything ``reset`` and ``step`` return, per episode."""

    def __init__(self, env: gymnasium.Env) -> None:
        super().__init__(env)
        self.episodes: list[dict[str, list[Any]]] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        observation, info = self.env.reset(**kwargs)
        self.episodes.append({"obs": [copy.deepcopy(observation)], "action": [], "reward": [], "flags": []})
        return observation, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        episode = self.episodes[-1]
        episode["obs"].append(copy.deepcopy(observation))
        episode["action"].append(copy.deepcopy(action))
        episode["reward"].append(reward)
        episode["flags"].append((terminated, truncated))
        return observation, reward, terminated, truncated, info

    def column(self, key: str, shift: int = 0) -> np.ndarray:
        """``key`` over every recorded step in order; ``"obs"`` with ``shift`` 1 gives next observations."""
        if key == "obs":
            return np.stack(
                [o for episode in self.episodes for o in episode["obs"][shift : len(episode["obs"]) - 1 + shift]]
            )
        return np.array([v for episode in self.episodes for v in episode[key]])

    def dict_column(self, sub: str, shift: int = 0) -> np.ndarray:
        return np.stack([o[sub] for e in self.episodes for o in e["obs"][shift : len(e["obs"]) - 1 + shift]])


def cartpole() -> Recorder:
    return Recorder(gymnasium.make("CartPole-v1"))


def test_step_space() -> None:
    space = rollout_step_space(gymnasium.make("CartPole-v1"))
    assert sorted(space.keys()) == ["action", "next_obs", "obs", "reward", "terminated", "truncated"]
    observation = gymnasium.make("CartPole-v1").observation_space
    assert space["obs"] == BoxSpace(NP, observation.low, observation.high, "float32", shape=(4,))
    assert space["next_obs"] == space["obs"]
    assert space["action"] == BoxSpace(NP, 0, 1, "int64", shape=())
    assert space["reward"] == BoxSpace(NP, -np.inf, np.inf, "float32", shape=())
    assert space["terminated"] == BinarySpace(NP, ()) and space["truncated"] == BinarySpace(NP, ())
    reacher = rollout_step_space(Reacher())
    assert reacher["obs"]["contacts"] == BinarySpace(NP, (3,))
    assert reacher["obs"]["goal"] == BoxSpace(NP, 0, 3, "int64", shape=())


def test_cartpole_values_are_what_the_env_returned(backend) -> None:
    env = cartpole()
    buffer = create_rollout_buffer(env, backend=backend)
    assert record_rollouts(env, buffer, episodes=3, seed=0) is buffer
    lengths = [len(episode["action"]) for episode in env.episodes]
    assert len(env.episodes) == 3 and len(buffer) == sum(lengths)
    rows, metadata = buffer.get_at_with_metadata(slice(None))
    steps = rows["step_data"]
    np.testing.assert_array_equal(to_numpy(metadata["episode_ids"]), np.repeat([0, 1, 2], lengths))
    np.testing.assert_array_equal(to_numpy(steps["obs"]), env.column("obs"))
    np.testing.assert_array_equal(to_numpy(steps["next_obs"]), env.column("obs", shift=1))
    np.testing.assert_array_equal(to_numpy(steps["action"]), env.column("action"))
    np.testing.assert_array_equal(to_numpy(steps["reward"]), env.column("reward").astype(np.float32))
    flags = env.column("flags")
    np.testing.assert_array_equal(to_numpy(steps["terminated"]), flags[:, 0])
    np.testing.assert_array_equal(to_numpy(steps["truncated"]), flags[:, 1])
    ends = np.cumsum(lengths) - 1  # every episode ends on its last step, and only there
    done = to_numpy(steps["terminated"]) | to_numpy(steps["truncated"])
    assert done[ends].all() and done.sum() == 3
    assert buffer.current_episode_id == 3
    buffer.close()


def test_dict_observations_recorded_to_disk_and_reopened(tmp_path) -> None:
    env = Recorder(Reacher())
    buffer = record_rollouts(env, tmp_path / "rollouts", episodes=4, seed=1)
    buffer.close()
    reopened = TrajectoryReplayBuffer.load_from(tmp_path / "rollouts", backend=NP, read_only=True)
    lengths = [len(episode["action"]) for episode in env.episodes]
    assert len(reopened) == sum(lengths) and reopened.current_episode_id == 4
    rows, metadata = reopened.get_at_with_metadata(slice(None))
    steps = rows["step_data"]
    assert metadata["episode_ids"].tolist() == np.repeat(np.arange(4), lengths).tolist()
    for sub in ("position", "goal"):
        np.testing.assert_array_equal(steps["obs"][sub], env.dict_column(sub))
        np.testing.assert_array_equal(steps["next_obs"][sub], env.dict_column(sub, shift=1))
    assert steps["obs"]["contacts"].dtype == np.bool_
    np.testing.assert_array_equal(steps["obs"]["contacts"], env.dict_column("contacts").astype(bool))
    np.testing.assert_array_equal(steps["action"], env.column("action"))
    np.testing.assert_array_equal(steps["reward"], env.column("reward").astype(np.float32))
    assert steps["terminated"].sum() == 4 and not steps["truncated"].any()
    reopened.close()


def test_appending_to_a_path_continues_the_episodes(tmp_path) -> None:
    env = Recorder(Reacher())
    record_rollouts(env, tmp_path / "rollouts", episodes=2, seed=2).close()
    buffer = record_rollouts(env, tmp_path / "rollouts", episodes=1)
    lengths = [len(episode["action"]) for episode in env.episodes]
    ids = buffer.get_at_with_metadata(slice(None))[1]["episode_ids"]
    assert ids.tolist() == np.repeat([0, 1, 2], lengths).tolist()
    np.testing.assert_array_equal(buffer.get_at(slice(None))["step_data"]["action"], env.column("action"))
    buffer.close()


def test_an_open_episode_is_ended_first() -> None:
    env = Reacher()
    buffer = create_rollout_buffer(env)
    record_rollouts(env, buffer, episodes=1, seed=3)
    buffer.append(buffer.get_at(0)["step_data"])  # a step of episode 1, left open
    record_rollouts(env, buffer, episodes=1)
    ids = buffer.get_at_with_metadata(slice(None))[1]["episode_ids"].tolist()
    assert ids[-1] == 2 and ids.count(1) == 1 and buffer.current_episode_id == 3


def test_policy_max_steps_and_seeds() -> None:
    seen: list[Any] = []

    def push_left(observation: Any) -> int:
        seen.append(observation.copy())
        return 0

    env = cartpole()
    buffer = record_rollouts(env, episodes=3, policy=push_left, seed=4, max_episode_steps=4)
    steps = buffer.get_at(slice(None))["step_data"]
    np.testing.assert_array_equal(np.stack(seen), steps["obs"])
    assert (steps["action"] == 0).all()
    lengths = [len(episode["action"]) for episode in env.episodes]
    assert all(length <= 4 for length in lengths)
    last = np.cumsum(lengths) - 1
    assert (steps["truncated"][last] | steps["terminated"][last]).all()
    assert steps["truncated"][last][np.array(lengths) == 4].all()

    first = record_rollouts(gymnasium.make("CartPole-v1"), episodes=2, seed=5).get_at(slice(None))
    second = record_rollouts(gymnasium.make("CartPole-v1"), episodes=2, seed=5).get_at(slice(None))
    np.testing.assert_array_equal(first["step_data"]["action"], second["step_data"]["action"])
    np.testing.assert_array_equal(first["step_data"]["obs"], second["step_data"]["obs"])


def test_errors(tmp_path) -> None:
    buffer = create_rollout_buffer(gymnasium.make("CartPole-v1"))
    with pytest.raises(SpaceMismatchError, match="but this environment records"):
        record_rollouts(Reacher(), buffer, episodes=1)
    vector = gymnasium.vector.SyncVectorEnv([Reacher])
    with pytest.raises(UnsupportedOperationError, match="expected one gymnasium.Env, got a vector environment"):
        record_rollouts(vector, episodes=1)
    vector.close()
    with pytest.raises(ValueError, match="episodes must be an int >= 0, got -1"):
        record_rollouts(Reacher(), episodes=-1)
    with pytest.raises(ValueError, match="max_episode_steps must be a positive int or None, got 0"):
        record_rollouts(Reacher(), episodes=1, max_episode_steps=0)
    record_rollouts(Reacher(), tmp_path / "done", episodes=1).close()
    with pytest.raises(SpaceMismatchError, match="but this environment records"):
        record_rollouts(gymnasium.make("CartPole-v1"), tmp_path / "done", episodes=1)  # reopened, then closed
    read_only = TrajectoryReplayBuffer.load_from(tmp_path / "done", backend=NP, read_only=True)
    with pytest.raises(ReadOnlyError, match="read-only"):
        record_rollouts(Reacher(), read_only, episodes=1)
    read_only.close()
