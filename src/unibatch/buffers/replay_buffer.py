"""``ReplayBuffer``: ring semantics over a ``SpaceStorage``, with persistence and sharing.

Logical index 0 is the oldest row. Appending to a full fixed-capacity ring overwrites the
oldest rows. With a ``cache_path`` the buffer is persistent: ``flush()`` (and ``dumps`` to its
own path) commits the rows written so far by replacing ``metadata.json`` atomically, and a
writer killed at any point leaves a buffer that reopens with every committed row intact and no
torn row: before the bytes of committed slots change, those slots leave the committed range.

Readers beside a writer (README "Persistence and crashes"): a buffer opened read-only from a
directory reads a snapshot of the commit it opened; :meth:`ReplayBuffer.refresh` takes the newest.
Each commit records ``start``, the absolute number of its oldest row, and the writer mirrors it in
``commits.live`` (``_live``) before any dropped slot changes, so a read checks afterwards, in one
word, that none of its rows was overwritten while it ran. Every opener (reader or writer) takes a
commit without the rows that word has passed (``_live.settle``): after a writer was killed between
the two, all of them see the same rows. A public read whose rows were overtaken
drops them from the snapshot, resolves its index again and retries (:data:`READ_ATTEMPTS` in all);
then, and for indices made earlier (samplers, views), it raises ``RowsOverwrittenError``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unibatch._typing import Array, BArrayType, BatchT, BDeviceType, BDtypeType, BRNGType, Device
from unibatch.backends import ComputeBackend
from unibatch.batches import BatchBase
from unibatch.batches._base import Metadata
from unibatch.batches._indexing import NormalizedIndex, is_single
from unibatch.buffers import ring
from unibatch.buffers._live import CommitFront, published_start, settle
from unibatch.buffers._metadata import (
    METADATA_FILE,
    persisted_state_of,
    read_metadata,
    require_fields,
    write_metadata,
)
from unibatch.buffers._state import RingState, parse_persisted_capacity, parse_ring_state, parse_start
from unibatch.errors import CorruptDataError, RowsOverwrittenError, SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import Space, batch_size_data, get_at, json_to_space, space_to_json
from unibatch.spaces._exact import exact_batch_leaves, exact_leaves
from unibatch.spaces.validation import check_leaf_bounds
from unibatch.storages import SpaceStorage, storage_class
from unibatch.storages._directories import new_directory, parse_capacity, removes_on_failure
from unibatch.storages._safe_paths import resolve_inside

PathLike = str | os.PathLike[str]
BUFFER_TYPE = "ReplayBuffer"
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "count": int,
    "offset": int,
    "capacity": (int, type(None)),
    "storage": dict,
    "single_instance_space": dict,
}
"""The fields of ``metadata.json`` a load needs, with their JSON types (checked before any is used)."""
SNAPSHOT_SUFFIX = ".1"
"""Memory-backed persistent buffers alternate their snapshots between ``storage`` and ``storage.1``."""
COMMIT_RESERVE_FRACTION = 16
COMMIT_RESERVE_LIMIT = 4096
"""In a full persistent ring, a commit drops the rows about to be overwritten plus the next
``min(capacity // 16, 4096)`` from the committed range, so commits happen once per that many
appends, not per append (a crash there loses at most that many of the oldest rows)."""
READ_ATTEMPTS = 4
"""A public read of a reader whose rows the writer overtook refreshes and tries again this many times in all."""


class ReplayBuffer(BatchBase[BatchT, BArrayType, BDeviceType, BDtypeType, BRNGType]):
    """Ring-buffer style batch storage built on top of a :class:`SpaceStorage`.

    Writes never change a value silently: a cast that would (``300`` into ``uint8``) raises
    :class:`~unibatch.errors.SpaceMismatchError` and writes nothing. Bounds are checked when
    :attr:`check_bounds` is set (off by default, for speed)::

        buffer = ReplayBuffer.create(None, space, capacity=1000)
        buffer.check_bounds = True  # kept in metadata.json from the next commit (flush) on

    Args:
        storage: where rows live (physical slots).
        storage_path_relative: the storage's path inside ``cache_path``.
        count: number of valid rows.
        offset: physical slot of logical row 0.
        cache_path: directory of a persistent buffer (``metadata.json`` + storage), or None.
        multiprocessing: share ``count``/``offset`` and a lock with other processes.
    """

    def __init__(
        self,
        storage: SpaceStorage,
        storage_path_relative: str,
        count: int = 0,
        offset: int = 0,
        cache_path: PathLike | None = None,
        multiprocessing: bool = False,
    ) -> None:
        super().__init__(storage.single_instance_space, None)
        if multiprocessing and storage.is_mutable and not storage.is_multiprocessing_safe:
            raise UnsupportedOperationError(f"{type(storage).__name__} cannot be shared between processes")
        self.storage = storage
        self._storage_path_relative = storage_path_relative
        self._cache_path = None if cache_path is None else Path(cache_path)
        self._multiprocessing = multiprocessing
        self._state = RingState(count, offset, shared=multiprocessing and storage.is_mutable)
        self._committed = (count, offset)
        self._committed_start = 0
        self._commit_hook: Callable[[int, int, int], None] | None = None
        self._live: CommitFront | None = None  # a persistent writer publishes its committed front here
        self._follows: CommitFront | None = None  # a reader checks its reads against the writer's front
        self._columns: dict[tuple[str, ...], SpaceStorage] = {}
        self._is_view = False
        self._stale_snapshot: str | None = None
        self._closed = False
        self.extra_metadata: dict[str, Any] = {}
        """JSON values committed together with the rows (every commit writes them; ``load_from``
        restores them): an owner's bookkeeping that must never disagree with the committed rows."""

    # ------------------------------------------------------------------ properties
    @property
    def cache_path(self) -> Path | None:
        return self._cache_path

    @property
    def storage_path_relative(self) -> str:
        return self._storage_path_relative

    @property
    def count(self) -> int:
        return self._state.count

    @count.setter
    def count(self, value: int) -> None:
        self._state.publish(int(value), self._state.offset)

    @property
    def offset(self) -> int:
        return self._state.offset

    @offset.setter
    def offset(self, value: int) -> None:
        self._state.publish(self._state.count, int(value))

    @property
    def capacity(self) -> int | None:
        return self.storage.capacity

    @property
    def backend(self) -> ComputeBackend:
        return self.storage.backend

    @property
    def device(self) -> Device | None:
        return self.storage.device

    @property
    def is_mutable(self) -> bool:  # type: ignore[override]
        return self.storage.is_mutable and not self._is_view

    @property
    def is_multiprocessing_safe(self) -> bool:
        return self._multiprocessing and (self.storage.is_multiprocessing_safe or not self.storage.is_mutable)

    @property
    def has_expensive_reads(self) -> bool:  # type: ignore[override]
        return self.storage.has_expensive_reads

    def __len__(self) -> int:
        return self._state.count

    # ------------------------------------------------------------------ index mapping
    def _physical(self, index: NormalizedIndex) -> Any:
        offset, capacity = self._state.offset, self.storage.capacity
        if is_single(index):
            return ring.physical_slot(index, offset, capacity)
        if type(index) is not np.ndarray and self.storage.reads_on_host:
            index = self.backend.to_numpy(index)  # the storage gathers on the host: map the slots there
        return ring.physical_slots(index, offset, capacity)

    # ------------------------------------------------------------------ reads
    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        with self._state.locked():
            data = self.storage._get(self._physical(index))
            if self._follows is not None:
                self._check_not_overtaken(index)
            return data, None

    def _get_flattened(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Array, Metadata]:
        with self._state.locked():
            data = self.storage._get_flattened(self._physical(index))
            if self._follows is not None:
                self._check_not_overtaken(index)
            return data, None

    def _check_not_overtaken(self, index: NormalizedIndex) -> None:
        """After a reader's read: raise when the writer dropped any row read (see ``_live``)."""
        follows, front = self._follows, self._state.front
        if follows is None:
            return
        start = follows.start
        if start > front:  # rows left the writer's committed range since the snapshot: which ones?
            lowest = index if is_single(index) else int(np.min(self.backend.to_numpy(index)))
            if front + lowest < start:
                raise RowsOverwrittenError(
                    f"{self._cache_path}: logical row {lowest} of this reader's snapshot (row {front + lowest} "
                    f"of the ring) was dropped by the writer, whose oldest committed row is now {start}; "
                    "refresh() and read again"
                )

    # ------------------------------------------------------------------ readers beside a writer
    def refresh(self) -> int:
        """Take the writer's newest commit as this reader's snapshot; returns the new length.

        A buffer opened read-only from a directory reads the rows committed when it was opened
        (or last refreshed): ``len()`` and indices refer to that snapshot, so a sampler's draws
        stay valid. A writer (or a buffer in memory) always sees its own rows: a no-op there.
        """
        storage, directory = self.storage, self._cache_path
        if directory is None or storage.is_mutable or not storage.is_persistent or self._commit_hook is not None:
            return len(self)
        metadata = _require_metadata(directory)
        self._reopen_front(directory)  # read after the metadata: settles it (see ``_live``)
        follows = self._follows
        committed = _ring_state(metadata, storage.capacity, directory)
        count, offset, start = settle(*committed, None if follows is None else follows.start, storage.capacity)
        self._follow(count, offset, start)
        return count

    def _catch_up(self, published: int | None = None) -> bool:
        """Drop from a reader's snapshot the rows the writer dropped since (no file read).

        The rows left, ``[front, end)`` of the snapshot, are still committed and intact. Returns
        False when none are left (then only :meth:`refresh` finds rows). ``published``: the
        front's start as an owner loaded it once for all its parts (default: load it now).
        """
        follows, state = self._follows, self._state
        if follows is None:
            return False
        if published is None:
            published = follows.start
        front = state.front
        count, offset, start = settle(state.count, state.offset, front, published, self.storage.capacity)
        if start == front:
            return True
        if count == 0:
            return False
        self._follow(count, offset, start)
        return True

    def _follow(self, count: int, offset: int, start: int) -> None:
        """Move a reader's snapshot to a committed ``(count, offset, start)``."""
        storage = self.storage
        if storage.capacity is None and len(storage) < count:
            storage._resize(count)  # the writer grew the files before committing these rows
        with self._state.locked():
            self._state.publish(count, offset)
            self._state.advance_front(start - self._state.front)

    def _reopen_front(self, directory: Path) -> None:
        previous, self._follows = self._follows, CommitFront.for_reader(directory)
        if previous is not None:
            previous.close()

    def _public_read(
        self, idx: Any, read: Callable[[NormalizedIndex, bool], tuple[Any, Metadata]], with_metadata: bool
    ) -> tuple[Any, Metadata]:
        """A public read; a reader beside a writer retries one the writer overtook (:func:`read_refreshing`)."""
        if self._follows is None:
            return read(self._index(idx), with_metadata)
        return read_refreshing(self, idx, read, with_metadata)

    def _read_key(self, key: Sequence[str | int], in_metadata: bool, index: NormalizedIndex) -> Any | None:
        if in_metadata or not self.storage.supports_columns:
            return None
        keys = tuple(str(k) for k in ([key] if isinstance(key, (str, int)) else key))
        column = self._columns.get(keys)
        if column is None:
            column = self._columns[keys] = self.storage.get_column(list(keys))
        with self._state.locked():
            data = column._get(self._physical(index))
            if self._follows is not None:
                self._check_not_overtaken(index)
            return data

    # ------------------------------------------------------------------ writes
    def _set(self, index: NormalizedIndex, value: Any) -> None:
        with self._state.locked():
            self.storage._set(self._physical(index), value)

    def _set_flattened(self, index: NormalizedIndex, value: Array) -> None:
        with self._state.locked():
            self.storage._set_flattened(self._physical(index), value)

    def _extend(self, value: Any) -> None:
        self._write(
            value, batch_size_data(value) or 0, self.storage._set, lambda part: get_at(self._batched_space, value, part)
        )

    def _extend_flattened(self, value: Array) -> None:
        self._write(value, int(value.shape[0]), self.storage._set_flattened, lambda part: value[part])

    def append(self, value: Any) -> None:
        """Append one step; a value that exactly matches the space takes a compiled path (DESIGN §6, W1)."""
        storage = self.storage
        extract = exact_leaves(self.single_space, storage.writes_host_leaves)
        leaves = extract(value) if extract is not None else None
        if leaves is None:
            super().append(value)  # validates, explains what is wrong, then calls _append
            return
        self._check_writable("append")
        if self.check_bounds:
            check_leaf_bounds(self.single_space, leaves)
        self._append_row(storage.set_leaves, leaves)

    def extend(self, value: Any) -> None:
        """Append a batch; one that exactly matches the space takes a compiled path (DESIGN §6, W1b)."""
        storage = self.storage
        extract = exact_batch_leaves(self.single_space, storage.writes_host_leaves)
        found = extract(value) if extract is not None else None
        if found is None:
            super().extend(value)  # validates, explains what is wrong, then calls _extend
            return
        self._check_writable("extend")
        n, leaves = found
        if self.check_bounds:
            check_leaf_bounds(self.single_space, leaves)
        if n:
            self._write(leaves, n, storage.set_leaves, lambda part: tuple(leaf[part] for leaf in leaves))

    def _append(self, value: Any) -> None:
        """One step: one storage write at one slot, no batch-of-one concatenation."""
        self._append_row(self.storage._set, value)

    def _append_row(self, write: Callable[[int, Any], None], row: Any) -> None:
        state = self._state
        if state.shared:
            with state.lock:
                self._append_row_locked(write, row)
        else:  # the GIL orders writes: no lock (a ``with`` costs a tenth of an append)
            self._append_row_locked(write, row)

    def _append_row_locked(self, write: Callable[[int, Any], None], row: Any) -> None:
        state, storage = self._state, self.storage
        count, capacity = state.count, storage.capacity
        slot, kept_count, kept_offset, new_count, new_offset = ring.plan_append(count, state.offset, capacity)
        if kept_count < count:  # a full ring: its oldest row leaves before its slot changes
            state.advance_front(count - kept_count)
            self._before_write(kept_count, kept_offset, ((slot, slot + 1),))
        if capacity is None:
            storage.extend_length(1)
        write(slot, row)
        state.publish(new_count, new_offset)

    def _write(self, value: Any, n: int, write: Any, part: Any) -> None:
        with self._state.locked():
            capacity = self.storage.capacity
            plan = ring.plan_write(self._state.count, self._state.offset, n, capacity)
            self._state.advance_front(self._state.count - plan.kept_count)
            self._before_write(plan.kept_count, plan.kept_offset, plan.segments)
            if capacity is None:
                self.storage.extend_length(n)
            for segment in plan.segments:
                whole = segment.source_start == 0 and segment.source_stop == n
                write(
                    slice(segment.start, segment.stop),
                    value if whole else part(slice(segment.source_start, segment.source_stop)),
                )
            self._state.publish(plan.count, plan.offset)

    def _before_write(self, kept_count: int, kept_offset: int, slots: Sequence[tuple[int, ...]]) -> None:
        """Drop overwritten rows from the published (and, if needed, the committed) state first.

        ``slots``: the physical ``[start, stop)`` ranges about to be written (the first two items
        of each tuple: ring segments fit as they are). Processes sharing the ring state read under
        its lock, so they never see this intermediate state; only one process needs it published
        (its lock-free ``len()`` would otherwise see the count shrink for the length of a write).
        """
        if not self._state.shared:
            self._state.publish(kept_count, kept_offset)
        capacity = self.storage.capacity
        if self._cache_path is None or capacity is None or not self.storage.is_persistent:
            return  # nothing on disk changes in place (memory, snapshots, growth past the end)
        committed_count, committed_offset = self._committed
        needed = 0
        for start, stop, *_ in slots:
            needed = max(needed, ring.committed_rows_to_drop(start, stop, committed_count, committed_offset, capacity))
        if not needed:
            return
        # Reserve ahead: also drop the next few rows, so a full ring commits once per that many appends.
        dropped = min(committed_count, needed + min(capacity // COMMIT_RESERVE_FRACTION, COMMIT_RESERVE_LIMIT))
        kept = committed_count - dropped
        self._commit(kept, (committed_offset + dropped) % capacity if kept else 0, self._committed_start + dropped)

    def _remove(self, index: NormalizedIndex) -> None:
        raise UnsupportedOperationError("ReplayBuffer does not support remove_at; use clear() or a new buffer")

    def clear(self) -> None:
        """Forget every row (decision 8: count and offset reset; old bytes become unreachable)."""
        self._check_writable("clear")
        with self._state.locked():
            self._state.advance_front(self._state.count)  # every row leaves: readers see them dropped
            self._state.publish(0, 0)
            if self._cache_path is not None:
                self._commit(0, 0, self._state.front)
            self.storage.clear()

    # ------------------------------------------------------------------ columns
    def get_column(self, nested_keys: Sequence[str | int]) -> BatchBase:
        """A live view of one field; uses the storage's column access when it has one."""
        if self.storage.supports_columns:
            column = self.storage.get_column([str(k) for k in nested_keys])
            view = ReplayBuffer(column, f"{self._storage_path_relative}_column", 0, 0)
            view._is_view = True  # read-only: rows grow and change through this buffer
            view._state = self._state  # shares count and offset: follows later writes
            view._follows = self._follows  # a reader's column reads are checked alike
            return view
        return super().get_column(nested_keys)

    # ------------------------------------------------------------------ persistence
    def _metadata(self, count: int, offset: int, start: int) -> dict[str, Any]:
        return {
            "type": BUFFER_TYPE,
            "count": count,
            "offset": offset,
            "start": start,
            "capacity": self.storage.capacity,
            "storage": {"name": self.storage.registered_name, "path": self._storage_path_relative},
            "single_instance_space": space_to_json(self.single_space),
            "check_bounds": self.check_bounds,
            "extra": self.extra_metadata,
        }

    def _commit(self, count: int, offset: int, start: int) -> None:
        """Record ``(count, offset)`` as the committed state (an owner may take over the writing).

        ``start``: the absolute number of the committed row 0. Readers of another process learn it
        from the commit front before any dropped slot changes (see ``_live``).
        """
        if self._cache_path is None:
            return
        if self._commit_hook is not None:
            self._commit_hook(count, offset, start)
        else:
            write_metadata(self._cache_path, self._metadata(count, offset, start))
            if self._live is not None:
                self._live.publish(start)  # after the commit, before any dropped slot changes (see ``_live``)
        self._committed = (count, offset)
        self._committed_start = start
        self._drop_stale_snapshot()

    def _drop_stale_snapshot(self) -> None:
        """After a commit: the previous snapshot of a memory-backed buffer is no longer referenced."""
        if self._stale_snapshot is not None and self._cache_path is not None:
            shutil.rmtree(self._cache_path / self._stale_snapshot, ignore_errors=True)
            self._stale_snapshot = None

    def flush(self) -> None:
        """Commit every row written so far (persistent buffers; a no-op in memory)."""
        if self._cache_path is None or not self.is_mutable:
            return
        with self._state.locked():
            self._flush_storage()
            self._commit(self._state.count, self._state.offset, self._state.front)

    def _flush_storage(self) -> None:
        """Make the rows durable: in place for persistent storages, as a fresh snapshot otherwise.

        A snapshot goes to the directory the last commit does not use (``storage`` and
        ``storage.1`` alternate); the commit that follows switches ``metadata.json`` to it, so a
        crash at any point leaves the previous commit and its snapshot intact.
        """
        if self._cache_path is None:
            return
        count = self._state.count
        if self.storage.is_growable and len(self.storage) != count:
            self.storage._resize(count)  # another process may have grown it: the shared count is the truth
        if self.storage.is_persistent:
            self.storage.flush()
            return
        previous = self._storage_path_relative
        base = previous.removesuffix(SNAPSHOT_SUFFIX)
        target = base if previous.endswith(SNAPSHOT_SUFFIX) else base + SNAPSHOT_SUFFIX
        _remove_leftover(self._cache_path / target)  # of an interrupted flush (or planted: never followed)
        self.storage.dumps(self._cache_path / target)
        self._storage_path_relative = target
        self._stale_snapshot = previous

    def dumps(self, path: PathLike) -> None:
        """Persist metadata and storage to ``path``; to its own ``cache_path`` this is :meth:`flush`."""
        target = Path(path)
        with self._state.locked():
            if self._cache_path is not None and target.resolve() == self._cache_path.resolve():
                self.flush()
                return
            target.mkdir(parents=True, exist_ok=True)
            self.storage.dumps(target / self._storage_path_relative)
            write_metadata(target, self._metadata(self._state.count, self._state.offset, self._state.front))

    @staticmethod
    @removes_on_failure
    def create(
        storage_cls: type[SpaceStorage] | None,
        single_instance_space: Space,
        *args: Any,
        cache_path: PathLike | None = None,
        capacity: int | None = None,
        multiprocessing: bool = False,
        **kwargs: Any,
    ) -> ReplayBuffer:
        """Create a buffer and its storage.

        Args:
            storage_cls: the storage class; None picks ``MemmapStorage`` with a ``cache_path``
                and ``MemoryStorage`` without one.
            single_instance_space: the space of one row.
            *args: forwarded to ``storage_cls.create``.
            cache_path: directory of a persistent buffer (created; must be new or empty).
            capacity: ring capacity, or None for a growable buffer.
            multiprocessing: share the ring state with other processes.
            **kwargs: forwarded to ``storage_cls.create``.

        Raises:
            FileExistsError: ``cache_path`` holds a buffer or anything else (nothing is touched).
            ValueError: ``capacity`` is not a positive int or None (checked before the disk is).

        A failed call removes what it created (see :mod:`unibatch.storages._directories`).
        """
        capacity = parse_capacity(capacity)
        if storage_cls is None:
            storage_cls = storage_class("memmap" if cache_path is not None else "memory")
        relative = "storage" + (storage_cls.single_file_ext or "")
        storage_path = None
        if cache_path is not None:
            directory = Path(cache_path)
            if (directory / "metadata.json").exists():
                raise FileExistsError(f"{directory} already holds a buffer; use ReplayBuffer.load_from")
            new_directory(directory)
            storage_path = directory / relative
        storage = storage_cls.create(
            single_instance_space,
            *args,
            capacity=capacity,
            cache_path=storage_path,
            multiprocessing=multiprocessing,
            **kwargs,
        )
        buffer = ReplayBuffer(storage, relative, 0, 0, cache_path, multiprocessing)
        buffer._flush_storage()
        buffer._start_publishing()
        buffer._commit(0, 0, 0)
        return buffer

    @staticmethod
    def load_from(
        path: PathLike,
        *,
        backend: ComputeBackend,
        device: Device | None = None,
        read_only: bool = True,
        multiprocessing: bool = False,
        single_instance_space: Space | None = None,
        **storage_kwargs: Any,
    ) -> ReplayBuffer:
        """Open a buffer written by :meth:`dumps`/:meth:`flush` (one metadata read).

        Args:
            path: the buffer directory.
            backend: backend of the values read.
            device: device of the values read.
            read_only: open without write access (the default, as in the reference).
            multiprocessing: share the ring state with other processes.
            single_instance_space: reuse this space object (must equal the stored one).
            **storage_kwargs: forwarded to the storage's ``load_from``.
        """
        with persisted_state_of(path):
            return ReplayBuffer._open(
                path, backend, device, read_only, multiprocessing, single_instance_space, storage_kwargs
            )

    @staticmethod
    def _open(
        path: PathLike,
        backend: ComputeBackend,
        device: Device | None,
        read_only: bool,
        multiprocessing: bool,
        single_instance_space: Space | None,
        storage_kwargs: dict[str, Any],
        state: tuple[int, int, int] | None = None,
        storage_path: str | None = None,
        published: int | None = None,
    ) -> ReplayBuffer:
        """:meth:`load_from`, optionally with the committed state and storage path kept by an owner.

        ``state``: ``(count, offset, start)`` as the owner committed it; ``published``: the start on
        the owner's commit front, read after its metadata (the state is settled with it, see ``_live``).
        """
        metadata = _require_metadata(path)
        space = json_to_space(metadata["single_instance_space"], backend, device)
        if single_instance_space is not None:
            if single_instance_space != space:
                raise SpaceMismatchError(f"{path} stores {space!r}, not the given {single_instance_space!r}")
            space = single_instance_space
        storage_info = dict(metadata["storage"])
        if storage_path is not None:
            storage_info["path"] = storage_path
        cls = storage_class(storage_info["name"])
        storage = cls.load_from(
            resolve_inside(path, storage_info["path"], source=Path(path) / METADATA_FILE),
            space,
            capacity=parse_persisted_capacity(metadata["capacity"], Path(path) / METADATA_FILE),
            read_only=read_only,
            multiprocessing=multiprocessing,
            **storage_kwargs,
        )
        follows, overtaken = None, False
        try:
            if state is None:
                count, offset, start = _ring_state(metadata, storage.capacity, path)
                committed = count
                if storage.is_persistent:  # the commit is the metadata's rows that the front has not passed
                    if storage.is_mutable:
                        published = published_start(path, start, count)
                    else:
                        follows = CommitFront.for_reader(path)
                        published = None if follows is None else follows.start
                    count, offset, start = settle(count, offset, start, published, storage.capacity)
                    overtaken = count == 0 < committed
            else:
                count, offset = parse_ring_state(state[0], state[1], storage.capacity, Path(path) / METADATA_FILE)
                count, offset, start = settle(count, offset, state[2], published, storage.capacity)
            if storage.capacity is None and len(storage) < count:
                raise CorruptDataError(
                    f"{Path(path) / METADATA_FILE} counts {count} rows, but its storage holds only {len(storage)}"
                )
        except BaseException:
            storage.close()
            if follows is not None:
                follows.close()
            raise
        if storage.capacity is None and len(storage) != count and storage.is_mutable:
            storage._resize(count)  # rows past the committed count were never committed
        buffer = ReplayBuffer(storage, storage_info["path"], count, offset, path, multiprocessing)
        buffer.extra_metadata = dict(metadata.get("extra") or {})
        buffer.check_bounds = metadata.get("check_bounds") is True
        buffer._state.advance_front(start)
        buffer._committed_start = start
        if state is None and storage.is_persistent:  # an owner (trajectory) publishes and follows for its parts
            if storage.is_mutable:
                buffer._start_publishing()  # publishes the settled start again
            else:
                buffer._follows = follows
                if overtaken:  # the writer passed the whole commit while this reader opened: take the newest
                    refresh_or_close(buffer)
        return buffer

    def _start_publishing(self) -> None:
        """A persistent writer: map (or create) the commit front and publish the committed start."""
        if self._cache_path is not None and self.storage.is_persistent and self._commit_hook is None:
            self._live = CommitFront.for_writer(self._cache_path, self._committed_start)

    @staticmethod
    def is_loadable_from(path: PathLike) -> bool:
        return read_metadata(path, BUFFER_TYPE) is not None

    @staticmethod
    def get_length_from_path(path: PathLike) -> int | None:
        """The rows a :meth:`load_from` of ``path`` would hold now (the commit settled with its front)."""
        metadata = read_metadata(path, BUFFER_TYPE)
        if metadata is None:
            return None
        capacity = parse_persisted_capacity(metadata["capacity"], Path(path) / METADATA_FILE)
        count, offset, start = _ring_state(metadata, capacity, path)
        front = CommitFront.for_reader(path)  # read after the metadata, as a reader's load does
        if front is None:
            return count
        try:
            return settle(count, offset, start, front.start, capacity)[0]
        finally:
            front.close()

    @staticmethod
    def get_capacity_from_path(path: PathLike) -> int | None:
        metadata = read_metadata(path, BUFFER_TYPE)
        return None if metadata is None or metadata["capacity"] is None else int(metadata["capacity"])

    @staticmethod
    def get_space_from_path(path: PathLike, *, backend: ComputeBackend, device: Device | None = None) -> Space | None:
        metadata = read_metadata(path, BUFFER_TYPE)
        return None if metadata is None else json_to_space(metadata["single_instance_space"], backend, device)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the storage (idempotent). Does not commit: call :meth:`flush` first to keep rows."""
        if not self._closed:
            self._closed = True
            for front in (self._live, self._follows):
                if front is not None:
                    front.close()
            self._live = self._follows = None
            self.storage.close()

    def __repr__(self) -> str:
        return f"ReplayBuffer(count={self.count}, capacity={self.capacity}, storage={type(self.storage).__name__})"


def _remove_leftover(path: Path) -> None:
    """Delete ``path`` before a snapshot is written there; a symlink is removed, not followed."""
    if path.is_symlink():
        path.unlink()
    shutil.rmtree(path, ignore_errors=True)


def read_refreshing(buffer: Any, idx: Any, read: Callable[[NormalizedIndex, bool], Any], with_metadata: bool) -> Any:
    """A reader's public read: when the writer overtook the rows, catch up and resolve ``idx`` again.

    ``buffer`` has ``_catch_up()`` (drop the rows the writer dropped from the snapshot) and
    ``refresh()`` (take the newest commit, when nothing of the snapshot is left); ``read`` is one of
    its primitives. Bounded by :data:`READ_ATTEMPTS`; an index that no longer fits the smaller
    snapshot raises ``IndexOutOfRangeError`` (resolve "the newest row" as ``-1``, not ``len() - 1``).
    """
    attempt = 1
    while True:
        try:
            return read(buffer._index(idx), with_metadata)
        except RowsOverwrittenError as error:
            if attempt >= READ_ATTEMPTS:
                raise RowsOverwrittenError(f"the writer overtook this read {attempt} times: {error}") from error
        attempt += 1
        if not buffer._catch_up():
            buffer.refresh()


def refresh_or_close(buffer: Any) -> None:
    """``buffer.refresh()`` for an opener; a buffer that cannot take the newest commit is closed."""
    try:
        buffer.refresh()
    except BaseException:
        buffer.close()
        raise


def _ring_state(metadata: dict[str, Any], capacity: int | None, directory: PathLike) -> tuple[int, int, int]:
    """``(count, offset, start)`` of a buffer's metadata, checked (``start`` is 0 in buffers written before it)."""
    where = Path(directory) / METADATA_FILE
    count, offset = parse_ring_state(metadata.get("count"), metadata.get("offset"), capacity, where)
    return count, offset, parse_start(metadata.get("start", 0), where)


def _require_metadata(path: PathLike) -> dict[str, Any]:
    metadata = read_metadata(path)
    if metadata is None:
        raise FileNotFoundError(f"{path} holds no buffer (metadata.json is missing)")
    if metadata.get("type") != BUFFER_TYPE:
        raise SpaceMismatchError(f"{path} holds a {metadata.get('type')!r}, not a {BUFFER_TYPE}")
    return require_fields(metadata, Path(path) / METADATA_FILE, REQUIRED_FIELDS)
