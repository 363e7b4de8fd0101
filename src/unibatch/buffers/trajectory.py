"""``TrajectoryReplayBuffer``: step data, the episode id of every step, optional episode data.

Three ring buffers move in lockstep: ``step_data_buffer`` and ``step_episode_id_buffer`` hold
one row per step, ``episode_data_buffer`` one row per episode *slot*. An :class:`EpisodeSlots`
table maps episode ids to slots; a slot is released once every step of its episode has been
overwritten, and an episode's data may be set before its first step.

A persistent buffer commits steps, episode table and episode-data state in one ``metadata.json``.
A reader opened with ``read_only=True`` reads a snapshot of one commit (so its table agrees with
its steps) until :meth:`TrajectoryReplayBuffer.refresh`, and checks each read against the steps'
commit front as ``ReplayBuffer`` does (README "Persistence and crashes"); an episode-data slot is
reused only after every step of its old episode left the committed range, and a read re-checks
its steps after reading episode data. The step data and episode-id rings are settled and caught
up with one load of the front, so a commit between two loads never leaves them at different rows.

Episode ids are checked before anything is written (:mod:`unibatch.buffers._episode_ids`):
every id lies in ``[0, current_episode_id]``; with an episode-data buffer, ids never decrease
in logical order and every id written has episode data or is the current episode. A write
that breaks a rule raises :class:`~unibatch.buffers.episodes.InvalidEpisodeIdError` and
changes nothing, so no step becomes unreadable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic

import numpy as np
from typing_extensions import NotRequired, TypedDict

from unibatch._typing import BArrayType, BatchT, BDeviceType, BDtypeType, BRNGType, Device, EpisodeBatchT
from unibatch.backends import ComputeBackend
from unibatch.batches import BatchBase
from unibatch.batches._base import Metadata
from unibatch.batches._indexing import NormalizedIndex, index_length, is_single
from unibatch.buffers._episode_ids import check_has_data, check_order, check_range
from unibatch.buffers._live import CommitFront, published_start, settle
from unibatch.buffers._metadata import (
    METADATA_FILE,
    persisted_state_of,
    read_metadata,
    require_fields,
    write_metadata,
)
from unibatch.buffers._state import RingState, parse_start
from unibatch.buffers.episodes import EpisodeSlots, InvalidEpisodeIdError
from unibatch.buffers.replay_buffer import ReplayBuffer, read_refreshing, refresh_or_close
from unibatch.errors import CorruptDataError, SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import BoxSpace, DictSpace, Space, batch_size_data, batch_space, check_data, get_at
from unibatch.storages import SpaceStorage
from unibatch.storages._directories import new_directory, parse_capacity, removes_on_failure
from unibatch.storages._safe_paths import resolve_inside

PathLike = str | os.PathLike[str]
BUFFER_TYPE = "TrajectoryReplayBuffer"
EPISODE_IDS_KEY = "episode_ids"
PARTS = ("step_data", "step_episode_ids", "episode_data")


class TrajectoryData(TypedDict, Generic[BatchT, EpisodeBatchT]):
    """One step (or a batch of steps) with its episode's data."""

    step_data: BatchT
    episode_data: NotRequired[EpisodeBatchT]


