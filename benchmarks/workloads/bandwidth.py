"""The memory-bandwidth reference of DESIGN.md §6: ``np.copyto`` of 512 MiB."""

from __future__ import annotations

import json
import statistics
import time

import numpy as np

SIZE = 512 * 2**20


def run(repeats: int = 5) -> tuple[str, str]:
    """The text line and the JSON line of the copy bandwidth (GB/s, median of ``repeats``)."""
    source = np.ones(SIZE, np.uint8)
    target = np.zeros(SIZE, np.uint8)
    np.copyto(target, source)  # touch both once: steady state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    rate = SIZE / median / 1e9
    text = f"BW   np.copyto 512 MiB: median {median * 1e3:7.1f} ms = {rate:5.1f} GB/s (min {min(times) * 1e3:.1f} ms)"
    line = json.dumps(
        {"workload": "bandwidth", "variant": "copyto-512MiB", "median": median, "min": min(times), "gb_per_s": rate}
    )
    return text, line
