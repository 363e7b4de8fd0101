"""``TrajectoryReplayBuffer``: step data, the episode id of every step, optional episode data.

Three ring buffers move in lockstep: ``step_data_buffer`` and ``step_episode_id_buffer`` hold
one row per step, ``episode_data_buffer`` one row per episode *slot*. An :class:`EpisodeSlots`
table maps episode ids to slots; a slot is released once every step of its episode has been
overwritten, and an episode's data may be set before its first step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import NotRequired, TypedDict

from unibatch._typing import Device
from unibatch.backends import ComputeBackend
from unibatch.batches import BatchBase
from unibatch.batches._base import Metadata
from unibatch.batches._indexing import NormalizedIndex, index_length, is_single
from unibatch.buffers._metadata import read_metadata, write_metadata
from unibatch.buffers._state import RingState
from unibatch.buffers.episodes import EpisodeSlots
from unibatch.buffers.replay_buffer import ReplayBuffer
from unibatch.errors import SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import BoxSpace, DictSpace, Space, batch_size_data, batch_space, check_data, get_at
from unibatch.storages import SpaceStorage
from unibatch.storages._directories import new_directory, parse_capacity, removes_on_failure

PathLike = str | os.PathLike[str]
BUFFER_TYPE = "TrajectoryReplayBuffer"
EPISODE_IDS_KEY = "episode_ids"
PARTS = ("step_data", "step_episode_ids", "episode_data")


class TrajectoryData(TypedDict):
    """One step (or a batch of steps) with its episode's data."""

    step_data: Any
    episode_data: NotRequired[Any]