class TrajectoryReplayBuffer(
    BatchBase[TrajectoryData[BatchT, EpisodeBatchT], BArrayType, BDeviceType, BDtypeType, BRNGType],
    Generic[BatchT, EpisodeBatchT, BArrayType, BDeviceType, BDtypeType, BRNGType],
):
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
        self._live: CommitFront | None = None  # a persistent writer: the committed front of the steps
        self._follows: CommitFront | None = None  # a reader: the writer's front, shared with the step parts
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
        """Move to episode ``value``: a non-negative int, not below the episode of the newest step."""
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidEpisodeIdError(f"current_episode_id must be an int, got {type(value).__name__} {value!r}")
        with self._current.locked():
            newest = self._newest_id()
            if value < 0 or (newest is not None and value < newest):
                raise InvalidEpisodeIdError(
                    f"current_episode_id must be a non-negative int not below the episode of the newest step "
                    f"({newest}); got {int(value)}"
                )
            self._current.publish(int(value), 0)

    def _newest_id(self) -> int | None:
        """The episode id of the newest step, or None when the buffer is empty."""
        length = len(self)
        if length == 0:
            return None
        ids = self.step_episode_id_buffer
        return int(ids.backend.to_numpy(ids._get(length - 1, False)[0]))

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
                if self._follows is not None:  # a slot is reused only once its steps left: check them again
                    self.step_episode_id_buffer._check_not_overtaken(index)
        if not with_metadata:
            return result, None
        metadata = dict(step_metadata or {})
        metadata[EPISODE_IDS_KEY] = ids
        return result, metadata

    def _public_read(
        self, idx: Any, read: Callable[[NormalizedIndex, bool], tuple[Any, Metadata]], with_metadata: bool
    ) -> tuple[Any, Metadata]:
        """A public read; a reader beside a writer retries one the writer overtook (:func:`read_refreshing`)."""
        if self._follows is None:
            return read(self._index(idx), with_metadata)
        return read_refreshing(self, idx, read, with_metadata)

    def _catch_up(self) -> bool:
        """Drop from a reader's snapshot the steps the writer dropped since (``ReplayBuffer._catch_up``).

        The front is loaded once for both step parts: each loading it for itself would let a commit
        in between leave them at different rows (steps paired with the episode ids of other steps).
        """
        if self._follows is None:
            return False
        published = self._follows.start
        return all([part._catch_up(published) for part in (self.step_data_buffer, self.step_episode_id_buffer)])

    def refresh(self) -> int:
        """Take the writer's newest commit as this reader's snapshot; returns the new length.

        Steps, episode table and episode data come from one ``metadata.json``, so they agree (see
        ``ReplayBuffer.refresh``). A no-op for the writer and for buffers in memory.
        """
        directory = self._cache_path
        if directory is None or self.is_mutable or not self.step_data_buffer.storage.is_persistent:
            return len(self)
        metadata = read_metadata(directory, BUFFER_TYPE)
        if metadata is None:
            raise FileNotFoundError(f"{directory} holds no {BUFFER_TYPE} any more")
        committed, episodes, table, current = _committed_state(metadata, directory)
        with self._current.locked():
            follows, self._follows = self._follows, CommitFront.for_reader(directory)
            if follows is not None:
                follows.close()
            published = None if self._follows is None else self._follows.start  # after the metadata: settles it
            steps = settle(*committed, published, self.capacity)
            for part in (self.step_data_buffer, self.step_episode_id_buffer):
                part._follow(*steps)
                part._follows = self._follows
            if self.episode_data_buffer is not None and self._slots is not None and episodes is not None:
                self.episode_data_buffer._follow(*episodes)
                self._slots.load_dict(table)
            self._current.publish(current, 0)
        return steps[0]

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
        check_data(self.step_data_buffer.single_space, value, bounds=self.check_bounds)
        with self._current.locked():
            episode = self.backend.asarray(self._current.count, dtype=self.step_episode_id_buffer.single_space.dtype)
            self._release_overwritten(1)
            self.step_episode_id_buffer._append(episode)
            self.step_data_buffer._append(value)

    def extend(self, value: Any) -> None:
        """Append steps: raw step data, or ``{"step_data", "episode_ids"?, "episode_data"?}``.

        ``episode_ids`` (one per step) follow the rules of the module docstring; without them
        every step belongs to the current episode. ``episode_data`` has one row per step; the
        first row of each episode is stored.

        Raises:
            InvalidEpisodeIdError: an id breaks a rule (nothing is written).
            SpaceMismatchError: a part does not fit its space or has another number of rows.
        """
        self._check_writable("extend")
        self._extend(value)

    def _extend(self, value: Any) -> None:
        steps, ids, episode_data = self._split_batch(value)
        (count,) = check_data(self.step_data_buffer.single_space, steps, batch_ndim=1, bounds=self.check_bounds)
        id_space = self.step_episode_id_buffer.single_space
        explicit = ids is not None
        if ids is None:
            ids = self.backend.xp.full((count,), self._current.count, dtype=id_space.dtype, device=self.device)
        elif check_data(id_space, ids, batch_ndim=1) != (count,):
            raise SpaceMismatchError(f"episode_ids: expected {count} ids, got shape {tuple(ids.shape)}")
        if episode_data is not None and self.episode_data_buffer is not None:
            rows = check_data(
                self.episode_data_buffer.single_space, episode_data, batch_ndim=1, bounds=self.check_bounds
            )
            if rows != (count,):
                raise SpaceMismatchError(f"episode_data: expected {count} rows (one per step), got {rows[0]}")
        if count == 0:
            return
        with self._current.locked():
            if explicit:
                self._check_new_ids(self.backend.to_numpy(ids), "extend", with_data=episode_data is not None)
            if episode_data is not None and self._slots is not None:  # fail before anything changes
                self._slots.check_allocation(self.backend.to_numpy(ids), self._oldest_after(count))
            self._release_overwritten(count)
            self.step_episode_id_buffer._extend(ids)  # released slots leave the committed steps first
            self.step_data_buffer._extend(steps)
            if episode_data is not None:
                self._write_episode_data(ids, episode_data)

    def _check_new_ids(self, ids: np.ndarray, operation: str, with_data: bool) -> None:
        """The rules of :mod:`~unibatch.buffers._episode_ids` for ids appended after the newest step."""
        current = self._current.count
        check_range(ids, current, operation)
        if self._slots is None:
            return
        check_order(ids, operation, self._newest_id(), offset=len(self))
        if not with_data:
            check_has_data(ids, self._slots.known(ids), current, operation)

    def _check_replaced_ids(self, index: NormalizedIndex, ids: np.ndarray, with_data: bool) -> None:
        """The rules for ids that replace those of the steps at ``index`` (``set_at``)."""
        current = self._current.count
        check_range(ids, current, "set_at")
        if self._slots is None:
            return
        column = self.step_episode_id_buffer
        order = np.array(column.backend.to_numpy(column._get(column._index(slice(None)), False)[0]), np.int64)
        positions = [index] if is_single(index) else self.backend.to_numpy(index)
        order[positions] = np.asarray(ids, np.int64).reshape(-1)
        check_order(order, "set_at")
        if not with_data:
            check_has_data(ids, self._slots.known(ids), current, "set_at")

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
            check_data(space, value, bounds=self.check_bounds)
            if episode_id < 0:
                raise InvalidEpisodeIdError(f"set_episode_data_at: episode ids are non-negative, got {int(episode_id)}")
            self._store_episode_data(np.asarray([int(episode_id)]), value, single=True)
            return
        ids = np.asarray(self.backend.to_numpy(episode_id)).reshape(-1)
        if len(np.unique(ids)) != len(ids):
            raise SpaceMismatchError(f"set_episode_data_at needs distinct episode ids, got {ids.tolist()}")
        if np.any(ids < 0):
            raise InvalidEpisodeIdError(f"set_episode_data_at: episode ids are non-negative, got {ids.tolist()}")
        if check_data(space, value, batch_ndim=1, bounds=self.check_bounds) != (len(ids),):
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
        """Overwrite steps: ``value`` may hold ``step_data``, ``episode_ids`` and ``episode_data``.

        New ``episode_ids`` follow the rules of the module docstring (checked on the whole id
        column as it would be after the write).

        Raises:
            InvalidEpisodeIdError: an id breaks a rule (nothing is written).
            SpaceMismatchError: a part does not fit its space.
        """
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
            bounds = self.check_bounds and key != "episode_ids"
            if check_data(parts[key].single_space, part_value, batch_ndim=batch_ndim, bounds=bounds) != expected:
                raise SpaceMismatchError(f"{key}: expected batch shape {expected}, got {batch_size_data(part_value)}")
        self._set(index, value)

    def _set(self, index: NormalizedIndex, value: Any) -> None:
        with self._current.locked():
            if "episode_ids" in value:  # every check before the first write
                host_ids = np.asarray(self.backend.to_numpy(value["episode_ids"])).reshape(-1)
                self._check_replaced_ids(index, host_ids, with_data="episode_data" in value)
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
    def _own_metadata(self, steps: tuple[int, int, int]) -> dict[str, Any]:
        episodes = self.episode_data_buffer
        return {
            "type": BUFFER_TYPE,
            "current_episode_id": self.current_episode_id,
            "steps": {"count": steps[0], "offset": steps[1], "start": steps[2]},
            "episodes": None if episodes is None else {"count": episodes.count, "offset": episodes.offset},
            "storage_paths": {
                name: part.storage_path_relative for name, part in zip(PARTS, self._parts(), strict=False)
            },
            "episode_id_to_index_map": None
            if self._slots is None
            else {str(k): v for k, v in self._slots.as_dict().items()},
            "check_bounds": self.check_bounds,
            "extra": self.extra_metadata,
        }

    def _commit_steps(self, count: int, offset: int, start: int) -> None:
        """The one commit point of the step parts: both rings record the same committed state.

        ``start`` (the absolute number of the committed step 0) reaches readers' commit front
        before any dropped slot changes (``ReplayBuffer._commit``).
        """
        self._write_own_metadata(steps=(count, offset, start))
        if self._live is not None:
            self._live.publish(start)  # after the commit, before any dropped slot changes (see ``_live``)
        for part in (self.step_data_buffer, self.step_episode_id_buffer):
            part._committed = (count, offset)
            part._committed_start = start
            part._drop_stale_snapshot()

    def _write_own_metadata(self, directory: Path | None = None, steps: tuple[int, int, int] | None = None) -> None:
        directory = directory or self._cache_path
        if directory is not None:
            ids = self.step_episode_id_buffer
            state = steps if steps is not None else (len(ids), ids.offset, ids._state.front)
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
            self._commit_steps(ids.count, ids.offset, ids._state.front)

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
        step_data_storage_cls: type[SpaceStorage] | None,
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
        buffer._start_publishing(0)
        return buffer

    def _start_publishing(self, start: int) -> None:
        """A persistent writer: map (or create) the commit front of the steps and publish ``start``."""
        if self._cache_path is not None and self.step_data_buffer.storage.is_persistent:
            self._live = CommitFront.for_writer(self._cache_path, start)

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
        step_data_single_instance_space: Space | None = None,
        episode_data_single_instance_space: Space | None = None,
        step_storage_kwargs: Mapping[str, Any] = {},  # noqa: B006
        step_episode_id_storage_kwargs: Mapping[str, Any] = {},  # noqa: B006
        episode_storage_kwargs: Mapping[str, Any] = {},  # noqa: B006
        **storage_kwargs: Any,
    ) -> TrajectoryReplayBuffer:
        """Reopen a buffer written by :meth:`dumps` or :meth:`flush` (read-write by default, as in the reference).

        ``step_data_single_instance_space`` / ``episode_data_single_instance_space``: reuse these
        space objects for the step / episode data (each must equal the stored one, else
        :class:`~unibatch.errors.SpaceMismatchError`). The ``*_storage_kwargs`` go to one part's
        storage each, on top of ``**storage_kwargs``.
        """
        with persisted_state_of(path):
            return TrajectoryReplayBuffer._open(
                Path(path),
                backend,
                device,
                read_only,
                multiprocessing,
                (step_data_single_instance_space, episode_data_single_instance_space),
                (step_storage_kwargs, step_episode_id_storage_kwargs, episode_storage_kwargs),
                storage_kwargs,
            )

    @staticmethod
    def _open(
        root: Path,
        backend: ComputeBackend,
        device: Device | None,
        read_only: bool,
        multiprocessing: bool,
        spaces: tuple[Space | None, Space | None],
        part_kwargs: tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]],
        storage_kwargs: Mapping[str, Any],
    ) -> TrajectoryReplayBuffer:
        """:meth:`load_from` inside its error translation.

        ``spaces`` are the given step and episode spaces; ``part_kwargs`` the storage kwargs of the step,
        episode-id and episode parts.
        """
        step_data_single_instance_space, episode_data_single_instance_space = spaces
        step_storage_kwargs, step_episode_id_storage_kwargs, episode_storage_kwargs = part_kwargs
        metadata = read_metadata(root, BUFFER_TYPE)
        if metadata is None:
            raise FileNotFoundError(f"{root} holds no {BUFFER_TYPE} (metadata.json missing or of another type)")

        step_state, episode_state, table, current = _committed_state(metadata, root)
        paths = metadata.get("storage_paths") or {}
        # The committed steps are the metadata's steps the front has not passed (``_live.settle``),
        # the front read after the metadata.
        follows = CommitFront.for_reader(root) if read_only else None
        if read_only:
            published = None if follows is None else follows.start
        else:
            published = published_start(root, step_state[2], step_state[0])

        def load(
            name: str,
            extra: Mapping[str, Any],
            state: tuple[int, int, int] | None,
            space: Space | None = None,
            front: int | None = None,
        ) -> ReplayBuffer:
            kwargs = {**storage_kwargs, **extra}
            source = root / METADATA_FILE
            part = resolve_inside(root, name, source=source)  # the part directory may be a symlink
            storage_path = paths.get(name)
            if storage_path is not None:
                resolve_inside(part, storage_path, source=source)
            return ReplayBuffer._open(
                part, backend, device, read_only, multiprocessing, space, kwargs, state, storage_path, front
            )

        try:
            steps = load("step_data", step_storage_kwargs, step_state, step_data_single_instance_space, published)
            ids = load("step_episode_ids", step_episode_id_storage_kwargs, step_state, None, published)
            episodes = None
            if episode_state is not None:
                episodes = load(
                    "episode_data", episode_storage_kwargs, episode_state, episode_data_single_instance_space
                )
            buffer = TrajectoryReplayBuffer(steps, ids, episodes, current, table, multiprocessing, cache_path=root)
        except BaseException:
            if follows is not None:
                follows.close()
            raise
        buffer.extra_metadata = dict(metadata.get("extra") or {})
        buffer.check_bounds = metadata.get("check_bounds") is True
        if not steps.storage.is_persistent:
            if follows is not None:
                follows.close()
        elif buffer.is_mutable:
            buffer._start_publishing(ids._committed_start)  # publishes the settled start again
        else:
            buffer._follows = follows if follows is not None else CommitFront.for_reader(root)
            for part in (steps, ids):
                part._follows = buffer._follows
            if len(buffer) == 0 < step_state[0]:  # the writer passed the whole commit while this reader opened
                refresh_or_close(buffer)
        return buffer

    def close(self) -> None:
        for front in (self._live, self._follows):
            if front is not None:
                front.close()
        self._live = self._follows = None
        self._closed = True
        for part in self._parts():
            part._follows = None  # the trajectory's front: closed above
            part.close()


