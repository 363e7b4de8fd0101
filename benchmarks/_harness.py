"""Measure a workload against the plain-NumPy floor, interleaved in one process (DESIGN.md §6).

Each repeat times the floor and the workload back to back; the report gives median, min and
max of the per-call times and the ratio of the medians, as text and as one JSON line, with the
DESIGN.md target and whether it is met.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

TARGETS: dict[tuple[str, str], float] = {
    ("W1", "image"): 2.0,
    ("W1", "small"): 15.0,
    ("W1b", "image"): 1.2,
    ("W1b", "small"): 2.0,
    ("W2", "image"): 1.1,
    ("W2", "small"): 1.5,
    ("W3", "image"): 1.3,
    ("W3", "small"): 2.0,
    ("W2 reuse", "image"): 1.1,
    ("W2 reuse", "small"): 1.5,
    ("W3 reuse", "image"): 1.3,
    ("W3 reuse", "small"): 2.0,
    ("W4", "image"): 1.5,
    ("W4", "small"): 1.5,
}
"""Target ratio to the floor (lower is better) per (workload, variant), from DESIGN.md §6."""


@dataclass
class Result:
    workload: str
    variant: str
    storage: str
    backend: str
    times: list[float]
    floor_times: list[float]
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def floor_median(self) -> float:
        return statistics.median(self.floor_times)

    @property
    def ratio(self) -> float:
        return self.median / self.floor_median

    @property
    def target(self) -> float | None:
        return TARGETS.get((self.workload, self.variant))

    def line(self) -> str:
        target = (
            ""
            if self.target is None
            else f"  target {self.target:4.1f} {'ok' if self.ratio <= self.target else 'MISS'}"
        )
        return (
            f"{self.workload:<4} {self.variant:<6} {self.storage:<7} {self.backend:<8} "
            f"median {self.median * 1e6:10.1f} us  min {min(self.times) * 1e6:10.1f}  "
            f"max {max(self.times) * 1e6:10.1f}  "
            f"floor {self.floor_median * 1e6:10.1f} us  ratio {self.ratio:6.2f}{target}"
        )

    def json(self) -> str:
        return json.dumps(
            {
                "workload": self.workload,
                "variant": self.variant,
                "storage": self.storage,
                "backend": self.backend,
                "median": self.median,
                "min": min(self.times),
                "max": max(self.times),
                "floor_median": self.floor_median,
                "ratio": self.ratio,
                "target": self.target,
                "meets_target": None if self.target is None else self.ratio <= self.target,
                "repeats": len(self.times),
                **self.extra,
            }
        )


def per_call(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of ``fn`` over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def compare(
    workload: str,
    variant: str,
    storage: str,
    backend: str,
    run: Callable[[], object],
    floor: Callable[[], object],
    calls: int,
    repeats: int = 7,
) -> Result:
    """Warm both up once, then alternate ``repeats`` timings of ``calls`` calls each."""
    run()
    floor()
    times, floor_times = [], []
    for _ in range(repeats):
        floor_times.append(per_call(floor, calls))
        times.append(per_call(run, calls))
    return Result(workload, variant, storage, backend, times, floor_times)


def timing_json(workload: str, variant: str, storage: str, backend: str, times: list[float], **extra: object) -> str:
    """A JSON line for a measurement that has no floor (reopen latency, throughput)."""
    return json.dumps(
        {
            "workload": workload,
            "variant": variant,
            "storage": storage,
            "backend": backend,
            "median": statistics.median(times),
            "min": min(times),
            "max": max(times),
            "repeats": len(times),
            **extra,
        }
    )
