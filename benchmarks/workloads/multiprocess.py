"""W5: MultiprocessingSampler throughput with a decode-heavy transform, 1 and 2 workers.

The "decode" is a bilinear resize of every image (3x84x84 -> 3x112x112) done per batch by
``TransformedBatch``; the reference is the same StepSampler in one process. Each repeat times,
back to back: the reference, the same work in 2 independent processes at once (the machine's
ceiling for 2 workers: shared caches and memory bandwidth, the kernel's page-fault path; no
MultiprocessingSampler involved), then the sampler with 1 and 2 workers. The samplers start
once and every timing begins after a full prefetch window has been consumed, so it covers
steady state, not process start-up or batches prefetched while another variant was timed.
Speedups are ratios of the medians over the repeats. "W5" samplers return batches that own
their memory (the default); "W5 reuse" ones are made with ``reuse_outputs=N_BUFFERS``.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import Any

from unibatch import ReplayBuffer, TransformedBatch
from unibatch.samplers import MultiprocessingSampler, StepSampler
from unibatch.transformations import DictTransformation, ImageResizeTransformation

BATCH = 64
N_BUFFERS = 4
WORKERS = (1, 2)
VARIANTS = tuple((workers, reuse) for workers in WORKERS for reuse in (0, N_BUFFERS))
"""(workers, reuse_outputs) of the timed samplers."""


def heavy_source(buffer: ReplayBuffer) -> TransformedBatch:
    resize = ImageResizeTransformation(112, 112, layout="CHW")
    return TransformedBatch(buffer, DictTransformation({"obs": DictTransformation({"image": resize})}))


def batches_per_second(sample: Callable[[], Any], calls: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        sample()
    start = time.perf_counter()
    for _ in range(calls):
        sample()
    return calls / (time.perf_counter() - start)


def _independent(sampler: StepSampler, calls: int, barrier: Any, rates: Any) -> None:
    """One process of the ceiling: warm up, start with the others, report its batches/s."""
    for _ in range(2 * N_BUFFERS):
        sampler.sample()
    barrier.wait()
    rates.put(batches_per_second(sampler.sample, calls, warmup=0))


def independent_processes(source: TransformedBatch, processes: int, calls: int) -> float:
    """Batches/s of ``processes`` processes each running its own StepSampler at the same time."""
    ctx = multiprocessing.get_context()  # the context MultiprocessingSampler uses by default
    barrier, rates = ctx.Barrier(processes), ctx.SimpleQueue()
    children = [
        ctx.Process(target=_independent, args=(StepSampler(source, BATCH, seed=seed), calls, barrier, rates))
        for seed in range(processes)
    ]
    for child in children:
        child.start()
    total = sum(rates.get() for _ in children)
    for child in children:
        child.join()
    return float(total)


def run(buffer: ReplayBuffer, calls: int, repeats: int = 5) -> list[str]:
    """Text and JSON lines: 1 and 2 workers as a multiple of one process (target >= 0.8 x workers)."""
    source = heavy_source(buffer)
    single = StepSampler(source, BATCH, seed=0)
    samplers = {
        variant: MultiprocessingSampler(
            StepSampler(source, BATCH, seed=0), n_workers=variant[0], n_buffers=N_BUFFERS, reuse_outputs=variant[1]
        )
        for variant in VARIANTS
    }
    rates: dict[Any, list[float]] = {name: [] for name in ("single", "ceiling", *VARIANTS)}
    try:
        for _ in range(repeats):
            rates["single"].append(batches_per_second(single.sample, calls))
            rates["ceiling"].append(independent_processes(source, 2, calls))
            for variant, sampler in samplers.items():
                rates[variant].append(batches_per_second(sampler.sample, calls, warmup=N_BUFFERS))
    finally:
        for sampler in samplers.values():
            sampler.close()
    return _report(rates)


def _report(rates: dict[Any, list[float]]) -> list[str]:
    single = statistics.median(rates["single"])
    ceiling = statistics.median(rates["ceiling"]) / single
    lines = [
        f"W5       image  memmap  numpy    one process: {single:8.1f} batches/s; 2 independent processes at once: "
        f"{ceiling:4.2f} x (the ceiling of 2 workers)"
    ]
    for workers, reuse in VARIANTS:
        timed = rates[(workers, reuse)]
        rate = statistics.median(timed)
        speedup, target = rate / single, 0.8 * workers
        workload = "W5 reuse" if reuse else "W5"
        lines.append(
            f"{workload:<8} image  memmap  numpy    {workers} worker(s): {rate:8.1f} batches/s = {speedup:4.2f} x one "
            f"process (min {min(timed) / single:4.2f}, max {max(timed) / single:4.2f}; "
            f"target >= {target:.1f} {'ok' if speedup >= target else 'MISS'})"
        )
        lines.append(
            json.dumps(
                {
                    "workload": workload,
                    "variant": f"image-{workers}-workers",
                    "storage": "memmap",
                    "backend": "numpy",
                    "median": 1 / rate,
                    "floor_median": 1 / single,
                    "ratio": single / rate,
                    "speedup": speedup,
                    "target_speedup": target,
                    "meets_target": speedup >= target,
                    "ceiling_speedup": ceiling if workers == 2 else 1.0,
                    "repeats": len(rates["single"]),
                }
            )
        )
    return lines
