"""``python -m benchmarks.distributed``: a buffer served by a Ray actor against the same buffer in process.

Run it in a private network namespace (``make bench-distributed`` does). Two workloads, each on
the state-only and the image transitions of DESIGN.md §6, in a persistent memmap ``ReplayBuffer``:

* **append**: 2 producer processes append ``--rows`` rows each, one ``append`` at a time, through
  ``RemoteBuffer`` handles (chunks of ``--chunks`` rows, 4 in flight, every chunk committed by the
  actor before it is acknowledged), against one process appending the same rows to the same kind
  of buffer and committing (``flush``) every chunk; and the 2 producers again with one ``extend``
  of all their rows (shipped in the same chunks). Rows/s of all producers together.
* **sample**: one learner draws batches of 256 through a ``RemoteSampler`` (4 batches per call,
  2 calls in flight), through a ``StepSampler`` on the ``RemoteBuffer`` (one round trip per
  batch), and with a ``StepSampler`` on the buffer in process. Batches/s.

Medians of ``--repeats`` runs; one JSON line per measurement with ``--json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks.workloads import data

from unibatch import ReplayBuffer
from unibatch.backends import backend_from_name
from unibatch.samplers import StepSampler

BATCH = 256
NUMPY = backend_from_name("numpy")


def rows_of(image: bool, count: int) -> list[dict[str, Any]]:
    batch = data.transitions(0, count, image, np.random.default_rng(0))
    return [{key: _row(value, i) for key, value in batch.items()} for i in range(count)]


def _row(value: Any, i: int) -> Any:
    return {k: _row(v, i) for k, v in value.items()} if isinstance(value, dict) else value[i]


class Producer:
    """A producer process appending pre-made rows through a remote handle."""

    def __init__(self, buffer: Any, image: bool, rows: int) -> None:
        self.buffer = buffer
        self.rows = rows_of(image, rows)
        self.batch = data.transitions(0, rows, image, np.random.default_rng(0))

    def ready(self) -> bool:
        return True

    def run(self, batched: bool) -> int:
        if batched:  # whole chunks at once, as a vectorised environment or a recorded episode gives them
            self.buffer.extend(self.batch)
        else:
            for row in self.rows:
                self.buffer.append(row)
        self.buffer.flush()
        return len(self.rows)


def append_remote(ray: Any, image: bool, rows: int, chunk: int, root: Path, batched: bool = False) -> float:
    from unibatch.integrations.ray import RemoteBuffer, serve_replay_buffer

    actor = serve_replay_buffer(data.transition_space(NUMPY, image), cache_path=root / "remote", capacity=None)
    buffer = RemoteBuffer(actor, chunk_size=chunk, max_in_flight=4)
    producers = [ray.remote(Producer).options(num_cpus=0).remote(buffer, image, rows) for _ in range(2)]
    ray.get([producer.ready.remote() for producer in producers])  # processes up, rows made
    start = time.perf_counter()
    total = sum(ray.get([producer.run.remote(batched) for producer in producers]))
    seconds = time.perf_counter() - start
    assert len(buffer) == total == 2 * rows
    for producer in producers:
        ray.kill(producer)
    ray.kill(actor)
    return total / seconds


def append_local(image: bool, rows: int, chunk: int, root: Path) -> float:
    made = rows_of(image, rows)
    buffer = ReplayBuffer.create(None, data.transition_space(NUMPY, image), cache_path=root / "local", capacity=None)
    start = time.perf_counter()
    for _ in range(2):
        for position, row in enumerate(made):
            buffer.append(row)
            if (position + 1) % chunk == 0:
                buffer.flush()
    buffer.flush()
    seconds = time.perf_counter() - start
    buffer.close()
    return 2 * rows / seconds


def sample_rates(ray: Any, image: bool, rows: int, batches: int, root: Path) -> dict[str, float]:
    from unibatch.integrations.ray import RemoteBuffer, RemoteSampler, serve_replay_buffer

    space = data.transition_space(NUMPY, image)
    values = data.transitions(0, rows, image, np.random.default_rng(0))
    local = ReplayBuffer.create(None, space, cache_path=root / "sample-local", capacity=None)
    local.extend(values)
    local.flush()
    actor = serve_replay_buffer(space, cache_path=root / "sample-remote", capacity=None)
    remote = RemoteBuffer(actor, chunk_size=1024)
    remote.extend(values)
    remote.flush()
    samplers = {
        "in process (StepSampler)": StepSampler(local, BATCH, seed=0),
        "RemoteSampler 4 per call, 2 in flight": RemoteSampler(
            remote, BATCH, seed=0, batches_per_call=4, calls_in_flight=2
        ),
        "StepSampler on RemoteBuffer": StepSampler(remote, BATCH, seed=0),
    }
    rates = {}
    for name, sampler in samplers.items():
        for _ in range(8):
            sampler.sample()  # warm
        start = time.perf_counter()
        for _ in range(batches):
            sampler.sample()
        rates[name] = batches / (time.perf_counter() - start)
    local.close()
    ray.kill(actor)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed")
    parser.add_argument("--rows", type=int, default=20_000, help="rows per producer (small rows; image rows: a tenth)")
    parser.add_argument("--chunks", default="16,64,256", help="chunk sizes of the append runs")
    parser.add_argument("--batches", type=int, default=300, help="batches timed per sampler")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="also print one JSON line per measurement")
    arguments = parser.parse_args()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(data)  # producer processes need not import benchmarks/
    results = []

    def report(workload: str, variant: str, kind: str, value: float, unit: str, spread: list[float]) -> None:
        results.append(value)
        print(
            f"{workload:<7} {kind:<6} {variant:<44} {value:12,.0f} {unit}"
            f"  (min {min(spread):,.0f}, max {max(spread):,.0f})",
            flush=True,
        )
        if arguments.json:
            record = {"workload": workload, "variant": variant, "row": kind, "median": value, "unit": unit}
            print(json.dumps({**record, "min": min(spread), "max": max(spread)}), flush=True)

    with tempfile.TemporaryDirectory(prefix="unibatch-distributed-", dir=os.environ.get("TMPDIR")) as scratch:
        for image in (False, True):
            kind = "image" if image else "small"
            rows = arguments.rows // 10 if image else arguments.rows
            for chunk in (int(c) for c in arguments.chunks.split(",")):
                for name, run in (
                    (f"2 producers -> actor, chunk {chunk}", functools.partial(append_remote, ray, image, rows, chunk)),
                    (f"1 process, flush every {chunk}", functools.partial(append_local, image, rows, chunk)),
                    (
                        f"2 producers extend -> actor, chunk {chunk}",
                        functools.partial(append_remote, ray, image, rows, chunk, batched=True),
                    ),
                ):
                    spread = []
                    for repeat in range(arguments.repeats):
                        path = Path(scratch) / f"{kind}-{chunk}-{len(results)}-{repeat}"
                        path.mkdir()
                        spread.append(run(path))
                    report("append", name, kind, statistics.median(spread), "rows/s", spread)
            spreads: dict[str, list[float]] = {}
            for repeat in range(arguments.repeats):
                path = Path(scratch) / f"sample-{kind}-{repeat}"
                path.mkdir()
                for name, rate in sample_rates(ray, image, rows, arguments.batches, path).items():
                    spreads.setdefault(name, []).append(rate)
            for name, spread in spreads.items():
                report("sample", name, kind, statistics.median(spread), "batches/s", spread)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
