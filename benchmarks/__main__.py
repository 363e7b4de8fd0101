"""``python -m benchmarks``: the DESIGN.md §6 workloads as ratios to the plain-NumPy floor.

For each backend (NumPy, PyTorch), data variant (image dict at 50k steps, state-only dict at 1M)
and storage (memory, memmap) it fills a ring buffer once, then runs W1 (append), W1b (extend
1000), W2 (uniform sample B=256) and W3 (windows B=256 T=16 with episode masks), each
interleaved with its floor, and W2/W3 again with ``StepSampler(reuse_outputs=2)`` ("W2 reuse",
"W3 reuse": outputs written into reused buffers, as the floor does); W4 (reopen + warm
sample) runs on the memmap buffers and W5 (MultiprocessingSampler) once on the NumPy image
buffer. Prints one text line per workload
and, with ``--json``, one JSON line each (workload, variant, storage, backend, median,
floor_median, ratio, target, meets_target). A memory-bandwidth reference comes first.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from benchmarks._harness import Result
from benchmarks.workloads import append, bandwidth, data, multiprocess, reopen, uniform, windows

from unibatch import ComputeBackend, ReplayBuffer
from unibatch.backends import backend_from_name
from unibatch.backends.transfer import convert_tree
from unibatch.storages import MemmapStorage, MemoryStorage


def fill(buffer: ReplayBuffer, steps: int, image: bool, backend: ComputeBackend) -> None:
    rng = np.random.default_rng(0)
    for start in range(0, steps, 1000):
        buffer.extend(convert_tree(data.transitions(start, min(start + 1000, steps), image, rng), backend))


def emit(items: Iterable[Result | str], as_json: bool) -> None:
    """Print results (text, then JSON) and lines (a line starting with ``{`` is a JSON line)."""
    for item in items:
        if isinstance(item, Result):
            print(item.line(), flush=True)
            if as_json:
                print(item.json(), flush=True)
        elif as_json or not item.startswith("{"):
            print(item, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--image-steps", type=int, default=50_000)
    parser.add_argument("--small-steps", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=20, help="calls per timed repeat (scaled per workload)")
    parser.add_argument("--backends", default="numpy,pytorch", help="comma-separated backend names")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per workload")
    arguments = parser.parse_args()
    emit(bandwidth.run(), arguments.json)
    calls = arguments.calls
    with tempfile.TemporaryDirectory(prefix="unibatch-bench-") as scratch:
        for backend_name in arguments.backends.split(","):
            backend = backend_from_name(backend_name)
            name = backend.simplified_name
            for image, steps in ((True, arguments.image_steps), (False, arguments.small_steps)):
                space = data.transition_space(backend, image)
                for storage_name, storage_cls in (("memory", MemoryStorage), ("memmap", MemmapStorage)):
                    path = Path(scratch) / f"{name}-{storage_name}-{image}" if storage_name == "memmap" else None
                    buffer = ReplayBuffer.create(storage_cls, space, capacity=steps, cache_path=path)
                    fill(buffer, steps, image, backend)
                    emit(
                        [
                            append.run_append(buffer, image, storage_name, name, calls * 200),
                            append.run_extend(buffer, image, storage_name, name, max(calls // 4, 2)),
                            *uniform.run(buffer, image, storage_name, name, calls * 10),
                            *windows.run(buffer, image, storage_name, name, calls),
                        ],
                        arguments.json,
                    )
                    if image and storage_name == "memmap" and name == "numpy":
                        emit(multiprocess.run(buffer, calls * 2), arguments.json)
                    if path is not None:
                        buffer.flush()
                        lines, result = reopen.run(path, image, backend, calls * 10)
                        emit([*lines, result], arguments.json)
                    buffer.close()
    return 0


raise SystemExit(main())
