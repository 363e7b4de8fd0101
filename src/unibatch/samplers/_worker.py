"""The worker process of ``MultiprocessingSampler``: read batches, write them into shared slots."""

from __future__ import annotations

import queue
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from unibatch.samplers._indices import uniform_indices
from unibatch.samplers._shared_slots import SlotFiles, SlotLayout, host_leaves

STOP = None


@dataclass(frozen=True)
class Task:
    """One batch to produce: its request number, what to read and where to put it."""

    task_id: int
    flat: bool
    with_metadata: bool
    indices: np.ndarray | None  # epoch batches carry their indices; samples derive them from the stream
    stream_seed: int  # the seed of this sample request (unused for epoch batches)
    slots: SlotFiles
    slot: int
    layout: SlotLayout


def request_seed(seed: int, request: int) -> int:
    """The seed of one request: the same for a given (seed, request), whoever computes it."""
    return int(np.random.SeedSequence([seed, request]).generate_state(1, dtype=np.uint32)[0])


def produce(sampler: Any, task: Task) -> tuple[Any, Any]:
    """The result tree ``(data, metadata)`` of a task, read through the sampler's source."""
    data_source = sampler.data
    backend = data_source.backend
    if task.indices is None:
        rng = backend.random_number_generator(task.stream_seed, device=data_source.device)
        _, index = uniform_indices(backend, rng, len(data_source), sampler.batch_size, data_source.device)
    else:
        index = backend.asarray(task.indices, dtype=backend.default_index_dtype, device=data_source.device)
    read = data_source._get_flattened if task.flat else data_source._get
    return read(index, task.with_metadata)


def run_worker(sampler: Any, tasks: Any, results: Any, doze_time: float) -> None:
    """Serve tasks until the stop sentinel; every outcome (result or error) goes to ``results``."""
    mapped: dict[Any, SlotFiles] = {}  # the slot files of each kind of result, mapped once
    while True:
        try:
            task = tasks.get(timeout=max(doze_time, 0.001))
        except queue.Empty:
            continue
        if task is STOP:
            break
        try:
            slots = mapped.setdefault(task.slots.directory, task.slots)
            leaves, spec = host_leaves(produce(sampler, task))
            described = slots.write(task.slot, task.layout, leaves)
            results.put((task.task_id, None, (spec, described)))
        except BaseException as error:  # noqa: BLE001 - every failure is reported to the parent
            results.put((task.task_id, _describe_error(error), None))
    for slots in mapped.values():
        slots.close()


def _describe_error(error: BaseException) -> tuple[Any, str]:
    """The exception (when it pickles) and its formatted traceback."""
    import pickle

    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        pickle.dumps(error)
        return error, text
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(error).__name__}: {error}"), text
