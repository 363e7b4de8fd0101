"""Buffers hosted by Ray actors: one learner, many producers, several machines (DESIGN §7).

Start an actor with :func:`serve_replay_buffer` or :func:`serve_trajectory_buffer`, then talk
to it through a :class:`RemoteBuffer` (a ``BatchBase``: samplers, views and windows work on
it), a :class:`ShardedRemoteBuffer` over several actors, and a :class:`RemoteSampler` that
samples on the actors. With a ``cache_path`` the buffer is persistent and Ray restarts a dead
actor from it: every acknowledged chunk is committed, and chunks Ray retries are applied once.

Needs ``pip install "unibatch[ray]"``.
"""

from __future__ import annotations

import os
from typing import Any

from unibatch.integrations.ray._host import REPLAY, TRAJECTORY, BufferActor, BufferHost, BufferSpec
from unibatch.integrations.ray.client import RemoteBuffer, ShardedRemoteBuffer, ray_module
from unibatch.integrations.ray.sampler import RemoteSampler
from unibatch.spaces import Space, space_to_json
from unibatch.storages import SpaceStorage

__all__ = [
    "BufferActor",
    "BufferHost",
    "BufferSpec",
    "RemoteBuffer",
    "RemoteSampler",
    "ShardedRemoteBuffer",
    "serve_buffer",
    "serve_replay_buffer",
    "serve_trajectory_buffer",
]

PathLike = str | os.PathLike[str]


def serve_buffer(spec: BufferSpec, *, name: str | None = None, **actor_options: Any) -> Any:
    """Start a buffer actor for ``spec`` and return its handle.

    A persistent buffer (``spec.cache_path``) restarts up to 3 times by default and Ray retries
    the calls in flight on the new actor; an in-memory one does not restart (its rows would be
    gone). ``actor_options`` go to Ray's ``.options`` (``max_restarts``, ``num_cpus``, ``resources``...).
    """
    ray = ray_module()
    persistent = spec.cache_path is not None
    options: dict[str, Any] = {
        "num_cpus": 0,
        "max_restarts": 3 if persistent else 0,
        "max_task_retries": -1 if persistent else 0,
        "max_concurrency": 64,  # an asyncio actor: early chunks wait without blocking the others
    }
    if name is not None:
        options["name"] = name
    options.update(actor_options)
    return ray.remote(BufferActor).options(**options).remote(spec)


def serve_replay_buffer(
    single_instance_space: Space,
    storage_cls: type[SpaceStorage] | None = None,
    *,
    cache_path: PathLike | None = None,
    capacity: int | None = None,
    name: str | None = None,
    actor_options: dict[str, Any] | None = None,
    **storage_kwargs: Any,
) -> Any:
    """An actor hosting ``ReplayBuffer.create(storage_cls, single_instance_space, ...)``.

    When ``cache_path`` (a path on the actor's machine) already holds a committed buffer, the
    actor reopens it instead, as it does after a restart.
    """
    spec = BufferSpec(
        REPLAY,
        space_to_json(single_instance_space),
        None if cache_path is None else os.fspath(cache_path),
        capacity,
        None if storage_cls is None else storage_cls.registered_name,
        dict(storage_kwargs),
    )
    return serve_buffer(spec, name=name, **(actor_options or {}))


def serve_trajectory_buffer(
    step_data_instance_space: Space,
    step_data_storage_cls: type[SpaceStorage] | None = None,
    *,
    step_data_capacity: int | None = None,
    cache_path: PathLike | None = None,
    name: str | None = None,
    actor_options: dict[str, Any] | None = None,
    **storage_kwargs: Any,
) -> Any:
    """An actor hosting ``TrajectoryReplayBuffer.create(step_data_instance_space, ...)``: steps and episode ids.

    When ``cache_path`` already holds a committed buffer, the actor reopens it instead.
    """
    spec = BufferSpec(
        TRAJECTORY,
        space_to_json(step_data_instance_space),
        None if cache_path is None else os.fspath(cache_path),
        step_data_capacity,
        None if step_data_storage_cls is None else step_data_storage_cls.registered_name,
        dict(storage_kwargs),
    )
    return serve_buffer(spec, name=name, **(actor_options or {}))
