"""W3: frame-stacked windows B=256, T=16 with episode masks, against one NumPy gather of B*T rows."""

from __future__ import annotations

import numpy as np
from benchmarks._harness import Result, compare
from benchmarks.workloads.data import row_bytes

from unibatch import FrameStackedBatch, ReplayBuffer, StepSampler

BATCH, FRAMES = 256, 16
REUSED = "W3 reuse"
"""The same workload with ``StepSampler(reuse_outputs=2)``: outputs written into reused buffers."""


def run(buffer: ReplayBuffer, image: bool, storage: str, backend: str, calls: int) -> list[Result]:
    n = len(buffer)
    mask = FrameStackedBatch.get_valid_mask_function_with_episodeid_key("episode_id")
    windows = FrameStackedBatch(buffer, prefetch_horizon=FRAMES - 1, get_valid_mask_function=mask)
    rng = np.random.default_rng(0)
    floor_rows = np.ones((n, row_bytes(image)), np.uint8)
    out = np.empty((BATCH * FRAMES, row_bytes(image)), np.uint8)
    offsets = np.arange(-FRAMES + 1, 1)

    def floor() -> None:
        index = (rng.integers(0, n, BATCH)[:, None] + offsets).reshape(-1)
        np.take(floor_rows, index, axis=0, out=out, mode="clip")

    results = []
    for workload_name, reuse in (("W3", 0), (REUSED, 2)):
        sampler = StepSampler(windows, BATCH, seed=0, reuse_outputs=reuse)
        variant = "image" if image else "small"
        results.append(compare(workload_name, variant, storage, backend, sampler.sample_with_metadata, floor, calls))
    return results
