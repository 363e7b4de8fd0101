"""``BufferHost``: what a buffer actor runs. Plain Python, so it is tested without Ray too.

A host owns one NumPy ``ReplayBuffer`` or ``TrajectoryReplayBuffer``. Every write is a chunk
``(producer, seq, rows)``; the host applies it once, records ``seq`` per producer in the
buffer's ``extra_metadata`` and commits rows and record together. A chunk that arrives again
(Ray retries calls that were in flight when the actor died) is acknowledged without being
applied, so after a restart from the buffer's directory nothing is lost or duplicated.
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unibatch.backends import backend_from_name
from unibatch.batches import BatchBase
from unibatch.buffers import ReplayBuffer, TrajectoryReplayBuffer
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import json_to_space, space_to_json
from unibatch.storages import storage_class

REPLAY, TRAJECTORY = "replay", "trajectory"
PRODUCERS_KEY = "ray_producers"
"""``extra_metadata`` key: ``{producer: {"seq": last applied chunk, "episode": [local id, global id]}}``."""


@dataclass(frozen=True)
class BufferSpec:
    """How a host makes its buffer: reopened from ``cache_path`` when one is there, else created.

    ``space`` is the JSON of one row (one step for a trajectory buffer); ``storage`` a registered
    storage name (None: memmap with a ``cache_path``, memory without).
    """

    kind: str
    space: dict[str, Any]
    cache_path: str | None = None
    capacity: int | None = None
    storage: str | None = None
    storage_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in (REPLAY, TRAJECTORY):
            raise ValueError(f"kind must be {REPLAY!r} or {TRAJECTORY!r}, got {self.kind!r}")


class BufferHost:
    """The buffer of one actor, its chunked idempotent writes and its batched reads and samples."""

    def __init__(self, spec: BufferSpec) -> None:
        self.spec = spec
        self.buffer: ReplayBuffer | TrajectoryReplayBuffer = _open_or_create(spec)
        self._producers: dict[str, dict[str, Any]] = dict(self.buffer.extra_metadata.get(PRODUCERS_KEY, {}))
        self._views: dict[str, BatchBase] = {}

    # ------------------------------------------------------------------ description
    def describe(self, view_key: str | None = None) -> dict[str, Any]:
        """Spaces (JSON), length and capacity of the buffer or of a registered view."""
        batch = self.buffer if view_key is None else self._views[view_key]
        row_space = (
            self.buffer.step_data_buffer.single_space
            if isinstance(self.buffer, TrajectoryReplayBuffer)
            else self.buffer.single_space
        )
        metadata_space = batch.single_metadata_space
        return {
            "kind": self.spec.kind,
            "space": space_to_json(batch.single_space),
            "metadata_space": None if metadata_space is None else space_to_json(metadata_space),
            "row_space": space_to_json(row_space),
            "length": len(batch),
            "capacity": self.buffer.capacity,
            "has_expensive_reads": batch.has_expensive_reads,
        }

    def length(self) -> int:
        return len(self.buffer)

    def pid(self) -> int:
        """The actor's process id (tests kill it to check restarts)."""
        return os.getpid()

    def applied(self) -> dict[str, int]:
        """The last chunk number applied per producer."""
        return {producer: int(state["seq"]) for producer, state in self._producers.items()}

    def next_seq(self, producer: str) -> int:
        """The chunk number the host applies next for ``producer``."""
        return int(self._producers.get(producer, {"seq": -1})["seq"]) + 1

    # ------------------------------------------------------------------ writes
    def extend(
        self, producer: str, seq: int, rows: Any, episode_ids: np.ndarray | None = None, commit: bool = True
    ) -> tuple[bool, int]:
        """Apply chunk ``seq`` of ``producer`` once and (unless ``commit=False``) commit; returns ``(applied, length)``.

        Chunks apply in order: ``seq`` must be the next one (:class:`BufferActor` waits for it).
        With ``commit=False`` the caller commits later (:meth:`commit`), for several chunks at once.

        ``episode_ids`` (trajectory buffers): the producer's own episode numbers of the rows,
        non-decreasing; the host maps each to a global episode id in order of arrival.
        """
        state = self._producers.get(producer, {"seq": -1, "episode": None})
        if seq <= state["seq"]:
            return False, len(self.buffer)  # a retried chunk: already committed
        if seq != state["seq"] + 1:
            raise ValueError(f"chunk {seq} of producer {producer} arrived before chunk {state['seq'] + 1}")
        state = dict(state)
        if isinstance(self.buffer, TrajectoryReplayBuffer):
            if episode_ids is None:
                raise SpaceMismatchError("a trajectory host needs the producer's episode ids with every chunk")
            ids = self._global_episode_ids(state, np.asarray(episode_ids))
            self.buffer.extend({"step_data": rows, "episode_ids": ids})
        else:
            self.buffer.extend(rows)
        state["seq"] = int(seq)
        self._producers[producer] = state
        if commit:
            self.commit()
        return True, len(self.buffer)

    def commit(self) -> None:
        """Commit the rows applied so far together with the producer records that describe them.

        The buffer's ``extra_metadata`` only ever holds records of committed chunks: a commit the
        buffer makes by itself (a full ring dropping its oldest rows) must not record chunks whose
        rows it does not commit.
        """
        self.buffer.extra_metadata[PRODUCERS_KEY] = copy.deepcopy(self._producers)
        self.buffer.flush()

    def _global_episode_ids(self, state: dict[str, Any], local_ids: np.ndarray) -> np.ndarray:
        """Global ids for a producer's episode numbers; a new number takes the next global id."""
        buffer = self.buffer
        assert isinstance(buffer, TrajectoryReplayBuffer)
        unique, inverse = np.unique(local_ids, return_inverse=True)
        mapped = np.empty(len(unique), dtype=np.int64)
        for position, local in enumerate(unique.tolist()):
            current = state.get("episode")
            if current is not None and current[0] == local:
                mapped[position] = current[1]
                continue
            mapped[position] = buffer.current_episode_id
            state["episode"] = [int(local), int(mapped[position])]
            buffer.current_episode_id = buffer.current_episode_id + 1
        dtype = buffer.step_episode_id_buffer.single_space.dtype
        return mapped[inverse].astype(dtype, copy=False)

    def flush(self) -> int:
        self.commit()
        return len(self.buffer)

    # ------------------------------------------------------------------ reads
    def get(self, index: Any, with_metadata: bool) -> tuple[Any, Any, int]:
        """Rows at ``index`` (int, slice or int64 array), their metadata when asked, and the length."""
        if with_metadata:
            data, metadata = self.buffer.get_at_with_metadata(index)
        else:
            data, metadata = self.buffer.get_at(index), None
        return data, metadata, len(self.buffer)

    def register_view(self, key: str, make_view: Callable[[BatchBase], BatchBase] | None) -> dict[str, Any]:
        """Build ``make_view(buffer)`` once (None: the buffer itself) for :meth:`sample`; describe it."""
        if key not in self._views:
            self._views[key] = self.buffer if make_view is None else make_view(self.buffer)
        return self.describe(key)

    def sample(
        self, key: str, sizes: list[int], seeds: list[int], with_metadata: bool, flat: bool
    ) -> tuple[list[tuple[Any, Any]], int]:
        """One batch of ``sizes[i]`` uniform rows of view ``key`` per ``seeds[i]``; and the view's length."""
        view = self._views[key]
        length = len(view)
        if length == 0 and any(sizes):
            raise IndexError("the remote buffer is empty: nothing to sample yet")
        read = view._get_flattened if flat else view._get
        batches = []
        for size, seed in zip(sizes, seeds, strict=True):
            index = np.random.default_rng(seed).integers(0, max(length, 1), size, dtype=np.int64)
            batches.append(read(index, with_metadata))
        return batches, length

    def close(self) -> None:
        self.buffer.close()