class TrajectoryReplayBuffer(BatchBase):
    """Replay buffer that tracks step-level and episode-level data (see the module docstring).

    Samples are ``{"step_data": ..., "episode_data": ...}`` (the second key only with an
    episode buffer); the metadata carries ``episode_ids``, so ``FrameStackedBatch`` with
    ``get_valid_mask_function_with_episodeid_key("episode_ids", is_in_metadata=True)`` never
    mixes episodes.
    """

    def __init__(
        self,
        step_data_buffer: ReplayBuffer,
        step_episode_id_buffer: ReplayBuffer,
        episode_data_buffer: ReplayBuffer | None,
        current_episode_id: int = 0,
        episode_id_to_index_map: Mapping[int, int] | None = None,
        multiprocessing: bool = False,
        *,
        cache_path: PathLike | None = None,
    ) -> None:
        _check_parts(step_data_buffer, step_episode_id_buffer, episode_data_buffer)
        backend = step_data_buffer.backend
        spaces: dict[str, Space] = {"step_data": step_data_buffer.single_space}
        if episode_data_buffer is not None:
            spaces["episode_data"] = episode_data_buffer.single_space
        metadata = dict(step_data_buffer.single_metadata_space or {})
        metadata[EPISODE_IDS_KEY] = step_episode_id_buffer.single_space
        super().__init__(DictSpace(backend, spaces), DictSpace(backend, metadata))
        self.step_data_buffer = step_data_buffer
        self.step_episode_id_buffer = step_episode_id_buffer
        self.episode_data_buffer = episode_data_buffer
        self._cache_path = None if cache_path is None else Path(cache_path)
        self._multiprocessing = multiprocessing
        self._current = RingState(int(current_episode_id), 0, shared=multiprocessing)
        self._slots = None
        if episode_data_buffer is not None:
            self._slots = EpisodeSlots(episode_data_buffer.capacity, shared=multiprocessing)
            if episode_id_to_index_map:
                self._slots.load_dict(dict(episode_id_to_index_map))
        self.extra_metadata: dict[str, Any] = {}
        """JSON values committed together with the steps (see ``ReplayBuffer.extra_metadata``)."""
        # One commit point: the step parts move in lockstep and commit through this buffer's metadata.
        for part in (step_data_buffer, step_episode_id_buffer):
            part._commit_hook = self._commit_steps

    # ------------------------------------------------------------------ properties
    @property
    def capacity(self) -> int | None:
        return self.step_episode_id_buffer.capacity

    @property
    def episode_capacity(self) -> int | None:
        return None if self.episode_data_buffer is None else self.episode_data_buffer.capacity

    @property
    def is_mutable(self) -> bool:  # type: ignore[override]
        return all(part.is_mutable for part in self._parts())

    @property
    def is_multiprocessing_safe(self) -> bool:
        return self._multiprocessing and all(part.is_multiprocessing_safe for part in self._parts())

    @property
    def current_episode_id(self) -> int:
        return self._current.count

    @current_episode_id.setter
    def current_episode_id(self, value: int) -> None:
        self._current.publish(int(value), 0)

    @property
    def episode_id_to_index_map(self) -> dict[int, int] | None:
        """``{episode id: slot in episode_data_buffer}``; None without episode data."""
        return None if self._slots is None else self._slots.as_dict()

    def _parts(self) -> list[ReplayBuffer]:
        parts = [self.step_data_buffer, self.step_episode_id_buffer]
        return parts + ([self.episode_data_buffer] if self.episode_data_buffer is not None else [])

    @property
    def has_expensive_reads(self) -> bool:  # type: ignore[override]
        """As the step data's storage (video, images: window views then read each distinct row once)."""
        return self.step_data_buffer.has_expensive_reads

    def __len__(self) -> int:
        return len(self.step_episode_id_buffer)

    # ------------------------------------------------------------------ episode ids
    def episode_id_to_episode_data_index(self, episode_id: Any) -> Any:
        """Slot(s) in ``episode_data_buffer`` of an int or an array of episode ids (any backend)."""
        if self._slots is None:
            raise UnsupportedOperationError("this TrajectoryReplayBuffer has no episode data")
        if isinstance(episode_id, (int, np.integer)):
            return int(self._slots.lookup(np.asarray([episode_id]))[0])
        backend = self.backend
        slots = self._slots.lookup(backend.to_numpy(episode_id))
        return backend.asarray(slots, dtype=backend.default_index_dtype, device=self.device)

    # ------------------------------------------------------------------ reads
    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        with self._current.locked():
            needs_ids = with_metadata or self.episode_data_buffer is not None
            ids: Any = self.step_episode_id_buffer._get(index, False)[0] if needs_ids else None
            step, step_metadata = self.step_data_buffer._get(index, with_metadata)
            result: dict[str, Any] = {"step_data": step}
            if self.episode_data_buffer is not None:
                slots = self.episode_id_to_episode_data_index(int(ids) if is_single(index) else ids)
                result["episode_data"] = self.episode_data_buffer._get(slots, False)[0]
        if not with_metadata:
            return result, None
        metadata = dict(step_metadata or {})
        metadata[EPISODE_IDS_KEY] = ids
        return result, metadata

    def _read_key(self, key: Any, in_metadata: bool, index: NormalizedIndex) -> Any | None:
        keys = [key] if isinstance(key, (str, int)) else list(key)
        if in_metadata and keys == [EPISODE_IDS_KEY]:
            return self.step_episode_id_buffer._get(index, False)[0]
        if not in_metadata and len(keys) > 1 and keys[0] == "step_data":
            return self.step_data_buffer._read_key(keys[1:], False, index)
        return None

    # ------------------------------------------------------------------ writes
    def append(self, value: Any) -> None:
        """Append one raw step of the current episode."""
        self._check_writable("append")
        check_data(self.step_data_buffer.single_space, value)
        with self._current.locked():
            episode = self.backend.asarray(self._current.count, dtype=self.step_episode_id_buffer.single_space.dtype)
            self._release_overwritten(1)
            self.step_episode_id_buffer._append(episode)
            self.step_data_buffer._append(value)

    def extend(self, value: Any) -> None:
        """Append steps: raw step data, or ``{"step_data", "episode_ids"?, "episode_data"?}``."""
        self._check_writable("extend")
        self._extend(value)

    def _extend(self, value: Any) -> None:
        steps, ids, episode_data = self._split_batch(value)
        (count,) = check_data(self.step_data_buffer.single_space, steps, batch_ndim=1)
        id_space = self.step_episode_id_buffer.single_space
        if ids is None:
            ids = self.backend.xp.full((count,), self._current.count, dtype=id_space.dtype, device=self.device)
        elif check_data(id_space, ids, batch_ndim=1) != (count,):
            raise SpaceMismatchError(f"episode_ids: expected {count} ids, got shape {tuple(ids.shape)}")
        if episode_data is not None and self.episode_data_buffer is not None:
            check_data(self.episode_data_buffer.single_space, episode_data, batch_ndim=1)
        if count == 0:
            return
        with self._current.locked():
            if episode_data is not None and self._slots is not None:  # fail before anything changes
                self._slots.check_allocation(self.backend.to_numpy(ids), self._oldest_after(count))
            self._release_overwritten(count)
            if episode_data is not None:
                self._write_episode_data(ids, episode_data)
            self.step_episode_id_buffer._extend(ids)
            self.step_data_buffer._extend(steps)

    def _split_batch(self, value: Any) -> tuple[Any, Any, Any]:
        step_space = self.step_data_buffer.single_space
        trajectory = isinstance(value, Mapping) and "step_data" in value
        if trajectory and isinstance(step_space, DictSpace) and "step_data" in step_space.spaces:
            trajectory = set(value) <= {"step_data", "episode_ids", "episode_data"}
        if not trajectory:
            return value, None, None
        unknown = set(value) - {"step_data", "episode_ids", "episode_data"}
        if unknown:
            raise SpaceMismatchError(
                f"expected keys step_data, episode_ids, episode_data; got unknown {sorted(unknown)}"
            )
        if "episode_data" in value and self.episode_data_buffer is None:
            raise SpaceMismatchError("episode_data given, but this buffer has no episode data buffer")
        return value["step_data"], value.get("episode_ids"), value.get("episode_data")

    def _write_episode_data(self, ids: Any, episode_data: Any) -> None:
        """Per-step episode data: the first occurrence of each id is written to its slot."""
        host_ids = self.backend.to_numpy(ids)
        unique, first = np.unique(host_ids, return_index=True)
        picked = get_at(self._episode_buffer()._batched_space, episode_data, self._positions(first))
        self._store_episode_data(unique, picked)

    def _episode_buffer(self) -> ReplayBuffer:
        if self.episode_data_buffer is None or self._slots is None:
            raise UnsupportedOperationError("this TrajectoryReplayBuffer has no episode data")
        return self.episode_data_buffer

    def _positions(self, positions: np.ndarray) -> Any:
        return self.backend.asarray(positions, dtype=self.backend.default_index_dtype, device=self.device)

    def set_episode_data_at(self, episode_id: Any, value: Any) -> None:
        """Write the data of one episode (int id) or of several (array of distinct ids)."""
        self._check_writable("set_episode_data_at")
        space = self._episode_buffer().single_space
        if isinstance(episode_id, (int, np.integer)):
            check_data(space, value)
            self._store_episode_data(np.asarray([int(episode_id)]), value, single=True)
            return
        ids = np.asarray(self.backend.to_numpy(episode_id)).reshape(-1)
        if len(np.unique(ids)) != len(ids):
            raise SpaceMismatchError(f"set_episode_data_at needs distinct episode ids, got {ids.tolist()}")
        if check_data(space, value, batch_ndim=1) != (len(ids),):
            raise SpaceMismatchError(f"expected episode data for {len(ids)} episodes, got {batch_size_data(value)}")
        with self._current.locked():
            self._store_episode_data(ids, value)

    def _store_episode_data(self, ids: np.ndarray, value: Any, single: bool = False) -> None:
        buffer, slots = self._episode_buffer(), self._slots
        allocated = slots.allocate(ids)  # type: ignore[union-attr]  # raises before any write when full
        needed = int(allocated.max()) + 1
        if len(buffer) < needed:
            buffer._extend(batch_space(buffer.single_space, needed - len(buffer)).create_empty())
        buffer._set(int(allocated[0]) if single else self._positions(allocated), value)

    def set_current_episode_data(self, value: Any) -> None:
        """Write the data of the current episode (before, during or after its steps)."""
        self.set_episode_data_at(self.current_episode_id, value)

    def mark_episode_end(self) -> None:
        """Start a new episode; a persistent buffer also commits (like :meth:`flush`)."""
        self._check_writable("mark_episode_end")
        with self._current.locked():
            self._current.publish(self._current.count + 1, 0)
        self.flush()

    def _oldest_after(self, incoming: int) -> int | None:
        """The oldest episode id left once ``incoming`` more steps are appended (None: unchanged)."""
        capacity, length = self.capacity, len(self)
        overwritten = 0 if capacity is None else max(0, length + incoming - capacity)
        if overwritten == 0:
            return None  # the oldest step stays: no episode loses its last step
        if overwritten >= length:
            return self._current.count
        ids = self.step_episode_id_buffer
        return min(int(ids.backend.to_numpy(ids._get(overwritten, False)[0])), self._current.count)

    def _release_overwritten(self, incoming: int) -> None:
        """Free the slots of episodes whose steps the next ``incoming`` appends overwrite entirely."""
        oldest = self._oldest_after(incoming) if self._slots is not None else None
        if oldest is not None and self._slots is not None:
            self._slots.release_before(oldest)

    def set_at(self, idx: Any, value: Any) -> None:
        """Overwrite steps: ``value`` may hold ``step_data``, ``episode_ids`` and ``episode_data``."""
        self._check_writable("set_at")
        index = self._index(idx)
        if not isinstance(value, Mapping) or not set(value) <= {"step_data", "episode_ids", "episode_data"}:
            raise SpaceMismatchError("set_at expects a dict with step_data, episode_ids and/or episode_data")
        batch_ndim = 0 if is_single(index) else 1
        expected = () if is_single(index) else (index_length(index),)
        parts = {"step_data": self.step_data_buffer, "episode_ids": self.step_episode_id_buffer}
        if self.episode_data_buffer is not None:
            parts["episode_data"] = self.episode_data_buffer
        for key, part_value in value.items():
            if key not in parts:
                raise SpaceMismatchError("episode_data given, but this buffer has no episode data buffer")
            if check_data(parts[key].single_space, part_value, batch_ndim=batch_ndim) != expected:
                raise SpaceMismatchError(f"{key}: expected batch shape {expected}, got {batch_size_data(part_value)}")
        self._set(index, value)

    def _set(self, index: NormalizedIndex, value: Any) -> None:
        with self._current.locked():
            if "episode_ids" in value:
                self.step_episode_id_buffer._set(index, value["episode_ids"])
            if "step_data" in value:
                self.step_data_buffer._set(index, value["step_data"])
            if "episode_data" in value:
                ids = self.step_episode_id_buffer._get(index, False)[0]
                if is_single(index):
                    self._store_episode_data(self.backend.to_numpy(ids).reshape(1), value["episode_data"], single=True)
                else:
                    self._write_episode_data(ids, value["episode_data"])

    def clear(self) -> None:
        """Forget every step and episode; episode ids restart at 0."""
        self._check_writable("clear")
        with self._current.locked():
            for part in self._parts():
                part.clear()
            if self._slots is not None:
                self._slots.clear()
            self._current.publish(0, 0)
            self._write_own_metadata()

    # ------------------------------------------------------------------ persistence
    def _own_metadata(self, steps: tuple[int, int]) -> dict[str, Any]:
        episodes = self.episode_data_buffer
        return {
            "type": BUFFER_TYPE,
            "current_episode_id": self.current_episode_id,
            "steps": {"count": steps[0], "offset": steps[1]},
            "episodes": None if episodes is None else {"count": episodes.count, "offset": episodes.offset},
            "storage_paths": {
                name: part.storage_path_relative for name, part in zip(PARTS, self._parts(), strict=False)
            },
            "episode_id_to_index_map": None
            if self._slots is None
            else {str(k): v for k, v in self._slots.as_dict().items()},
            "extra": self.extra_metadata,
        }

    def _commit_steps(self, count: int, offset: int) -> None:
        """The one commit point of the step parts: both rings record the same committed state."""
        self._write_own_metadata(steps=(count, offset))
        for part in (self.step_data_buffer, self.step_episode_id_buffer):
            part._committed = (count, offset)
            part._drop_stale_snapshot()

    def _write_own_metadata(self, directory: Path | None = None, steps: tuple[int, int] | None = None) -> None:
        directory = directory or self._cache_path
        if directory is not None:
            state = (
                steps if steps is not None else (len(self.step_episode_id_buffer), self.step_episode_id_buffer.offset)
            )
            write_metadata(directory, self._own_metadata(state))

    def flush(self) -> None:
        """Make every part durable, then commit all of them at once (persistent buffers only)."""
        if self._cache_path is None or not self.is_mutable:
            return
        with self._current.locked():
            for part in (self.step_data_buffer, self.step_episode_id_buffer):
                part._flush_storage()
            if self.episode_data_buffer is not None:
                self.episode_data_buffer.flush()
            ids = self.step_episode_id_buffer
            self._commit_steps(ids.count, ids.offset)

    def dumps(self, path: PathLike) -> None:
        """Persist every part into ``path/<part>`` and the episode table into ``path/metadata.json``."""
        target = Path(path)
        with self._current.locked():
            target.mkdir(parents=True, exist_ok=True)
            for name, part in zip(PARTS, self._parts(), strict=False):
                part.dumps(target / name)
            self._write_own_metadata(target)

    @staticmethod
    @removes_on_failure
    def create(
        step_data_instance_space: Space,
        step_data_storage_cls: type[SpaceStorage] | None = None,
        *,
        step_data_capacity: int | None = None,
        step_episode_id_storage_cls: type[SpaceStorage] | None = None,
        step_episode_id_capacity: int | None = None,
        step_episode_id_storage_kwargs: Mapping[str, Any] = {},  # noqa: B006  (reference signature; never mutated)
        episode_data_instance_space: Space | None = None,
        episode_data_storage_cls: type[SpaceStorage] | None = None,
        episode_data_capacity: int | None = None,
        episode_data_storage_kwargs: Mapping[str, Any] = {},  # noqa: B006
        cache_path: PathLike | None = None,
        multiprocessing: bool = False,
        **kwargs: Any,
    ) -> TrajectoryReplayBuffer:
        """Create the step, episode-id and (optional) episode-data buffers.

        The episode-id capacity defaults to the step capacity and must equal it. Storage
        classes default to the step class for the ids and to the default persistent/memory
        storage for episode data; ``**kwargs`` go to the step storage only.

        Every capacity is checked before the disk is touched; ``cache_path`` must be new or empty
        (``FileExistsError`` otherwise), and a failed call removes what it created.
        """
        step_data_capacity = parse_capacity(step_data_capacity, "step_data_capacity")
        step_episode_id_capacity = parse_capacity(step_episode_id_capacity, "step_episode_id_capacity")
        episode_data_capacity = parse_capacity(episode_data_capacity, "episode_data_capacity")
        if step_episode_id_capacity is None:
            step_episode_id_capacity = step_data_capacity
        if step_episode_id_capacity != step_data_capacity:
            raise SpaceMismatchError(
                f"step_data_capacity {step_data_capacity} and step_episode_id_capacity "
                f"{step_episode_id_capacity} must be equal (one episode id per step)"
            )
        backend = step_data_instance_space.backend
        root = None if cache_path is None else Path(cache_path)
        if root is not None:
            if (root / "metadata.json").exists():
                raise FileExistsError(f"{root} already holds a buffer; use TrajectoryReplayBuffer.load_from")
            new_directory(root)

        def where(name: str) -> Path | None:
            return None if root is None else root / name

        steps = ReplayBuffer.create(
            step_data_storage_cls,
            step_data_instance_space,
            cache_path=where("step_data"),
            capacity=step_data_capacity,
            multiprocessing=multiprocessing,
            **kwargs,
        )
        id_space = BoxSpace(
            backend, 0, np.inf, backend.default_integer_dtype, step_data_instance_space.device, shape=()
        )
        ids = ReplayBuffer.create(
            step_episode_id_storage_cls,
            id_space,
            cache_path=where("step_episode_ids"),
            capacity=step_episode_id_capacity,
            multiprocessing=multiprocessing,
            **dict(step_episode_id_storage_kwargs),
        )
        episodes = None
        if episode_data_instance_space is not None:
            episodes = ReplayBuffer.create(
                episode_data_storage_cls,
                episode_data_instance_space,
                cache_path=where("episode_data"),
                capacity=episode_data_capacity,
                multiprocessing=multiprocessing,
                **dict(episode_data_storage_kwargs),
            )
        buffer = TrajectoryReplayBuffer(steps, ids, episodes, 0, None, multiprocessing, cache_path=root)
        buffer._write_own_metadata()
        return buffer

    @staticmethod
    def is_loadable_from(path: PathLike) -> bool:
        return read_metadata(path, BUFFER_TYPE) is not None

    @staticmethod
    def load_from(
        path: PathLike,
        *,
        backend: ComputeBackend,
        device: Device | None = None,
        read_only: bool = False,
        multiprocessing: bool = False,
        step_storage_kwargs: Mapping[str, Any] = {},  # noqa: B006
        step_episode_id_storage_kwargs: Mapping[str, Any] = {},  # noqa: B006
        episode_storage_kwargs: Mapping[str, Any] = {},  # noqa: B006
        **storage_kwargs: Any,
    ) -> TrajectoryReplayBuffer:
        """Reopen a buffer written by :meth:`dumps` or :meth:`flush` (read-write by default, as in the reference)."""
        root = Path(path)
        metadata = read_metadata(root, BUFFER_TYPE)
        if metadata is None:
            raise FileNotFoundError(f"{root} holds no {BUFFER_TYPE} (metadata.json missing or of another type)")

        step_state = (int(metadata["steps"]["count"]), int(metadata["steps"]["offset"]))

        paths = metadata.get("storage_paths") or {}

        def load(name: str, extra: Mapping[str, Any], state: tuple[int, int] | None) -> ReplayBuffer:
            kwargs = {**storage_kwargs, **extra}
            return ReplayBuffer._open(
                root / name, backend, device, read_only, multiprocessing, None, kwargs, state, paths.get(name)
            )

        steps = load("step_data", step_storage_kwargs, step_state)
        ids = load("step_episode_ids", step_episode_id_storage_kwargs, step_state)
        mapping = metadata.get("episode_id_to_index_map")
        episodes = None
        if mapping is not None:
            episode_state = (int(metadata["episodes"]["count"]), int(metadata["episodes"]["offset"]))
            episodes = load("episode_data", episode_storage_kwargs, episode_state)
        table = {int(k): int(v) for k, v in (mapping or {}).items()}
        buffer = TrajectoryReplayBuffer(
            steps, ids, episodes, int(metadata["current_episode_id"]), table, multiprocessing, cache_path=root
        )
        buffer.extra_metadata = dict(metadata.get("extra") or {})
        return buffer

    def close(self) -> None:
        self._closed = True
        for part in self._parts():
            part.close()


def _check_parts(steps: ReplayBuffer, ids: ReplayBuffer, episodes: ReplayBuffer | None) -> None:
    parts = [steps, ids] + ([episodes] if episodes is not None else [])
    if any(part.backend is not steps.backend for part in parts):
        raise SpaceMismatchError("all parts of a TrajectoryReplayBuffer must share one backend")
    id_space = ids.single_space
    if (
        not isinstance(id_space, BoxSpace)
        or id_space.shape != ()
        or not steps.backend.dtype_is_real_integer(id_space.dtype)
    ):
        raise SpaceMismatchError(f"the episode-id buffer must hold integer scalars, got {id_space!r}")
    if steps.capacity != ids.capacity or len(steps) != len(ids):
        raise SpaceMismatchError(
            f"step data (capacity {steps.capacity}, {len(steps)} rows) and episode ids "
            f"(capacity {ids.capacity}, {len(ids)} rows) must match"
        )
