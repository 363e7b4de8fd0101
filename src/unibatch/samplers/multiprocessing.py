"""``MultiprocessingSampler``: another sampler's batches, produced ahead by worker processes.

Workers write batches into preallocated shared-memory slots and send back only slot numbers and
tree structure. The random stream is derived per request from ``(seed, request number)``, and
results are returned in request order, so a seed gives the same batches and epochs for any
number of workers. A worker's exception is re-raised in the parent with the worker traceback
attached; a worker that dies makes the parent raise :class:`WorkerError` instead of waiting.

A returned batch lives in shared memory (zero-copy for NumPy and PyTorch) and owns it: its slot
is reused only once every array and tensor viewing it has been garbage collected, so batches
kept in a list or a queue never change. With ``reuse_outputs=N`` (opt-in, as on
``StepSampler``) a batch stays valid until N further batches of the same kind have been
returned, and its slot is reused then, whoever still holds it. Slots are handed out from a free
list (more are made when every slot is in use), and an abandoned request's slot comes back once
its result has arrived.

Every worker has its own task pipe and its own result pipe, and the parent keeps only its own
ends of them: a worker that dies, even in the middle of a message, closes the last write end of
its result pipe (the parent reads end-of-file) and the last read end of its task pipe (sending
to it fails), so the parent raises instead of waiting. The parent sleeps in one
``multiprocessing.connection.wait`` on the result pipes and the workers' sentinels (no polling),
sends each small fixed-size task to the worker with the fewest unread results, without a feeder
thread, and keeps at most ``MAX_UNRECEIVED`` tasks whose results it has not read, so a task pipe
never fills and sending never blocks. Workers exit by themselves when the parent dies (their
task pipe reaches end-of-file), and read through the inner sampler's output arena when it has
one (``reuse_outputs``), as the sampler itself would.

``close()`` is explicit; a sampler still open when the interpreter exits is closed then (a
``multiprocessing.util.Finalize`` that runs before multiprocessing joins its children), so
exiting never waits forever on workers that wait for tasks.
"""

from __future__ import annotations

import collections
import functools
import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import os
import sys
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

import numpy as np
import optree

from unibatch._typing import (
    BArrayType,
    BatchT,
    BDeviceType,
    BDtypeType,
    BRNGType,
    SamplerArrayType,
    SamplerBatchT,
    SamplerDeviceType,
    SamplerDtypeType,
    SamplerRNGType,
)
from unibatch.backends import convert_tree
from unibatch.batches._base import Metadata
from unibatch.batches._indexing import NormalizedIndex
from unibatch.errors import SpaceMismatchError, UnibatchError
from unibatch.samplers._indices import epoch_slices, uniform_indices
from unibatch.samplers._shared_slots import SlotFiles, host_leaves, layout_for
from unibatch.samplers._worker import Task, produce, receive, request_seed, run_worker, send, shut_down
from unibatch.samplers.base import BatchSampler

EPOCH_STREAM = 2**31
"""Epoch ``e`` draws its permutation from the request number ``EPOCH_STREAM + e``."""

MAX_UNRECEIVED = 64
"""Tasks sent whose results the parent has not read yet, at most (a task message is ~200 bytes)."""

EXIT_PRIORITY = 10
"""Open samplers are closed at exit before multiprocessing joins its children (priority >= 0)."""


class WorkerError(UnibatchError, RuntimeError):
    """A worker process died (the message names its exit code)."""


