"""The worker process of ``MultiprocessingSampler``: read batches, write them into shared slots.

Each worker has its own task pipe and its own result pipe, with one writing and one reading
process each (no locks, no feeder thread; messages are pickled in the sending thread). A task
names a slot directory, a slot and the request; a result carries the tree structure and leaf
descriptions (the arrays are in the slot), or the worker's exception. :func:`shut_down` stops
the workers from the parent.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
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


def send(connection: Connection, message: Any) -> None:
    """Pickle ``message`` (outside of any lock: each pipe has one writer) and send it whole."""
    connection.send_bytes(ForkingPickler.dumps(message))


def receive(connection: Connection) -> Any:
    """The next whole message (``EOFError``/``OSError`` when the writer is gone, even mid-message)."""
    return ForkingPickler.loads(connection.recv_bytes())


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


def run_worker(sampler: Any, tasks: Connection, results: Connection, inherited: list[Connection]) -> None:
    """Serve tasks until the stop sentinel; every outcome (result or error) goes to ``results``.

    ``inherited`` are the parent's ends of the pipes (its copies, inherited by a forked worker):
    closing them leaves the parent the only other holder of this worker's pipes, so that when the
    parent dies the task pipe reaches end-of-file (and the result pipe breaks). The worker then
    exits too, and removes the slot files it knows, which the parent can no longer remove.
    """
    for connection in inherited:
        connection.close()
    mapped: dict[str, SlotFiles] = {}  # the slot files of each kind of result, opened once
    try:
        _serve(sampler, tasks, results, mapped)
    except (EOFError, OSError):  # the parent is gone (a pipe reached end-of-file or broke)
        for slots in mapped.values():
            shutil.rmtree(slots.directory, ignore_errors=True)
    finally:
        for slots in mapped.values():
            slots.close()


def _serve(sampler: Any, tasks: Connection, results: Connection, mapped: dict[str, SlotFiles]) -> None:
    while True:
        task = receive(tasks)
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
            send(results, outcome)
        except (pickle.PicklingError, TypeError, AttributeError) as error:  # a leaf that does not pickle
            send(results, (task.task_id, _describe_error(error), None))


def shut_down(
    creator: int,
    workers: list[Any],
    task_writers: list[Connection],
    result_readers: list[Connection],
    slot_files: dict[Any, SlotFiles],
) -> None:
    """Stop the workers, close the parent's pipe ends and remove the slot files (in the parent).

    Takes the sampler's containers, not the sampler, so that the exit hook calling it keeps no
    sampler alive. A child forked by other means than multiprocessing inherits that hook: it does
    nothing there (``creator`` is the parent's pid), leaving the parent's workers alone.
    """
    if os.getpid() != creator:
        return
    for writer in task_writers:
        with contextlib.suppress(OSError):  # a worker that is gone has closed its task pipe
            send(writer, STOP)
    for reader in result_readers:
        reader.close()  # a worker still sending a result gets a broken pipe and exits
    for worker in workers:
        worker.join(timeout=2)
        if worker.is_alive():
            worker.terminate()
            worker.join(timeout=2)
    for writer in task_writers:
        writer.close()
    for slots in slot_files.values():
        slots.close()


def _describe_error(error: BaseException) -> tuple[Any, str]:
    """The exception (when it pickles) and its formatted traceback."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        pickle.dumps(error)
        return error, text
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(error).__name__}: {error}"), text
