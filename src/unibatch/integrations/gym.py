"""Record Gymnasium rollouts into a ``TrajectoryReplayBuffer``, spaces converted automatically.

One row per ``env.step`` call, with Gymnasium's names::

    {"obs": o_t, "action": a_t, "reward": r_t, "terminated": bool, "truncated": bool, "next_obs": o_t+1}

``obs`` and ``next_obs`` follow ``env.observation_space`` and ``action`` ``env.action_space``, converted
by :func:`unibatch.spaces.from_gymnasium_space` (``Discrete`` -> integer ``BoxSpace``, ``MultiBinary`` ->
``BinarySpace``, ``Dict``/``Tuple`` nested); ``reward`` is a float32 scalar (``(-inf, inf)``), the two
flags ``BinarySpace(())``. ``next_obs`` of an episode's last step is the final observation the
environment returned (never the next reset's), so a transition table needs no look-ahead. The Minari
importer (:mod:`unibatch.integrations.minari`) produces rows of the same shape.

Each episode ends with ``mark_episode_end()``, which commits a buffer on disk, so a killed recording
keeps every finished episode. ``infos`` are not recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from unibatch._optional import require
from unibatch._typing import Device
from unibatch.backends import ComputeBackend, NumpyComputeBackend
from unibatch.buffers import TrajectoryReplayBuffer
from unibatch.errors import ReadOnlyError, SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import BinarySpace, BoxSpace, DictSpace, Space, TextSpace, TupleSpace, from_gymnasium_space
from unibatch.storages import SpaceStorage, storage_class
from unibatch.storages._base import PathLike

Policy = Callable[[Any], Any]
"""``policy(observation) -> action``, both as the environment takes and returns them."""


def rollout_step_space(
    env: Any, backend: ComputeBackend = NumpyComputeBackend, device: Device | None = None
) -> DictSpace:
    """The space of one recorded step of ``env`` (see the module docstring).

    >>> import gymnasium
    >>> space = rollout_step_space(gymnasium.make("CartPole-v1"))
    >>> list(space.keys()), space["action"]
    (['action', 'next_obs', 'obs', 'reward', 'terminated', 'truncated'], BoxSpace(0, 1, (), int64))
    """
    _check_env(env)
    observation = from_gymnasium_space(env.observation_space, backend, device)
    return DictSpace(
        backend,
        {
            "obs": observation,
            "action": from_gymnasium_space(env.action_space, backend, device),
            "reward": BoxSpace(backend, -np.inf, np.inf, "float32", device, shape=()),
            "terminated": BinarySpace(backend, (), device=device),
            "truncated": BinarySpace(backend, (), device=device),
            "next_obs": observation,
        },
        device=device,
    )


def create_rollout_buffer(
    env: Any,
    path: PathLike | None = None,
    *,
    backend: ComputeBackend = NumpyComputeBackend,
    device: Device | None = None,
    storage: type[SpaceStorage] | str | None = None,
    capacity: int | None = None,
    **storage_kwargs: Any,
) -> TrajectoryReplayBuffer:
    """An empty ``TrajectoryReplayBuffer`` for the steps of ``env``.

    Args:
        env: a ``gymnasium.Env``.
        path: directory of a persistent buffer (created); None keeps it in memory.
        backend: backend of the stored values.
        device: device of the stored values.
        storage: storage class or registered name (``"memmap"``, ``"hdf5"``, ...); None picks the
            embedded default, memmap on disk and memory otherwise.
        capacity: ring capacity in steps, or None to grow.
        **storage_kwargs: forwarded to the step storage's ``create``.
    """
    storage_cls = storage_class(storage) if isinstance(storage, str) else storage
    return TrajectoryReplayBuffer.create(
        rollout_step_space(env, backend, device),
        storage_cls,
        step_data_capacity=capacity,
        cache_path=path,
        **storage_kwargs,
    )


def record_rollouts(
    env: Any,
    buffer_or_path: TrajectoryReplayBuffer | PathLike | None = None,
    *,
    episodes: int,
    policy: Policy | None = None,
    seed: int | None = None,
    max_episode_steps: int | None = None,
) -> TrajectoryReplayBuffer:
    """Run ``episodes`` episodes of ``env`` and append every step to a ``TrajectoryReplayBuffer``.

    Args:
        env: a ``gymnasium.Env`` (one environment, not a vector one).
        buffer_or_path: a buffer to append to (its step space must be :func:`rollout_step_space`'s);
            a directory, where a buffer is reopened for appending, or created (NumPy, memmap) if there is
            none; or None for a new in-memory NumPy buffer. Use :func:`create_rollout_buffer` for other
            backends or storages.
        episodes: number of episodes to record.
        policy: ``policy(observation) -> action``; default ``env.action_space.sample()``.
        seed: seeds the first ``env.reset`` and, with the default policy, the action space.
        max_episode_steps: end an episode after this many steps, its last step marked ``truncated``.

    Returns:
        The buffer (the caller closes it). Episodes recorded into a buffer whose last episode was left
        open start a new episode first.

    >>> import gymnasium
    >>> buffer = record_rollouts(gymnasium.make("CartPole-v1"), episodes=2, seed=0)
    >>> buffer.current_episode_id, bool(buffer.get_at(-1)["step_data"]["terminated"])
    (2, True)
    """
    _check_env(env)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 0:
        raise ValueError(f"episodes must be an int >= 0, got {episodes!r}")
    if max_episode_steps is not None and (not isinstance(max_episode_steps, int) or max_episode_steps < 1):
        raise ValueError(f"max_episode_steps must be a positive int or None, got {max_episode_steps!r}")
    buffer = _target_buffer(env, buffer_or_path)
    if policy is None:
        if seed is not None:
            env.action_space.seed(seed)
        policy = _sample_action(env)
    _start_new_episode(buffer)
    space = buffer.step_data_buffer.single_space
    for episode in range(episodes):
        _record_episode(env, buffer, space, policy, seed if episode == 0 else None, max_episode_steps)
    return buffer


# ---------------------------------------------------------------------- recording
def _record_episode(
    env: Any,
    buffer: TrajectoryReplayBuffer,
    space: Space,
    policy: Policy,
    seed: int | None,
    max_episode_steps: int | None,
) -> None:
    observation, _ = env.reset(seed=seed)
    steps, done = 0, False
    while not done:
        action = policy(observation)
        next_observation, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        truncated = bool(truncated) or (max_episode_steps is not None and steps >= max_episode_steps)
        step = {
            "obs": observation,
            "action": action,
            "reward": reward,
            "terminated": bool(terminated),
            "truncated": truncated,
            "next_obs": next_observation,
        }
        buffer.append(_as_value(space, step))
        observation, done = next_observation, bool(terminated) or truncated
    buffer.mark_episode_end()


def _sample_action(env: Any) -> Policy:
    def sample(observation: Any) -> Any:
        return env.action_space.sample()

    return sample


def _as_value(space: Space, value: Any) -> Any:
    """``value`` as returned by Gymnasium, as a value of ``space`` (its backend, device and dtypes)."""
    if isinstance(space, DictSpace):
        return {key: _as_value(sub, value[key]) for key, sub in space.items()}
    if isinstance(space, TupleSpace):
        return tuple(_as_value(sub, item) for sub, item in zip(space.spaces, value, strict=True))
    if isinstance(space, TextSpace):
        return str(value)
    backend = space.backend
    if isinstance(space, BinarySpace):
        host = np.asarray(value).astype(bool)
    else:
        host = np.asarray(value, dtype=backend.numpy_dtype(space.dtype))
    return backend.asarray(host, dtype=space.dtype, device=space.device)


# ---------------------------------------------------------------------- buffers
def _target_buffer(env: Any, buffer_or_path: TrajectoryReplayBuffer | PathLike | None) -> TrajectoryReplayBuffer:
    """The buffer to append to: the one given, the one at the path (reopened or created), or a new one."""
    if isinstance(buffer_or_path, TrajectoryReplayBuffer):
        _check_buffer(env, buffer_or_path)
        return buffer_or_path
    if buffer_or_path is None:
        return create_rollout_buffer(env)
    if not TrajectoryReplayBuffer.is_loadable_from(buffer_or_path):
        return create_rollout_buffer(env, Path(buffer_or_path))
    buffer = TrajectoryReplayBuffer.load_from(buffer_or_path, backend=NumpyComputeBackend, read_only=False)
    try:
        _check_buffer(env, buffer)
    except SpaceMismatchError:
        buffer.close()
        raise
    return buffer


def _check_buffer(env: Any, buffer: TrajectoryReplayBuffer) -> None:
    """Raise unless ``buffer`` is writable and records the steps of ``env``."""
    if not buffer.is_mutable:
        raise ReadOnlyError("record_rollouts appends to the buffer, but it is read-only (open it with read_only=False)")
    expected = rollout_step_space(env, buffer.backend, buffer.device)
    if buffer.step_data_buffer.single_space != expected:
        raise SpaceMismatchError(
            f"the buffer's steps are {buffer.step_data_buffer.single_space!r}, but this environment records "
            f"{expected!r} (see rollout_step_space)"
        )


def _start_new_episode(buffer: TrajectoryReplayBuffer) -> None:
    """End the buffer's current episode if it already holds steps (an episode left open)."""
    if len(buffer) == 0:
        return
    last = buffer.step_episode_id_buffer.get_at(-1)
    if int(buffer.backend.to_numpy(last)) == buffer.current_episode_id:
        buffer.mark_episode_end()


def _check_env(env: Any) -> None:
    gymnasium = require("gymnasium", "gym")
    if not isinstance(env, gymnasium.Env):
        kind = "a vector environment" if isinstance(env, gymnasium.vector.VectorEnv) else type(env).__name__
        raise UnsupportedOperationError(f"expected one gymnasium.Env, got {kind}")