class MultiprocessingSampler(
    BatchSampler[
        SamplerBatchT,
        SamplerArrayType,
        SamplerDeviceType,
        SamplerDtypeType,
        SamplerRNGType,
        BatchT,
        BArrayType,
        BDeviceType,
        BDtypeType,
        BRNGType,
    ]
):
    """Run ``sampler``'s reads in ``n_workers`` processes with ``n_buffers`` batches in flight.

    Args:
        sampler: the sampler whose batches to produce (it is pickled to the workers; a
            memmap-backed buffer travels as its path, without copying the data).
        n_workers: worker processes.
        n_buffers: batches requested ahead of the consumer (prefetch depth).
        ctx: multiprocessing context (default: the platform's); ``"spawn"`` works too.
        doze_time: kept for compatibility with the reference signature; waiting processes
            block on their pipes (and the parent on the workers' sentinels) instead of polling.
        daemon: daemon flag of the workers (None: inherited).
        reuse_outputs: 0 (default): returned batches own their memory. ``N > 0``: a batch
            stays valid only until N further batches of its kind have been returned, then its
            shared memory is reused (no bookkeeping per batch, as ``StepSampler(reuse_outputs=N)``).
        timeout: seconds ``sample()`` (and every other read) waits while no worker sends a
            result, then raises :class:`WorkerError` naming the silent workers (index and pid):
            a stopped (SIGSTOP) or hung worker never blocks the parent forever. None waits forever.
    """

    is_mutable = False

    def __init__(
        self,
        sampler: BatchSampler,
        n_workers: int = 4,
        n_buffers: int = 8,
        ctx: BaseContext | None = None,
        doze_time: float = 0.005,
        daemon: bool | None = None,
        reuse_outputs: int = 0,
        *,
        timeout: float | None = 60.0,
    ) -> None:
        if n_workers <= 0 or n_buffers <= 0:
            raise SpaceMismatchError(f"n_workers and n_buffers must be positive, got {n_workers}, {n_buffers}")
        if reuse_outputs < 0:
            raise SpaceMismatchError(f"reuse_outputs must be non-negative, got {reuse_outputs}")
        self.reuse_outputs = int(reuse_outputs)
        super().__init__(sampler.single_space, sampler.single_metadata_space, sampler.batch_size)
        self.sampler = sampler
        self.mp_ctx: Any = ctx if ctx is not None else multiprocessing.get_context()
        self.n_workers, self.n_buffers = int(n_workers), int(n_buffers)
        self.doze_time, self.daemon = float(doze_time), daemon
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive seconds or None, got {timeout!r}")
        self.timeout = None if timeout is None else float(timeout)
        self.closed = False
        self.functions_to_close: list[Any] = []
        seed = sampler._seed
        self._stream_seed = int(seed) if seed is not None else int.from_bytes(os.urandom(4), "little")
        self._sample_number = 0
        self._epoch_number = 0
        self._task_id = 0
        self._workers: list[Any] = []
        self._task_writers: list[Connection] = []  # the parent's ends of the workers' pipes
        self._result_readers: list[Connection] = []
        self._unreceived: list[int] = []  # per worker: tasks sent whose results are not read yet
        self._last_worker = -1
        self._arrived: dict[int, Any] = {}
        self._abandoned: set[int] = set()
        self._kinds: dict[tuple[bool, bool], SlotFiles] = {}
        self._free_slots: dict[tuple[bool, bool], list[int]] = collections.defaultdict(list)
        self._held_slots: dict[tuple[bool, bool], collections.deque[int]] = collections.defaultdict(collections.deque)
        self._task_slots: dict[int, tuple[tuple[bool, bool], int]] = {}
        self._prefetched: dict[tuple[bool, bool], collections.deque[int]] = collections.defaultdict(collections.deque)
        self._finalizer = multiprocessing.util.Finalize(
            None,
            shut_down,
            args=(os.getpid(), self._workers, self._task_writers, self._result_readers, self._kinds),
            exitpriority=EXIT_PRIORITY,
        )

    # ------------------------------------------------------------------ delegation
    @property
    def backend(self) -> Any:
        return self.sampler.backend

    @property
    def device(self) -> Any:
        return self.sampler.device

    @property
    def data(self) -> Any:
        return self.sampler.data

    @data.setter
    def data(self, value: Any) -> None:
        if value is not None:
            raise AttributeError("MultiprocessingSampler reads the data of its sampler")

    @property
    def rng(self) -> Any:
        return self.sampler.rng

    @rng.setter
    def rng(self, value: Any) -> None:
        if value is not None:
            self.sampler.rng = value

    @property
    def data_rng(self) -> Any:
        return self.sampler.data_rng

    @data_rng.setter
    def data_rng(self, value: Any) -> None:
        if value is not None:
            self.sampler.data_rng = value

    @property
    def sampled_space(self) -> Any:
        return self.sampler.sampled_space

    @property
    def sampled_metadata_space(self) -> Any:
        return self.sampler.sampled_metadata_space

    def __len__(self) -> int:
        return len(self.sampler)

    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        return self.sampler._get(index, with_metadata)

    def manual_seed(self, seed: int) -> None:
        """Restart every stream from ``seed`` (prefetched batches are dropped)."""
        self._stream_seed, self._sample_number, self._epoch_number = int(seed), 0, 0
        self.sampler.manual_seed(seed)
        self._drop_prefetched()

    def sample_index(self) -> Any:
        """The indices the next ``sample()`` would use (computed in the parent)."""
        backend, data = self.data.backend, self.data
        rng = backend.random_number_generator(request_seed(self._stream_seed, self._sample_number), device=data.device)
        return uniform_indices(backend, rng, len(data), self.batch_size, data.device)[1]

    # ------------------------------------------------------------------ pool
    def _start(self) -> None:
        """Start the workers on first use (a start that fails closes the sampler)."""
        if self.closed:
            raise WorkerError("this MultiprocessingSampler is closed")
        if not self._workers:
            fork = self.mp_ctx.get_start_method() == "fork"
            try:
                for _ in range(self.n_workers):
                    self._start_worker(fork)
            except BaseException:
                self.close()
                raise

    def _start_worker(self, fork: bool) -> None:
        """One worker with its own pipes, of which the parent keeps only its ends."""
        task_reader, task_writer = self.mp_ctx.Pipe(duplex=False)
        result_reader, result_writer = self.mp_ctx.Pipe(duplex=False)
        self._task_writers.append(task_writer)
        self._result_readers.append(result_reader)
        inherited = [*self._task_writers, *self._result_readers] if fork else []  # a forked child has them
        worker = self.mp_ctx.Process(
            target=run_worker, args=(self.sampler, task_reader, result_writer, inherited), daemon=self.daemon
        )
        try:
            worker.start()
        finally:
            task_reader.close()  # the worker holds the last copies: its death is end-of-file
            result_writer.close()
        self._workers.append(worker)
        self._unreceived.append(0)

    def _kind(self, flat: bool, with_metadata: bool) -> SlotFiles:
        """Slots sized by one full batch of this kind read in the parent (once per kind)."""
        key = (flat, with_metadata)
        if key not in self._kinds:
            probe = produce(self.sampler, flat, with_metadata, 0, np.zeros(self.batch_size, np.int64))
            layout = layout_for(host_leaves(probe)[0], self.batch_size)
            self._kinds[key] = SlotFiles.create(2 * self.n_buffers, layout)
            self._free_slots[key] = list(range(2 * self.n_buffers - 1, -1, -1))
        return self._kinds[key]

    def _submit(self, flat: bool, with_metadata: bool, indices: np.ndarray | None) -> int:
        self._start()
        slots = self._kind(flat, with_metadata)
        while sum(self._unreceived) >= MAX_UNRECEIVED:
            self._receive()  # bounds the bytes waiting in the task pipes: the send below never blocks
        key = (flat, with_metadata)
        free = self._free_slots[key]
        slot = free.pop() if free else slots.add()
        stream_seed, n_indices = 0, -1
        if indices is None:
            stream_seed = request_seed(self._stream_seed, self._sample_number)
            self._sample_number += 1
        else:
            n_indices = slots.write_indices(slot, indices)
        task_id, self._task_id = self._task_id, self._task_id + 1
        self._task_slots[task_id] = (key, slot)
        task = Task(task_id, str(slots.directory), slot, flat, with_metadata, stream_seed, n_indices)
        number = self._next_worker()
        try:
            send(self._task_writers[number], task)
        except OSError as error:  # its task pipe has no reader left: the worker is gone
            raise self._worker_failed(number) from error
        self._unreceived[number] += 1
        return task_id

    def _next_worker(self) -> int:
        """The worker with the fewest unread results (ties: the next one after the last chosen)."""
        count = len(self._workers)
        order = [(self._last_worker + 1 + step) % count for step in range(count)]
        self._last_worker = min(order, key=self._unreceived.__getitem__)
        return self._last_worker

    def _receive(self) -> None:
        """Wait for the next results (a dead worker raises instead) and file them by task."""
        self._start()
        readers = self._result_readers
        ready = multiprocessing.connection.wait(
            [*readers, *(worker.sentinel for worker in self._workers)], timeout=self.timeout
        )
        if not ready:
            silent = [
                f"worker {number} (pid {self._workers[number].pid})"
                for number, waiting in enumerate(self._unreceived)
                if waiting
            ]
            raise WorkerError(
                f"{', '.join(silent) or 'no worker'} sent no result for {self.timeout} s "
                "(stopped or hung?); the sampler cannot continue"
            )
        received = False
        for number, reader in enumerate(readers):
            if reader in ready:  # a whole message, or end-of-file if the worker died
                try:
                    arrived, error, payload = receive(reader)
                except (EOFError, OSError) as failure:  # OSError: end-of-file in the middle of a message
                    raise self._worker_failed(number) from failure
                self._unreceived[number] -= 1
                self._file(arrived, error, payload)
                received = True
        if not received:
            self._check_workers(ready)

    def _file(self, task_id: int, error: Any, payload: Any) -> None:
        """Keep an arrived result for its request, or free its slot if the request was abandoned."""
        if task_id in self._abandoned:
            self._abandoned.discard(task_id)
            self._free_task_slot(task_id)  # nobody will read it
        else:
            self._arrived[task_id] = (error, payload)

    def _collect(self, task_id: int, flat: bool, with_metadata: bool) -> Any:
        """Wait for one task's result (never forever) and rebuild it from its slot."""
        while task_id not in self._arrived:
            self._receive()
        error, payload = self._arrived.pop(task_id)
        key, slot = self._task_slots.pop(task_id)
        if error is not None:
            self._free_slots[key].append(slot)
            exception, text = error
            if sys.version_info >= (3, 11):
                exception.add_note(f"raised in a MultiprocessingSampler worker:\n{text}")
            raise exception
        spec, described = payload
        leaves = self._read_slot(key, slot, described)
        if self.backend.simplified_name != "numpy":  # NumPy views need no conversion
            leaves = convert_tree(leaves, self.backend, self.device)
        return optree.tree_unflatten(spec, leaves)

    def _read_slot(self, key: tuple[bool, bool], slot: int, described: list[Any]) -> list[Any]:
        """Views into ``slot``: freed when collected (owned outputs) or after ``reuse_outputs`` calls."""
        free = self._free_slots[key]
        if not self.reuse_outputs:
            return self._kinds[key].read(slot, described, release=functools.partial(free.append, slot))
        held = self._held_slots[key]
        held.append(slot)
        while len(held) > self.reuse_outputs:  # out of the validity window: the slot may be reused
            free.append(held.popleft())
        return self._kinds[key].read(slot, described)

    def _check_workers(self, fired: list[Any]) -> None:
        """Raise :class:`WorkerError` for a worker that exited (its sentinel is in ``fired``)."""
        for number, worker in enumerate(self._workers):
            if worker.sentinel in fired or worker.exitcode is not None:
                raise self._worker_failed(number)

    def _worker_failed(self, number: int) -> WorkerError:
        """The error for worker ``number``, whose pipes say that it is gone."""
        worker = self._workers[number]
        worker.join(timeout=1)  # its pipes and sentinel close a moment before the exit code is known
        if worker.exitcode is None:
            return WorkerError(f"worker {number} closed its pipes; the sampler cannot continue")
        return WorkerError(f"worker {number} exited with code {worker.exitcode}; the sampler cannot continue")

    def _abandon(self, task_ids: Iterable[int]) -> None:
        """Give up requests: an arrived result's slot is free now, the others' once they arrive."""
        for task_id in task_ids:
            if task_id in self._arrived:  # it will not arrive again: free its slot here
                del self._arrived[task_id]
                self._free_task_slot(task_id)
            else:
                self._abandoned.add(task_id)

    def _free_task_slot(self, task_id: int) -> None:
        """Return the slot of a request whose result nobody will read to the free list."""
        key, slot = self._task_slots.pop(task_id)
        self._free_slots[key].append(slot)

    def _drop_prefetched(self) -> None:
        for pending in self._prefetched.values():
            self._abandon(pending)
            pending.clear()

    # ------------------------------------------------------------------ sampling
    def _next_sample(self, flat: bool, with_metadata: bool) -> Any:
        """The next batch of the ``sample*`` stream of this kind, keeping ``n_buffers`` in flight."""
        pending = self._prefetched[(flat, with_metadata)]
        while len(pending) < self.n_buffers:  # with 2 * n_buffers slots, a result outlives n_buffers calls
            pending.append(self._submit(flat, with_metadata, None))
        return self._collect(pending.popleft(), flat, with_metadata)

    def sample(self) -> Any:
        return self._next_sample(False, False)[0]

    def sample_with_metadata(self) -> tuple[Any, Metadata]:
        return self._next_sample(False, True)

    def sample_flat(self) -> Any:
        return self._next_sample(True, False)[0]

    def sample_flat_with_metadata(self) -> tuple[Any, Metadata]:
        return self._next_sample(True, True)

    # ------------------------------------------------------------------ epochs
    def _epoch_batches(self, flat: bool, with_metadata: bool) -> Iterator[Any]:
        """One permutation (derived from the seed and the epoch number), its batches in order."""
        length = len(self.data)
        rng = np.random.default_rng(request_seed(self._stream_seed, EPOCH_STREAM + self._epoch_number))
        self._epoch_number += 1
        permutation = rng.permutation(length)
        parts = collections.deque(epoch_slices(length, self.batch_size))
        in_flight: collections.deque[int] = collections.deque()
        try:
            while parts or in_flight:
                while parts and len(in_flight) < self.n_buffers:
                    in_flight.append(self._submit(flat, with_metadata, permutation[parts.popleft()]))
                data, metadata = self._collect(in_flight.popleft(), flat, with_metadata)
                yield (data, metadata) if with_metadata else data
        finally:
            self._abandon(in_flight)

    # ------------------------------------------------------------------ checkpoints and lifecycle
    def state_dict(self) -> dict[str, Any]:
        """The seed and how far the sample and epoch streams have gone."""
        consumed = self._sample_number - sum(len(p) for p in self._prefetched.values())
        return {"seed": self._stream_seed, "sample_number": consumed, "epoch_number": self._epoch_number}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._drop_prefetched()
        self._stream_seed = int(state["seed"])
        self._sample_number, self._epoch_number = int(state["sample_number"]), int(state["epoch_number"])

    def close(self) -> None:
        """Stop the workers (joined, then terminated if they hang) and free the slots; idempotent."""
        if self.closed:
            return
        self.closed = True
        self._finalizer()  # runs once (also at interpreter exit if close() is never called)
        for function in self.functions_to_close:
            function()
        self._workers = []
