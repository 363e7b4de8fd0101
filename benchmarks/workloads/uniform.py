"""W2: ``StepSampler.sample()`` of B=256 — against ``np.take(rows, idx, axis=0, out=buf, mode="clip")``."""

from __future__ import annotations

import numpy as np
from benchmarks._harness import Result, compare
from benchmarks.workloads.data import row_bytes

from unibatch import ReplayBuffer, StepSampler

BATCH = 256
REUSED = "W2 reuse"
"""The same workload with ``StepSampler(reuse_outputs=2)``: outputs written into reused buffers."""


def run(
    buffer: ReplayBuffer, image: bool, storage: str, backend: str, calls: int, with_reuse: bool = True
) -> list[Result]:
    n = len(buffer)
    rng = np.random.default_rng(0)
    floor_rows = np.ones((n, row_bytes(image)), np.uint8)
    out = np.empty((BATCH, row_bytes(image)), np.uint8)

    def floor() -> None:
        np.take(floor_rows, rng.integers(0, n, BATCH), axis=0, out=out, mode="clip")

    results = []
    for workload_name, reuse in (("W2", 0), (REUSED, 2))[: 2 if with_reuse else 1]:
        sampler = StepSampler(buffer, BATCH, seed=0, reuse_outputs=reuse)
        variant = "image" if image else "small"
        results.append(compare(workload_name, variant, storage, backend, sampler.sample, floor, calls))
    return results
