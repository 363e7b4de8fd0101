"""The episode table of a trajectory buffer: which episode-data slot holds which episode id.

``slot_ids[slot]`` is the episode id stored in that slot, or ``-1`` when the slot is free.
The table is a flat integer array, so it can live in shared memory (one writer, many readers)
and lookups of a whole batch of ids are vectorised (``searchsorted``), never a Python loop.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import numpy as np

from unibatch.errors import SpaceMismatchError, UnibatchError

FREE = -1


class MissingEpisodeDataError(UnibatchError, KeyError):
    """Steps were read whose episode has no episode data yet."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidEpisodeIdError(UnibatchError, ValueError):
    """Episode ids that a write would store break the rules of :class:`~unibatch.TrajectoryReplayBuffer`.

    The message names the operation, the offending id and its position, and the rule; nothing
    was written.
    """


class EpisodeCapacityError(UnibatchError, ValueError):
    """Every episode-data slot holds an episode that still has steps in the buffer."""


class EpisodeSlots:
    """Episode id -> slot table with allocation, release and vectorised lookup.

    Args:
        capacity: number of slots, or None to grow without bound (not shareable).
        shared: keep the table and its version counter in shared memory.
    """

    def __init__(self, capacity: int | None, shared: bool = False, context: Any = None) -> None:
        if shared and capacity is None:
            raise SpaceMismatchError("a shared episode table needs a fixed episode_data_capacity")
        self.capacity = capacity
        self.shared = shared
        rows = capacity if capacity is not None else 16
        if shared:
            ctx = context or multiprocessing.get_context("spawn")  # shareable with every start method
            self._shared_ids = ctx.Array("q", [FREE] * rows, lock=False)
            self._version = ctx.Value("q", 0, lock=False)
            self._ids = np.frombuffer(self._shared_ids, dtype=np.int64)
        else:
            self._ids = np.full(rows, FREE, dtype=np.int64)
            self._version = None
        self._local_version = -1
        self._sorted_ids = np.empty(0, np.int64)
        self._sorted_slots = np.empty(0, np.int64)
        self._changes = 0

    # ------------------------------------------------------------------ state
    @property
    def slot_ids(self) -> np.ndarray:
        """The table: episode id per slot, ``-1`` for a free slot (a view, do not modify)."""
        return self._ids

    def _bump(self) -> None:
        if self._version is not None:
            self._version.value += 1
        else:
            self._changes += 1

    def _current_version(self) -> int:
        return int(self._version.value) if self._version is not None else self._changes

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        version = self._current_version()
        if version != self._local_version:
            used = np.nonzero(self._ids != FREE)[0]
            order = np.argsort(self._ids[used], kind="stable")
            self._sorted_slots = used[order]
            self._sorted_ids = self._ids[self._sorted_slots]
            self._local_version = version
        return self._sorted_ids, self._sorted_slots

    def as_dict(self) -> dict[int, int]:
        """``{episode id: slot}`` (what the reference calls ``episode_id_to_index_map``)."""
        ids, slots = self._index()
        return {int(i): int(s) for i, s in zip(ids, slots, strict=True)}

    def load_dict(self, mapping: dict[int, int]) -> None:
        """Replace the table by ``mapping`` (used when a buffer is reopened)."""
        needed = max(mapping.values(), default=-1) + 1
        self._ensure_rows(needed)
        self._ids[:] = FREE
        for episode_id, slot in mapping.items():
            self._ids[int(slot)] = int(episode_id)
        self._bump()

    # ------------------------------------------------------------------ queries
    def lookup(self, episode_ids: np.ndarray) -> np.ndarray:
        """Slots of ``episode_ids`` (any shape); raises when one has no slot."""
        ids, slots = self._index()
        flat = np.asarray(episode_ids, dtype=np.int64).reshape(-1)
        position = np.clip(np.searchsorted(ids, flat), 0, max(len(ids) - 1, 0))
        found = (ids[position] == flat) if len(ids) else np.zeros(flat.shape, bool)
        if not np.all(found):
            missing = sorted(set(flat[~found].tolist()))
            raise MissingEpisodeDataError(f"episodes {missing} have no episode data")
        return slots[position].reshape(np.shape(episode_ids))

    def known(self, episode_ids: np.ndarray) -> np.ndarray:
        """Whether each id has a slot."""
        ids, _ = self._index()
        flat = np.asarray(episode_ids, dtype=np.int64)
        return np.isin(flat, ids)

    # ------------------------------------------------------------------ changes
    def allocate(self, episode_ids: np.ndarray) -> np.ndarray:
        """Slots for distinct ``episode_ids``: existing slots for known ids, free ones for new ids.

        Nothing changes when there are not enough free slots (:class:`EpisodeCapacityError`).
        """
        episode_ids = np.asarray(episode_ids, dtype=np.int64).reshape(-1)
        known = self.known(episode_ids)
        new_ids = episode_ids[~known]
        free = np.nonzero(self._ids == FREE)[0]
        if len(free) < len(new_ids):
            if self.capacity is not None:
                raise EpisodeCapacityError(
                    f"episode data capacity {self.capacity} is exhausted: {len(new_ids)} new episodes, "
                    f"{len(free)} free slots (slots are released when all steps of an episode are overwritten)"
                )
            self._ensure_rows(len(self._ids) + len(new_ids) - len(free))
            free = np.nonzero(self._ids == FREE)[0]
        self._ids[free[: len(new_ids)]] = new_ids
        self._bump()
        return self.lookup(episode_ids)

    def check_allocation(self, episode_ids: np.ndarray, release_before: int | None = None) -> None:
        """Raise :class:`EpisodeCapacityError` unless :meth:`allocate` would succeed.

        Episodes below ``release_before`` count as released; nothing changes.
        """
        if self.capacity is None:
            return
        ids = np.unique(np.asarray(episode_ids, dtype=np.int64))
        new = int((~self.known(ids)).sum())
        free = int((self._ids == FREE).sum())
        if release_before is not None:
            free += int(((self._ids != FREE) & (self._ids < release_before)).sum())
        if new > free:
            raise EpisodeCapacityError(
                f"episode data capacity {self.capacity} is exhausted: {new} new episodes, {free} free slots "
                "(slots are released when all steps of an episode are overwritten)"
            )

    def release_before(self, episode_id: int) -> int:
        """Free the slots of every episode with an id below ``episode_id``; returns how many."""
        stale = (self._ids != FREE) & (self._ids < episode_id)
        released = int(stale.sum())
        if released:
            self._ids[stale] = FREE
            self._bump()
        return released

    def clear(self) -> None:
        self._ids[:] = FREE
        self._bump()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.shared:
            state["_ids"] = None  # rebuilt over the shared array in the receiving process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.shared:
            self._ids = np.frombuffer(self._shared_ids, dtype=np.int64)

    def _ensure_rows(self, rows: int) -> None:
        if rows <= len(self._ids):
            return
        if self.capacity is not None or self.shared:
            raise EpisodeCapacityError(f"slot {rows - 1} is beyond the episode data capacity {self.capacity}")
        grown = np.full(max(rows, 2 * len(self._ids)), FREE, dtype=np.int64)
        grown[: len(self._ids)] = self._ids
        self._ids = grown
