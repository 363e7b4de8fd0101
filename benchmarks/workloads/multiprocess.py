"""W5: MultiprocessingSampler throughput with a decode-heavy transform, 1 and 2 workers.

The "decode" is a bilinear resize of every image (3x84x84 -> 3x112x112) done per batch by
``TransformedBatch``; the reference is the same StepSampler in one process.
"""

from __future__ import annotations

import json
import time

from unibatch import ReplayBuffer, TransformedBatch
from unibatch.samplers import MultiprocessingSampler, StepSampler
from unibatch.transformations import DictTransformation, ImageResizeTransformation

BATCH = 64


def heavy_source(buffer: ReplayBuffer) -> TransformedBatch:
    resize = ImageResizeTransformation(112, 112, layout="CHW")
    return TransformedBatch(buffer, DictTransformation({"obs": DictTransformation({"image": resize})}))


def batches_per_second(sample: object, calls: int) -> float:
    sample()  # type: ignore[operator]
    start = time.perf_counter()
    for _ in range(calls):
        sample()  # type: ignore[operator]
    return calls / (time.perf_counter() - start)


def run(buffer: ReplayBuffer, calls: int) -> list[str]:
    """Text and JSON lines: one process, then 1 and 2 workers as a multiple of it (target >= 0.8 x workers)."""
    source = heavy_source(buffer)
    single = batches_per_second(StepSampler(source, BATCH, seed=0).sample, calls)
    lines = [f"W5   image  memmap  numpy    one process: {single:8.1f} batches/s"]
    for workers in (1, 2):
        with MultiprocessingSampler(StepSampler(source, BATCH, seed=0), n_workers=workers, n_buffers=4) as sampler:
            rate = batches_per_second(sampler.sample, calls)
        speedup, target = rate / single, 0.8 * workers
        lines.append(
            f"W5   image  memmap  numpy    {workers} worker(s): {rate:8.1f} batches/s = {speedup:4.2f} x one process "
            f"(target >= {target:.1f} {'ok' if speedup >= target else 'MISS'})"
        )
        lines.append(
            json.dumps(
                {
                    "workload": "W5",
                    "variant": f"image-{workers}-workers",
                    "storage": "memmap",
                    "backend": "numpy",
                    "median": 1 / rate,
                    "floor_median": 1 / single,
                    "ratio": single / rate,
                    "speedup": speedup,
                    "target_speedup": target,
                    "meets_target": speedup >= target,
                }
            )
        )
    return lines
