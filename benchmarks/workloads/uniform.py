"""W2: ``StepSampler.sample()`` of B=256 — against ``np.take(rows, idx, axis=0, out=buf, mode="clip")``."""

from __future__ import annotations

import numpy as np
from benchmarks._harness import Result, compare
from benchmarks.workloads.data import row_bytes

from unibatch import ReplayBuffer, StepSampler

BATCH = 256


def run(buffer: ReplayBuffer, image: bool, storage: str, backend: str, calls: int) -> Result:
    n = len(buffer)
    rng = np.random.default_rng(0)
    floor_rows = np.ones((n, row_bytes(image)), np.uint8)
    out = np.empty((BATCH, row_bytes(image)), np.uint8)

    def floor() -> None:
        np.take(floor_rows, rng.integers(0, n, BATCH), axis=0, out=out, mode="clip")

    sampler = StepSampler(buffer, BATCH, seed=0)

    def workload() -> None:
        sampler.sample()

    return compare("W2", "image" if image else "small", storage, backend, workload, floor, calls)