def _committed_state(
    metadata: dict[str, Any], directory: Path
) -> tuple[tuple[int, int, int], tuple[int, int, int] | None, dict[int, int], int]:
    """Steps ``(count, offset, start)``, episodes ``(count, offset, 0)`` or None, episode table, current id.

    Each is checked (integers of the right sign; ring states are checked against the capacities when the
    parts open).

    Raises:
        CorruptDataError: naming ``metadata.json`` and the field.
    """
    where = directory / METADATA_FILE
    step_count, step_offset = _ring_state(metadata, "steps", where)
    step_state = (step_count, step_offset, parse_start(metadata["steps"].get("start", 0), f"{where} (steps)"))
    mapping = metadata.get("episode_id_to_index_map")
    episode_state = None
    if mapping is not None:
        episode_state = (*_ring_state(metadata, "episodes", where), 0)
    table = _episode_table(mapping, where)
    current = require_fields(metadata, where, {"current_episode_id": int})["current_episode_id"]
    if current < 0:
        raise CorruptDataError(f"{where}: current_episode_id must be non-negative, got {current}")
    return step_state, episode_state, table, current


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


def _ring_state(metadata: dict[str, Any], part: str, where: Path) -> tuple[Any, Any]:
    """The persisted ``(count, offset)`` of ``part`` (checked against the capacity by ``ReplayBuffer``)."""
    state = metadata.get(part)
    if not isinstance(state, dict):
        raise CorruptDataError(f"{where}: {part} must be an object with count and offset, got {state!r}")
    require_fields(state, f"{where} ({part})", {"count": int, "offset": int})
    return state["count"], state["offset"]


def _episode_table(mapping: Any, where: Path) -> dict[int, int]:
    """``{episode id: slot}`` from its JSON form (string keys); ids and slots are non-negative integers."""
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise CorruptDataError(f"{where}: episode_id_to_index_map must be an object, got {mapping!r}")
    table: dict[int, int] = {}
    for key, slot in mapping.items():
        if not (isinstance(key, str) and key.isdigit() and type(slot) is int and slot >= 0):
            raise CorruptDataError(f"{where}: episode_id_to_index_map entry {key!r}: {slot!r} is not id: slot")
        table[int(key)] = slot
    return table
