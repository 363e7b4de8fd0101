"""W4: reopen a persistent memmap buffer, then sample B=256 warm against the NumPy floor."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from benchmarks._harness import Result
from benchmarks.workloads import uniform

from unibatch import ReplayBuffer
from unibatch.backends import backend_from_name


def run(path: Path, image: bool, calls: int, repeats: int = 7) -> tuple[str, Result]:
    backend = backend_from_name("numpy")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        buffer = ReplayBuffer.load_from(path, backend=backend)
        buffer.get_at(np.zeros(1, np.int64))  # first read maps the files
        times.append(time.perf_counter() - start)
        buffer.close()
    buffer = ReplayBuffer.load_from(path, backend=backend)
    result = uniform.run(buffer, image, "memmap", "numpy", calls)
    result.workload = "W4"
    buffer.close()
    variant = "image" if image else "small"
    median_ms = statistics.median(times) * 1e3
    return f"W4   {variant:<6} memmap  numpy    reopen median {median_ms:6.2f} ms (target <= 5 ms)", result
