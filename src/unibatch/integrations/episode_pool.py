"""``EpisodePoolSampler``: sample from a local pool of episodes (or windows of them) pulled from an ``EpisodeStore``.

Random rows straight from an object store cost a request each, so the sampler keeps a pool of
``pool_steps`` steps in memory (a ``TrajectoryReplayBuffer`` ring: new pieces replace the oldest)
and samples there. Background threads pull pieces (whole episodes, or ``piece_steps`` consecutive
steps from a random start), episodes drawn with probability proportional to their length so that
steps are close to uniform; every ``refresh_every`` samples the pieces that arrived join the pool
and new pulls start. Each piece gets its own pool episode id, so a ``FrameStackedBatch`` view with
an episode-id mask never joins two pieces.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from unibatch.batches import BatchBase
from unibatch.batches._base import Metadata
from unibatch.buffers import TrajectoryReplayBuffer
from unibatch.integrations.object_store import EpisodeInfo, EpisodeStore
from unibatch.samplers import StepSampler
from unibatch.samplers.base import BatchSampler


class EpisodePoolSampler(BatchSampler):
    """Uniform mini-batches from a local pool of pieces of ``store``'s episodes (see the module docstring).

    Args:
        store: the episode store (opened with a ``local_cache`` to read each object once).
        batch_size: rows per batch.
        pool_steps: steps the pool holds.
        piece_steps: steps per pulled piece; None pulls whole episodes.
        pieces_per_refresh: pulls started at each refresh.
        refresh_every: samples between refreshes.
        view: ``view(pool) -> BatchBase`` sampled instead of the pool (e.g. a ``FrameStackedBatch``).
        seed: seed of the episode choices and of the batches.
        threads: background threads pulling pieces.
        list_interval: seconds between listings of the store's committed episodes.
    """

    def __init__(
        self,
        store: EpisodeStore,
        batch_size: int,
        *,
        pool_steps: int,
        piece_steps: int | None = None,
        pieces_per_refresh: int = 4,
        refresh_every: int = 16,
        view: Callable[[BatchBase], BatchBase] | None = None,
        seed: int | None = None,
        threads: int = 2,
        list_interval: float = 1.0,
    ) -> None:
        if pool_steps <= 0 or pieces_per_refresh <= 0 or refresh_every <= 0 or (piece_steps or 1) <= 0:
            raise ValueError("pool_steps, piece_steps, pieces_per_refresh and refresh_every must be positive")
        self.store = store
        self.pool = TrajectoryReplayBuffer.create(store.step_space, None, step_data_capacity=pool_steps)
        self.view = self.pool if view is None else view(self.pool)
        super().__init__(self.view.single_space, self.view.single_metadata_space, batch_size)
        self.data = self.view
        self.piece_steps = piece_steps
        self.pieces_per_refresh = pieces_per_refresh
        self.refresh_every = refresh_every
        self._rng = np.random.default_rng(seed)
        self._sampler = StepSampler(self.view, batch_size, seed=int(self._rng.integers(1 << 31)))
        self.data_rng = self._sampler.data_rng
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="unibatch-pool")
        self._pulls: deque[Future[Any]] = deque()
        self._since_refresh = 0
        self.pulled_pieces = 0
        self.list_interval = list_interval
        self._episodes: list[EpisodeInfo] = []
        self._listed_at = -math.inf

    def __len__(self) -> int:
        return len(self.view)

    # ------------------------------------------------------------------ the pool
    def refresh(self, wait: bool = False) -> int:
        """Add the pieces that arrived to the pool and start new pulls; returns the pieces added.

        ``wait=True`` blocks until at least one piece arrived (when the store has any episode).
        """
        if not self._pulls:
            self._start_pulls()
        if wait and self._pulls:
            self._pulls[0].result()
        added = 0
        while self._pulls and self._pulls[0].done():
            piece = self._pulls.popleft().result()
            self.pool.extend({"step_data": piece})
            self.pool.mark_episode_end()  # the next piece gets its own pool episode id
            added += 1
        self.pulled_pieces += added
        self._start_pulls()
        return added

    def _committed_episodes(self, fresh: bool = False) -> list[EpisodeInfo]:
        """The store's episodes, listed again once ``list_interval`` seconds have passed."""
        now = time.monotonic()
        if fresh or now - self._listed_at > self.list_interval:
            self._episodes, self._listed_at = self.store.episodes(), now
        return self._episodes

    def _start_pulls(self) -> None:
        episodes = self._committed_episodes()
        if not episodes or len(self._pulls) >= self.pieces_per_refresh:
            return
        lengths = np.array([episode.length for episode in episodes], dtype=np.float64)
        chosen = self._rng.choice(
            len(episodes), size=self.pieces_per_refresh - len(self._pulls), p=lengths / lengths.sum()
        )
        for position in chosen.tolist():
            episode = episodes[position]
            start, stop = self._piece(episode)
            self._pulls.append(self._executor.submit(self.store.read_episode, episode, start, stop))

    def _piece(self, episode: EpisodeInfo) -> tuple[int, int]:
        if self.piece_steps is None or self.piece_steps >= episode.length:
            return 0, episode.length
        start = int(self._rng.integers(0, episode.length - self.piece_steps + 1))
        return start, start + self.piece_steps

    def _ready(self) -> None:
        """Refresh every ``refresh_every`` samples; block until the pool holds rows."""
        self._since_refresh += 1
        if self._since_refresh >= self.refresh_every or not len(self.pool):
            self._since_refresh = 0
            self.refresh()
        while not len(self.view):
            if not self._committed_episodes(fresh=True):
                raise IndexError(f"{self.store.url} has no committed episode to sample from yet")
            self.refresh(wait=True)

    # ------------------------------------------------------------------ sampling
    def sample(self) -> Any:
        self._ready()
        return self._sampler.sample()

    def sample_with_metadata(self) -> tuple[Any, Metadata]:
        self._ready()
        return self._sampler.sample_with_metadata()

    def sample_flat(self) -> Any:
        self._ready()
        return self._sampler.sample_flat()

    def sample_flat_with_metadata(self) -> tuple[Any, Metadata]:
        self._ready()
        return self._sampler.sample_flat_with_metadata()

    def close(self) -> None:
        """Stop the pulls (waits for the ones running) and free the pool."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._pulls.clear()
        self.pool.close()
