"""W4: reopen a persistent memmap buffer, then sample B=256 warm against the NumPy floor."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from benchmarks._harness import Result, timing_json
from benchmarks.workloads import uniform

from unibatch import ComputeBackend, ReplayBuffer

REOPEN_TARGET_MS = 5.0


def run(path: Path, image: bool, backend: ComputeBackend, calls: int, repeats: int = 7) -> tuple[list[str], Result]:
    """Text and JSON lines of the reopen latency, and the warm sampling result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        buffer = ReplayBuffer.load_from(path, backend=backend)
        buffer.get_at(backend.asarray(np.zeros(1, np.int64)))  # first read maps the files
        times.append(time.perf_counter() - start)
        buffer.close()
    buffer = ReplayBuffer.load_from(path, backend=backend)
    (result,) = uniform.run(buffer, image, "memmap", backend.simplified_name, calls, with_reuse=False)
    result.workload = "W4"
    buffer.close()
    variant = "image" if image else "small"
    median_ms = statistics.median(times) * 1e3
    ok = "ok" if median_ms <= REOPEN_TARGET_MS else "MISS"
    text = (
        f"W4   {variant:<6} memmap  {backend.simplified_name:<8} reopen median {median_ms:6.2f} ms  "
        f"min {min(times) * 1e3:6.2f}  max {max(times) * 1e3:6.2f}  target <= {REOPEN_TARGET_MS:.0f} ms {ok}"
    )
    line = timing_json(
        "W4-reopen", variant, "memmap", backend.simplified_name, times, target_seconds=REOPEN_TARGET_MS / 1e3
    )
    return [text, line], result
