"""The worker process of ``MultiprocessingSampler``: read batches, write them into shared slots.

Tasks and results travel through two :class:`Channel` pipes (pickled in the sending thread, no
feeder thread): a task names a slot directory, a slot and the request; a result carries the tree
structure and leaf descriptions (the arrays are in the slot), or the worker's exception.
"""

from __future__ import annotations

import pickle
import shutil
import traceback
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np

from unibatch.samplers._indices import uniform_indices
from unibatch.samplers._shared_slots import SlotFiles, host_leaves
from unibatch.storages._outputs import arena_context

STOP = None


@dataclass(frozen=True)
class Task:
    """One batch to produce: its request number, what to read and which slot to write."""

    task_id: int
    directory: str  # the slot files of this kind of result
    slot: int
    flat: bool
    with_metadata: bool
    stream_seed: int  # the seed of a sample request (unused for epoch batches)
    n_indices: int  # an epoch batch: this many indices wait in the slot; -1: a sample request


class Channel:
    """A one-way pipe between processes carrying whole pickled messages.

    Several processes may write (or read) it: each message is sent (or received) under a lock,
    after pickling outside of it, like ``multiprocessing.SimpleQueue``; the reading end is public
    so that the parent can wait on it together with the workers' sentinels.
    """

    def __init__(self, ctx: Any) -> None:
        self.reader, self.writer = ctx.Pipe(duplex=False)
        self.read_lock, self.write_lock = ctx.Lock(), ctx.Lock()

    def put(self, message: Any) -> None:
        data = ForkingPickler.dumps(message)
        with self.write_lock:
            self.writer.send_bytes(data)

    def get(self) -> Any:
        with self.read_lock:
            data = self.reader.recv_bytes()
        return ForkingPickler.loads(data)

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


def request_seed(seed: int, request: int) -> int:
    """The seed of one request: the same for a given (seed, request), whoever computes it."""
    return int(np.random.SeedSequence([seed, request]).generate_state(1, dtype=np.uint32)[0])


def produce(sampler: Any, flat: bool, with_metadata: bool, stream_seed: int, indices: np.ndarray | None) -> Any:
    """The result tree ``(data, metadata)`` of a request, read through the sampler's source.

    The sampler's output arena (``reuse_outputs``) is used as the sampler itself would use it.
    """
    data_source = sampler.data
    backend = data_source.backend
    if indices is None:
        rng = backend.random_number_generator(stream_seed, device=data_source.device)
        _, index = uniform_indices(backend, rng, len(data_source), sampler.batch_size, data_source.device)
    else:
        index = backend.asarray(indices, dtype=backend.default_index_dtype, device=data_source.device)
    read = data_source._get_flattened if flat else data_source._get
    with arena_context(sampler.output_arena):
        return read(index, with_metadata)


def run_worker(sampler: Any, tasks: Channel, results: Channel) -> None:
    """Serve tasks until the stop sentinel; every outcome (result or error) goes to ``results``.

    The worker closes its copies of the ends it does not use, so that when the parent dies the
    task pipe reaches end-of-file (and the result pipe breaks): the worker then exits too, and
    removes the slot files it knows, which the parent can no longer remove.
    """
    tasks.writer.close()
    results.reader.close()
    mapped: dict[str, SlotFiles] = {}  # the slot files of each kind of result, opened once
    try:
        _serve(sampler, tasks, results, mapped)
    except (EOFError, BrokenPipeError):  # the parent is gone
        for slots in mapped.values():
            shutil.rmtree(slots.directory, ignore_errors=True)
    finally:
        for slots in mapped.values():
            slots.close()


def _serve(sampler: Any, tasks: Channel, results: Channel, mapped: dict[str, SlotFiles]) -> None:
    while True:
        task = tasks.get()
        if task is STOP:
            return
        outcome: tuple[int, Any, Any]
        try:
            slots = mapped.get(task.directory)
            if slots is None:
                slots = mapped[task.directory] = SlotFiles.open(task.directory)
            indices = None if task.n_indices < 0 else slots.read_indices(task.slot, task.n_indices)
            leaves, spec = host_leaves(produce(sampler, task.flat, task.with_metadata, task.stream_seed, indices))
            outcome = (task.task_id, None, (spec, slots.write(task.slot, leaves)))
        except BaseException as error:  # noqa: BLE001 - every failure is reported to the parent
            outcome = (task.task_id, _describe_error(error), None)
        try:
            results.put(outcome)
        except (pickle.PicklingError, TypeError, AttributeError) as error:  # a leaf that does not pickle
            results.put((task.task_id, _describe_error(error), None))


def _describe_error(error: BaseException) -> tuple[Any, str]:
    """The exception (when it pickles) and its formatted traceback."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        pickle.dumps(error)
        return error, text
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(error).__name__}: {error}"), text