def _open_or_create(spec: BufferSpec) -> ReplayBuffer | TrajectoryReplayBuffer:
    numpy = backend_from_name("numpy")
    storage_cls = None if spec.storage is None else storage_class(spec.storage)
    space = json_to_space(spec.space, numpy)
    path = spec.cache_path
    if spec.kind == REPLAY:
        if path is not None and ReplayBuffer.is_loadable_from(path):
            return ReplayBuffer.load_from(path, backend=numpy, read_only=False, single_instance_space=space)
        return ReplayBuffer.create(storage_cls, space, cache_path=path, capacity=spec.capacity, **spec.storage_kwargs)
    if path is not None and TrajectoryReplayBuffer.is_loadable_from(path):
        buffer = TrajectoryReplayBuffer.load_from(path, backend=numpy, read_only=False)
        if buffer.step_data_buffer.single_space != space:
            raise SpaceMismatchError(f"{path} stores steps of {buffer.step_data_buffer.single_space!r}, not {space!r}")
        return buffer
    return TrajectoryReplayBuffer.create(
        space, storage_cls, step_data_capacity=spec.capacity, cache_path=path, **spec.storage_kwargs
    )


class BufferActor:
    """The Ray actor around a :class:`BufferHost` (an asyncio actor).

    Ray runs a producer's calls in order until the actor dies; calls it retries on a restarted
    actor may then arrive in any order. A chunk that arrives early waits (without blocking the
    actor) for the chunks before it, so every producer's rows land in the order they were
    written. A chunk whose predecessor does not come within ``gap_timeout`` seconds (its producer
    died with calls in flight) is refused, so a dead producer's stream ends in a prefix, never
    with a hole. Commits are grouped: the chunks that arrived together are applied, committed
    once, and then all acknowledged; a call returns only once its chunk is committed.
    """

    def __init__(self, spec: BufferSpec, gap_timeout: float = 60.0) -> None:
        self.host = BufferHost(spec)
        self.gap_timeout = gap_timeout
        self._turn: asyncio.Condition | None = None
        self._applied = 0  # chunks applied so far (a ticket per chunk)
        self._committed = 0  # chunks covered by the last commit
        self._commit_task: asyncio.Future[None] | None = None

    async def extend(
        self, producer: str, seq: int, rows: Any, episode_ids: np.ndarray | None = None
    ) -> tuple[bool, int]:
        if self._turn is None:
            self._turn = asyncio.Condition()
        async with self._turn:
            try:
                await asyncio.wait_for(
                    self._turn.wait_for(lambda: self.host.next_seq(producer) >= seq), self.gap_timeout
                )
            except asyncio.TimeoutError as error:
                raise TimeoutError(
                    f"chunk {seq} of producer {producer} waited {self.gap_timeout} s for chunk "
                    f"{self.host.next_seq(producer)}, which never came; it is not applied"
                ) from error
            applied, _ = self.host.extend(producer, seq, rows, episode_ids, commit=False)
            self._applied += applied
            ticket = self._applied  # a retried chunk waits for the commit of what is applied too
            self._turn.notify_all()
        await self._committed_through(ticket)
        return applied, self.host.length()

    async def _committed_through(self, ticket: int) -> None:
        while self._committed < ticket:
            if self._commit_task is None:
                self._commit_task = asyncio.ensure_future(self._group_commit())
            await asyncio.shield(self._commit_task)

    async def _group_commit(self) -> None:
        try:
            await self._settle()
            target = self._applied
            self.host.commit()
            self._committed = target
        finally:
            self._commit_task = None

    async def _settle(self, passes: int = 64) -> None:
        """Yield to the calls already received until a few turns pass with no chunk applied.

        They then share the coming commit (bounded: a steady stream still commits).
        """
        quiet = 0
        for _ in range(passes):
            before = self._applied
            await asyncio.sleep(0)
            quiet = quiet + 1 if self._applied == before else 0
            if quiet >= 3:
                return

    async def describe(self, view_key: str | None = None) -> dict[str, Any]:
        return self.host.describe(view_key)

    async def length(self) -> int:
        return self.host.length()

    async def pid(self) -> int:
        return self.host.pid()

    async def applied(self) -> dict[str, int]:
        return self.host.applied()

    async def flush(self) -> int:
        return self.host.flush()

    async def get(self, index: Any, with_metadata: bool) -> tuple[Any, Any, int]:
        return self.host.get(index, with_metadata)

    async def register_view(self, key: str, make_view: Callable[[BatchBase], BatchBase] | None) -> dict[str, Any]:
        return self.host.register_view(key, make_view)

    async def sample(
        self, key: str, sizes: list[int], seeds: list[int], with_metadata: bool, flat: bool
    ) -> tuple[list[tuple[Any, Any]], int]:
        return self.host.sample(key, sizes, seeds, with_metadata, flat)
