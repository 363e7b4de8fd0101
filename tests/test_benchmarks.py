"""``python -m benchmarks`` runs every DESIGN.md §6 workload and reports each one as machine-readable JSON.

Small sizes and no timing checks: speed belongs to the benchmarks, not to the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {"workload", "variant", "storage", "backend", "median", "floor_median", "ratio"}


@pytest.mark.slow
def test_every_workload_prints_a_json_line_with_the_required_fields():
    command = [sys.executable, "-m", "benchmarks", "--image-steps", "1000", "--small-steps", "2000", "--calls", "1"]
    result = subprocess.run(
        [*command, "--backends", "numpy,pytorch", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    bandwidth = [line for line in lines if line["workload"] == "bandwidth"]
    assert len(bandwidth) == 1 and bandwidth[0]["gb_per_s"] > 0
    measured = [
        line
        for line in lines
        if line["workload"] in {"W1", "W1b", "W2", "W3", "W2 reuse", "W3 reuse", "W4", "W5", "W5 reuse"}
    ]
    for line in measured:
        assert set(line) >= REQUIRED, line
        assert line["median"] > 0 and line["floor_median"] > 0
    seen = {(line["workload"], line["variant"], line["storage"], line["backend"]) for line in measured}
    for backend in ("numpy", "pytorch"):
        for variant in ("image", "small"):
            for storage in ("memory", "memmap"):
                for workload in ("W1", "W1b", "W2", "W3", "W2 reuse", "W3 reuse"):
                    assert (workload, variant, storage, backend) in seen
            assert ("W4", variant, "memmap", backend) in seen
    for workload in ("W5", "W5 reuse"):  # owned outputs (the default) and reuse_outputs
        assert {line["variant"] for line in measured if line["workload"] == workload} == {
            "image-1-workers",
            "image-2-workers",
        }
    assert any(line["workload"] == "W4-reopen" for line in lines)
