"""``ChunkWriter``: the producer side of one buffer actor. Rows are staged locally and shipped in chunks.

A chunk ships when it holds ``chunk_size`` rows, when an append finds its oldest row older than
``flush_interval`` seconds, at the end of an episode, and on :meth:`ChunkWriter.flush`. At most
``max_in_flight`` chunks travel unacknowledged; :meth:`flush` waits for all of them. Each chunk
carries ``(producer, seq)``, so the host applies it exactly once even when Ray retries the call.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from unibatch.backends import backend_from_name, convert_tree
from unibatch.buffers import ReplayBuffer
from unibatch.spaces import Space, batch_space, check_data, get_at


class ChunkWriter:
    """Stages rows of ``row_space`` and ships them to ``actor`` (see the module docstring).

    Args:
        actor: a Ray actor handle of a ``BufferHost``.
        row_space: the space of one appended row, on the producer's backend.
        trajectory: whether rows are steps that carry the producer's episode number.
        on_reply: called with the host's length after each acknowledged chunk.
    """

    def __init__(
        self,
        actor: Any,
        row_space: Space,
        trajectory: bool,
        chunk_size: int,
        flush_interval: float,
        max_in_flight: int,
        on_reply: Callable[[int], None],
    ) -> None:
        if chunk_size <= 0 or max_in_flight <= 0 or flush_interval < 0:
            raise ValueError(
                "chunk_size and max_in_flight must be positive and flush_interval non-negative, got "
                f"{chunk_size}, {max_in_flight}, {flush_interval}"
            )
        self.actor = actor
        self.row_space = row_space
        self.trajectory = trajectory
        self.chunk_size = chunk_size
        self.flush_interval = flush_interval
        self.max_in_flight = max_in_flight
        self.on_reply = on_reply
        self.producer = uuid.uuid4().hex
        self.episode = 0
        self.shipped_rows = 0
        self._seq = 0
        self._staging = ReplayBuffer.create(None, row_space, capacity=chunk_size)
        self._batched_space = batch_space(row_space, 1)
        self._episodes = np.zeros(chunk_size, dtype=np.int64)
        self._oldest: float | None = None
        self._in_flight: deque[Any] = deque()

    @property
    def staged(self) -> int:
        return len(self._staging)

    # ------------------------------------------------------------------ staging
    def append(self, row: Any) -> None:
        """Stage one row (validated by the staging buffer); ship when the chunk is due."""
        now = time.monotonic()
        if self._oldest is not None and now - self._oldest > self.flush_interval:
            self.ship()
        position = len(self._staging)
        self._staging.append(row)
        self._episodes[position] = self.episode
        if self._oldest is None:
            self._oldest = now
        if position + 1 == self.chunk_size:
            self.ship()

    def extend(self, rows: Any) -> None:
        """Stage a batch of rows (validated first), shipping full chunks as they fill."""
        (count,) = check_data(self.row_space, rows, batch_ndim=1)
        start = 0
        while start < count:
            room = self.chunk_size - len(self._staging)
            stop = min(count, start + room)
            part = rows if (start, stop) == (0, count) else get_at(self._batched_space, rows, slice(start, stop))
            self._episodes[len(self._staging) : len(self._staging) + stop - start] = self.episode
            self._staging.extend(part)
            if self._oldest is None:
                self._oldest = time.monotonic()
            if len(self._staging) == self.chunk_size:
                self.ship()
            start = stop

    def end_episode(self) -> None:
        """The next rows belong to a new episode; the staged ones ship now."""
        self.ship()
        self.episode += 1

    # ------------------------------------------------------------------ shipping
    def ship(self) -> bool:
        """Send the staged rows as one chunk (no wait unless ``max_in_flight`` chunks are out)."""
        count = len(self._staging)
        if not count:
            return False
        rows = self._staging.get_at(slice(0, count))
        numpy = backend_from_name("numpy")
        if self._staging.backend is not numpy:
            rows = convert_tree(rows, numpy)
        ids = self._episodes[:count].copy() if self.trajectory else None
        # Ray serialises the arguments inside .remote(), so the staging rows may be reused at once.
        self._in_flight.append(self.actor.extend.remote(self.producer, self._seq, rows, ids))
        self._seq += 1
        self.shipped_rows += count
        self._staging.clear()
        self._oldest = None
        while len(self._in_flight) > self.max_in_flight:
            self._wait_oldest()
        return True

    def _wait_oldest(self) -> None:
        import ray

        _, length = ray.get(self._in_flight.popleft())
        self.on_reply(int(length))

    def flush(self) -> None:
        """Ship the staged rows and wait until the host has committed every chunk sent."""
        self.ship()
        while self._in_flight:
            self._wait_oldest()

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a ChunkWriter belongs to one producer process; create a new handle in the other process")
