"""W1: append one step; W1b: extend chunks of 1000 — against ``dst[i] = row`` / ``dst[lo:hi] = src``."""

from __future__ import annotations

import numpy as np
from benchmarks._harness import Result, compare
from benchmarks.workloads.data import row_bytes, transitions

from unibatch import ReplayBuffer
from unibatch.backends.transfer import convert_tree
from unibatch.spaces import get_at

CHUNK = 1000


def run_append(buffer: ReplayBuffer, image: bool, storage: str, backend: str, calls: int) -> Result:
    capacity = buffer.capacity or 1
    steps = convert_tree(transitions(0, 64, image, np.random.default_rng(0)), buffer.backend)
    rows = [get_at(buffer._batched_space, steps, i) for i in range(64)]
    floor_rows = np.ones((capacity, row_bytes(image)), np.uint8)
    source = np.ones(row_bytes(image), np.uint8)
    state = {"i": 0, "floor": 0}

    def floor() -> None:
        floor_rows[state["floor"] % capacity] = source
        state["floor"] += 1

    def workload() -> None:
        buffer.append(rows[state["i"] % 64])
        state["i"] += 1

    return compare("W1", "image" if image else "small", storage, backend, workload, floor, calls)


def run_extend(buffer: ReplayBuffer, image: bool, storage: str, backend: str, calls: int) -> Result:
    capacity = buffer.capacity or CHUNK
    chunk = convert_tree(transitions(0, CHUNK, image, np.random.default_rng(0)), buffer.backend)
    floor_rows = np.ones((capacity, row_bytes(image)), np.uint8)
    source = np.ones((CHUNK, row_bytes(image)), np.uint8)
    state = {"floor": 0}

    def floor() -> None:
        start = state["floor"] % (capacity - CHUNK + 1)
        floor_rows[start : start + CHUNK] = source
        state["floor"] += CHUNK

    def workload() -> None:
        buffer.extend(chunk)

    return compare("W1b", "image" if image else "small", storage, backend, workload, floor, calls)
