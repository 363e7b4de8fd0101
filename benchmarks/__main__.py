"""``python -m benchmarks``: the DESIGN.md §6 workloads as ratios to the plain-NumPy floor.

Prints one line per workload and, with ``--json``, one JSON line each (workload, variant,
storage, backend, median, floor_median, ratio).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from benchmarks.workloads import append, data, multiprocess, reopen, uniform, windows

from unibatch import ReplayBuffer
from unibatch.backends import backend_from_name
from unibatch.storages import MemmapStorage, MemoryStorage


def fill(buffer: ReplayBuffer, steps: int, image: bool) -> None:
    rng = np.random.default_rng(0)
    for start in range(0, steps, 1000):
        buffer.extend(data.transitions(start, min(start + 1000, steps), image, rng))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--image-steps", type=int, default=50_000)
    parser.add_argument("--small-steps", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="also print one JSON line per workload")
    arguments = parser.parse_args()
    backend = backend_from_name("numpy")
    with tempfile.TemporaryDirectory(prefix="unibatch-bench-") as scratch:
        for image, steps in ((True, arguments.image_steps), (False, arguments.small_steps)):
            space = data.transition_space(backend, image)
            for storage_name, storage_cls in (("memory", MemoryStorage), ("memmap", MemmapStorage)):
                path = Path(scratch) / f"{storage_name}-{image}" if storage_name == "memmap" else None
                buffer = ReplayBuffer.create(storage_cls, space, capacity=steps, cache_path=path)
                fill(buffer, steps, image)
                name = backend.simplified_name
                results = [
                    append.run_append(buffer, image, storage_name, name, arguments.calls * 200),
                    append.run_extend(buffer, image, storage_name, name, max(arguments.calls // 4, 2)),
                    uniform.run(buffer, image, storage_name, name, arguments.calls * 10),
                    windows.run(buffer, image, storage_name, name, arguments.calls),
                ]
                for result in results:
                    print(result.line(), flush=True)
                    if arguments.json:
                        print(result.json(), flush=True)
                if image and storage_name == "memmap":
                    for line in multiprocess.run(buffer, arguments.calls * 2):
                        print(line, flush=True)
                if storage_name == "memmap" and path is not None:
                    buffer.flush()
                    line, result = reopen.run(path, image, arguments.calls * 10)
                    print(line, flush=True)
                    print(result.line(), flush=True)
                    if arguments.json:
                        print(result.json(), flush=True)
                buffer.close()
    return 0


raise SystemExit(main())
