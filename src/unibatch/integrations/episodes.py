"""``EpisodeDataset``: read-only rows of consecutive episodes, with episode ids as metadata.

Every importer (robomimic, LeRobot, Minari) builds one: the rows of all episodes one after
another in any ``BatchBase`` (one flat storage, or a ``CombinedBatch`` of one buffer per
episode), plus the episode lengths. Reads carry the metadata key ``episode_ids`` exactly like
``TrajectoryReplayBuffer``, so frame stacking with episode masks works unchanged::

    mask = FrameStackedBatch.get_valid_mask_function_with_episodeid_key("episode_ids", is_in_metadata=True)
    windows = FrameStackedBatch(dataset, prefetch_horizon=3, get_valid_mask_function=mask)

The episode ids come from the episode starts (one ``searchsorted``), never from the rows, so
window views read them without touching the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from unibatch.batches import BatchBase, CombinedBatch, SubIndexedBatch
from unibatch.batches._base import Metadata
from unibatch.batches._indexing import NormalizedIndex, is_single
from unibatch.errors import IndexOutOfRangeError, SpaceMismatchError
from unibatch.spaces import BoxSpace, DictSpace

EPISODE_IDS_KEY = "episode_ids"


class EpisodeDataset(BatchBase):
    """The rows of ``rows``, cut into episodes of ``episode_lengths`` (in order), read-only.

    Args:
        rows: every row of every episode, episode after episode (its length is the sum of the lengths).
        episode_lengths: the number of rows of each episode.
        episode_ids: the id reported for each episode (default ``0, 1, ...``), e.g. a robomimic
            demo number or a LeRobot ``episode_index``.
        episode_info: per-episode descriptions (a dict each: source name, task, ...), kept as given.
        fps: frames per second of the recording, when known (LeRobot, video sources).

    >>> from unibatch.testing import InMemoryBatch
    >>> dataset = EpisodeDataset(InMemoryBatch.from_range(5), [2, 3], episode_ids=[7, 9])
    >>> dataset.get_at_with_metadata(np.array([0, 2, 4]))[1]["episode_ids"].tolist()
    [7, 9, 9]
    >>> dataset.num_episodes, dataset.get_episode(1).get_at(slice(0, 3))["x"].tolist()
    (2, [2, 3, 4])
    """

    def __init__(
        self,
        rows: BatchBase,
        episode_lengths: Sequence[int],
        *,
        episode_ids: Sequence[int] | None = None,
        episode_info: Sequence[Mapping[str, Any]] | None = None,
        fps: float | None = None,
    ) -> None:
        lengths = np.asarray(episode_lengths, dtype=np.int64).reshape(-1)
        if lengths.size and lengths.min() < 0:
            raise SpaceMismatchError(f"episode lengths must not be negative, got {lengths.tolist()}")
        if int(lengths.sum()) != len(rows):
            raise SpaceMismatchError(
                f"episode lengths add up to {int(lengths.sum())} rows, but the rows hold {len(rows)}"
            )
        ids = np.arange(lengths.size, dtype=np.int64) if episode_ids is None else np.asarray(episode_ids, np.int64)
        if ids.shape != lengths.shape:
            raise SpaceMismatchError(f"{ids.size} episode ids for {lengths.size} episodes")
        backend = rows.backend
        metadata = DictSpace(
            backend,
            {EPISODE_IDS_KEY: BoxSpace(backend, 0, np.inf, backend.default_integer_dtype, rows.device, shape=())},
        )
        super().__init__(rows.single_space, metadata)
        self.rows = rows
        self.episode_lengths = lengths
        self.episode_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.episode_id_values = ids
        self.episode_info = list(episode_info) if episode_info is not None else [{} for _ in range(lengths.size)]
        self.fps = fps
        self._row_episode_ids = np.repeat(ids, lengths)  # one int64 per row: 8 MB for a million rows
        self._owned: list[BatchBase] = [rows]

    @classmethod
    def from_episodes(
        cls,
        episodes: Sequence[BatchBase],
        *,
        episode_ids: Sequence[int] | None = None,
        episode_info: Sequence[Mapping[str, Any]] | None = None,
        fps: float | None = None,
    ) -> EpisodeDataset:
        """One batch per episode, seen one after another (a ``CombinedBatch``); the dataset owns them.

        Closing the dataset closes every episode (a ``CombinedBatch`` alone never closes its children).
        """
        episodes = list(episodes)
        dataset = cls(
            CombinedBatch(episodes),
            [len(episode) for episode in episodes],
            episode_ids=episode_ids,
            episode_info=episode_info,
            fps=fps,
        )
        dataset._owned.extend(episodes)
        return dataset

    is_mutable = False

    @property
    def has_expensive_reads(self) -> bool:  # type: ignore[override]
        """As the rows' (decoded video: window views then read each distinct row once)."""
        return self.rows.has_expensive_reads

    @property
    def num_episodes(self) -> int:
        return int(self.episode_lengths.size)

    def __len__(self) -> int:
        return len(self.rows)

    def get_episode(self, episode: int) -> BatchBase:
        """The rows of episode number ``episode`` (a position, ``0 <= episode < num_episodes``) as a view."""
        if not -self.num_episodes <= episode < self.num_episodes:
            raise IndexOutOfRangeError(f"episode {episode} is out of range for {self.num_episodes} episodes")
        start = int(self.episode_starts[episode])
        return SubIndexedBatch(self, slice(start, start + int(self.episode_lengths[episode])))

    # ------------------------------------------------------------------ reads
    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        data = self.rows._get(index, False)[0]
        return data, ({EPISODE_IDS_KEY: self._episode_ids(index)} if with_metadata else None)

    def _read_key(self, key: Sequence[str | int], in_metadata: bool, index: NormalizedIndex) -> Any | None:
        keys = [key] if isinstance(key, (str, int)) else list(key)
        if in_metadata and keys == [EPISODE_IDS_KEY]:
            return self._episode_ids(index)
        return None if in_metadata else self.rows._read_key(key, False, index)

    def _episode_ids(self, index: NormalizedIndex) -> Any:
        backend = self.backend
        if is_single(index):
            return backend.asarray(self._row_episode_ids[int(index)], dtype=backend.default_integer_dtype)
        host = index if isinstance(index, slice) else np.asarray(backend.to_numpy(index))
        return backend.asarray(self._row_episode_ids[host], dtype=backend.default_integer_dtype, device=self.device)

    def close(self) -> None:
        """Close the rows (and the episodes of :meth:`from_episodes`): the dataset owns what it reads."""
        for batch in self._owned:
            batch.close()

    def __repr__(self) -> str:
        return f"EpisodeDataset({self.num_episodes} episodes, {len(self)} rows, space={self.single_space!r})"
