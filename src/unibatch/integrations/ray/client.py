"""Client handles of buffers hosted by Ray actors; each handle is itself a ``BatchBase``.

``RemoteBuffer`` talks to one actor: reads are one remote call per request (NumPy results come
zero-copy from Ray's object store, read-only), writes are staged and shipped in chunks by a
:class:`~unibatch.integrations.ray._writer.ChunkWriter`. ``ShardedRemoteBuffer`` spreads
writes over several actors (whole episodes per actor, or chunks in turn) and reads them as one
``CombinedBatch``. Samplers, views and ``FrameStackedBatch`` work on both unchanged; for fast
sampling use :class:`~unibatch.integrations.ray.sampler.RemoteSampler`, which samples on the
actors and fetches several batches per round trip.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from unibatch._optional import require
from unibatch._typing import Device
from unibatch.backends import ComputeBackend, backend_from_name, convert_tree
from unibatch.batches import BatchBase, CombinedBatch
from unibatch.batches._base import Metadata
from unibatch.batches._indexing import NormalizedIndex
from unibatch.errors import SpaceMismatchError, UnsupportedOperationError
from unibatch.integrations.ray._host import TRAJECTORY
from unibatch.integrations.ray._writer import ChunkWriter
from unibatch.spaces import DictSpace, json_to_space

DEFAULT_CHUNK_SIZE = 256
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_MAX_IN_FLIGHT = 4
DEFAULT_LENGTH_REFRESH = 0.1


def ray_module() -> Any:
    """The ``ray`` package, or an error naming ``pip install "unibatch[ray]"``."""
    return require("ray", "ray")


class RemoteBuffer(BatchBase):
    """A ``BatchBase`` on the buffer of one actor started by ``serve_replay_buffer``/``serve_trajectory_buffer``.

    Args:
        actor: the actor handle.
        chunk_size: rows per shipped chunk (appends reach 100k+ rows/s from chunks of 64+ rows).
        flush_interval: seconds after which an append ships the staged rows even if the chunk is
            not full (checked at each append; call :meth:`flush` to ship without appending).
        max_in_flight: chunks sent but not yet acknowledged before an append waits.
        backend, device: where results are delivered (default NumPy: zero-copy, read-only).
        length_refresh: ``len()`` asks the actor again once its last answer is this many seconds old.

    A trajectory buffer's ``append`` takes one raw step and :meth:`mark_episode_end` starts the next
    episode (the host gives every producer's episodes global ids). A handle pickles into another
    process (a Ray task, say) as a new producer with nothing staged.
    """

    has_expensive_reads = True  # a read is a round trip: windows read each distinct row once

    def __init__(
        self,
        actor: Any,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        backend: ComputeBackend | None = None,
        device: Device | None = None,
        length_refresh: float = DEFAULT_LENGTH_REFRESH,
    ) -> None:
        ray = ray_module()
        self.actor = actor
        self.chunk_size, self.flush_interval, self.max_in_flight = chunk_size, flush_interval, max_in_flight
        self._client_backend = backend or backend_from_name("numpy")
        self._device = device
        self.length_refresh = length_refresh
        info = ray.get(actor.describe.remote())
        self.kind: str = info["kind"]
        self.capacity: int | None = info["capacity"]
        space = json_to_space(info["space"], self._client_backend, device)
        metadata = info["metadata_space"]
        metadata_space = None if metadata is None else json_to_space(metadata, self._client_backend, device)
        super().__init__(space, cast(DictSpace | None, metadata_space))
        self.row_space = json_to_space(info["row_space"], self._client_backend, device)
        self._length, self._length_time = int(info["length"]), time.monotonic()
        self._writer: ChunkWriter | None = None

    @property
    def backend(self) -> ComputeBackend:
        return self._client_backend

    @property
    def device(self) -> Device | None:
        return self._device

    @property
    def is_trajectory(self) -> bool:
        return self.kind == TRAJECTORY

    # ------------------------------------------------------------------ length
    def note_length(self, length: int) -> None:
        """Record the host's length from a reply (every reply carries it)."""
        self._length, self._length_time = int(length), time.monotonic()

    def __len__(self) -> int:
        if time.monotonic() - self._length_time > self.length_refresh:
            self.note_length(ray_module().get(self.actor.length.remote()))
        return self._length

    # ------------------------------------------------------------------ reads
    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        host_index = index if isinstance(index, (int, slice)) else self.backend.to_numpy(index)
        data, metadata, length = ray_module().get(self.actor.get.remote(host_index, with_metadata))
        self.note_length(length)
        return self.to_client(data), self.to_client(metadata)

    def to_client(self, tree: Any) -> Any:
        """Host (NumPy) values on this handle's backend and device; NumPy stays zero-copy."""
        if tree is None or (self._client_backend.simplified_name == "numpy" and self._device is None):
            return tree
        return convert_tree(tree, self._client_backend, self._device)

    # ------------------------------------------------------------------ writes
    @property
    def writer(self) -> ChunkWriter:
        """This process's producer state (created on first write)."""
        if self._writer is None:
            self._writer = ChunkWriter(
                self.actor,
                self.row_space,
                self.is_trajectory,
                self.chunk_size,
                self.flush_interval,
                self.max_in_flight,
                on_reply=self.note_length,
            )
        return self._writer

    def append(self, value: Any) -> None:
        """Stage one row (one raw step for a trajectory buffer)."""
        self.writer.append(value)

    def extend(self, value: Any) -> None:
        """Stage rows (raw steps, or ``{"step_data": steps}`` for a trajectory buffer)."""
        self.writer.extend(_raw_steps(value, self.is_trajectory))

    def mark_episode_end(self) -> None:
        """Ship the staged steps; the next ones start a new episode (trajectory buffers)."""
        _require_trajectory(self)
        self.writer.end_episode()

    def flush(self) -> None:
        """Ship the staged rows and wait until the actor has committed everything sent."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush what this producer staged (the actor and its buffer keep running)."""
        self.flush()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_writer"] = None  # the copy is another producer
        return state

    def __repr__(self) -> str:
        return f"RemoteBuffer(kind={self.kind!r}, length={self._length}, capacity={self.capacity})"


class ShardedRemoteBuffer(BatchBase):
    """Several buffer actors as one batch: writes spread over them, reads see their concatenation.

    A trajectory producer sends each whole episode to one shard (its episodes go round the shards
    from a random start), so windows never straddle shards; a replay producer sends its chunks
    to the shards in turn. Reads route through a ``CombinedBatch`` of the shards' handles (whose
    metadata adds ``batch_index``, the shard of each row).
    """

    has_expensive_reads = True

    def __init__(self, actors: Sequence[Any], **client_options: Any) -> None:
        if not actors:
            raise ValueError("ShardedRemoteBuffer needs at least one actor")
        self.shards = [RemoteBuffer(actor, **client_options) for actor in actors]
        self._combined = CombinedBatch(self.shards)
        super().__init__(self._combined.single_space, self._combined.single_metadata_space)
        first = self.shards[0]
        for position, shard in enumerate(self.shards[1:], start=1):
            if shard.kind != first.kind or shard.row_space != first.row_space:
                raise SpaceMismatchError(
                    f"shard {position} hosts a {shard.kind} buffer of {shard.row_space!r}, "
                    f"expected a {first.kind} buffer of {first.row_space!r}"
                )
        self.kind = self.shards[0].kind
        self._shard = random.randrange(len(self.shards))

    @property
    def backend(self) -> ComputeBackend:
        return self.shards[0].backend

    @property
    def device(self) -> Device | None:
        return self.shards[0].device

    def __len__(self) -> int:
        return len(self._combined)

    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        return self._combined._get(index, with_metadata)

    def _current(self) -> ChunkWriter:
        return self.shards[self._shard].writer

    def _advance(self) -> None:
        self._shard = (self._shard + 1) % len(self.shards)

    def append(self, value: Any) -> None:
        writer = self._current()
        shipped = writer.shipped_rows
        writer.append(value)
        if self.kind != TRAJECTORY and writer.shipped_rows != shipped:
            self._advance()

    def extend(self, value: Any) -> None:
        writer = self._current()
        shipped = writer.shipped_rows
        writer.extend(_raw_steps(value, self.kind == TRAJECTORY))
        if self.kind != TRAJECTORY and writer.shipped_rows != shipped:
            self._advance()

    def mark_episode_end(self) -> None:
        """The current episode ends on its shard; the next one goes to the next shard."""
        _require_trajectory(self)
        self._current().end_episode()
        self._advance()

    def flush(self) -> None:
        for shard in self.shards:
            shard.flush()

    def close(self) -> None:
        self.flush()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A copy in another process is another producer: it starts on a shard of its own choosing."""
        self.__dict__.update(state)
        self._shard = random.randrange(len(self.shards))

    def __repr__(self) -> str:
        return f"ShardedRemoteBuffer(kind={self.kind!r}, shards={len(self.shards)})"


def _raw_steps(value: Any, trajectory: bool) -> Any:
    if trajectory and isinstance(value, Mapping) and "step_data" in value:
        if set(value) != {"step_data"}:
            raise SpaceMismatchError(
                f"a remote trajectory buffer takes steps or {{'step_data': steps}}; got keys {sorted(value)} "
                "(episode ids are given by the host)"
            )
        return value["step_data"]
    return value


def _require_trajectory(batch: RemoteBuffer | ShardedRemoteBuffer) -> None:
    if batch.kind != TRAJECTORY:
        raise UnsupportedOperationError("mark_episode_end needs a trajectory buffer (serve_trajectory_buffer)")
