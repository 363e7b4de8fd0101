"""``python -m benchmarks.formats``: write and random-read throughput of every storage format.

On the image dict of DESIGN.md §6 (a transition of 21,357 raw bytes, images from a synthetic
camera: smooth gradients, a moving disc, light noise, so that codecs see realistic content), each
format stores ``--rows`` transitions in a growable ``ReplayBuffer`` (extend in 200-step episodes,
``flush()`` after each: the commit a recorder makes), is reopened read-only, and serves random
batches of 256. Prints rows/s and MB/s of raw bytes for both, and the bytes on disk per 1,000
frames against raw. Formats that store images only (video, image) hold the image key in a
``DictStorage`` with the rest in memmap.
"""

from __future__ import annotations

import argparse
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
from unibatch.storages import DictStorage, storage_class

EPISODE = 200
BATCH = 256
FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    "memmap": ("memmap", {}),
    "hdf5": ("hdf5", {}),
    "zarr (zstd)": ("zarr", {}),
    "parquet (zstd)": ("parquet", {}),
    "image png": ("image", {"format": "png", "layout": "CHW"}),
    "image jpeg q90": ("image", {"format": "jpeg", "layout": "CHW"}),
    "video ffv1": ("video", {"codec": "ffv1", "layout": "CHW"}),
    "video h264": ("video", {"codec": "h264", "layout": "CHW"}),
    "video av1": ("video", {"codec": "av1", "layout": "CHW"}),
}
IMAGE_ONLY = {"image", "video"}


def camera_transitions(start: int, stop: int, rng: np.random.Generator) -> dict[str, Any]:
    """``data.transitions`` with camera-like images (uint8 ``(n, 3, 84, 84)``)."""
    batch = data.transitions(start, stop, True, rng)
    steps = np.arange(start, stop, dtype=np.float32)[:, None, None]
    y, x = np.mgrid[0:84, 0:84].astype(np.float32)
    centre_x, centre_y = 42 + 25 * np.sin(steps / 17), 42 + 25 * np.cos(steps / 23)
    disc = ((x - centre_x) ** 2 + (y - centre_y) ** 2 < 120).astype(np.float32)
    zeros = np.zeros_like(steps)
    base = np.stack([x * 2.5 + steps % 50, y * 2.0 + 30 + zeros, (x + y) * 1.2 + 10 + zeros], axis=1)
    image = base + disc[:, None] * np.array([120, -60, 40], np.float32)[:, None, None] + rng.normal(0, 2, base.shape)
    batch["obs"]["image"] = np.clip(image, 0, 255).astype(np.uint8)
    return batch


def create(kind: str, options: dict[str, Any], space: Any, path: Path) -> ReplayBuffer:
    if kind not in IMAGE_ONLY:
        return ReplayBuffer.create(storage_class(kind), space, cache_path=path, capacity=None, **options)
    return ReplayBuffer.create(
        DictStorage,
        space,
        {"obs/image": kind, "*": "memmap"},
        cache_path=path,
        capacity=None,
        key_kwargs={"obs/image": options},
    )


def disk_bytes(path: Path) -> int:
    return sum(entry.stat().st_blocks * 512 for entry in path.rglob("*") if entry.is_file())


def measure(name: str, kind: str, options: dict[str, Any], rows: int, batches: int, root: Path) -> dict[str, Any]:
    backend = backend_from_name("numpy")
    space = data.transition_space(backend, True)
    rng = np.random.default_rng(0)
    episodes = [camera_transitions(start, start + EPISODE, rng) for start in range(0, rows, EPISODE)]
    path = root / name.replace(" ", "-")
    start = time.perf_counter()
    with create(kind, options, space, path) as buffer:
        for episode in episodes:
            buffer.extend(episode)
            buffer.flush()
    write_seconds = time.perf_counter() - start
    row_bytes = data.row_bytes(True)
    image_bytes = 3 * 84 * 84
    with ReplayBuffer.load_from(path, backend=backend) as reader:
        sample_rng = np.random.default_rng(1)
        reader.get_at(sample_rng.integers(0, rows, BATCH))  # warm: open files and decoders
        times = []
        for _ in range(batches):
            index = sample_rng.integers(0, rows, BATCH)
            begin = time.perf_counter()
            reader.get_at(index)
            times.append(time.perf_counter() - begin)
    read_seconds = statistics.median(times)
    image_disk = disk_bytes(path / "storage" / "obs.image") if kind in IMAGE_ONLY else None
    return {
        "workload": "formats",
        "variant": name,
        "storage": kind,
        "rows": rows,
        "write_rows_per_s": rows / write_seconds,
        "write_mb_per_s": rows * row_bytes / write_seconds / 1e6,
        "read_rows_per_s": BATCH / read_seconds,
        "read_mb_per_s": BATCH * row_bytes / read_seconds / 1e6,
        "disk_mb_per_1000_rows": disk_bytes(path) / rows * 1000 / 1e6,
        "raw_mb_per_1000_rows": row_bytes * 1000 / 1e6,
        "image_disk_mb_per_1000_frames": None if image_disk is None else image_disk / rows * 1000 / 1e6,
        "image_raw_mb_per_1000_frames": image_bytes * 1000 / 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.formats")
    parser.add_argument("--rows", type=int, default=2000, help="transitions written per format")
    parser.add_argument("--batches", type=int, default=20, help="random batches of 256 timed per format")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated names from the table")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per format")
    arguments = parser.parse_args()
    print(f"{'format':<16} {'write rows/s':>12} {'MB/s':>7} {'read rows/s':>12} {'MB/s':>7} {'MB/1000 rows':>13}")
    with tempfile.TemporaryDirectory(prefix="unibatch-formats-", dir=os.environ.get("TMPDIR")) as scratch:
        for name in arguments.formats.split(","):
            kind, options = FORMATS[name]
            result = measure(name, kind, options, arguments.rows, arguments.batches, Path(scratch))
            image = result["image_disk_mb_per_1000_frames"]
            print(
                f"{name:<16} {result['write_rows_per_s']:12.0f} {result['write_mb_per_s']:7.1f} "
                f"{result['read_rows_per_s']:12.0f} {result['read_mb_per_s']:7.1f} "
                f"{result['disk_mb_per_1000_rows']:13.2f}"
                + ("" if image is None else f"  (images: {image:.2f} MB per 1000 frames, raw 21.17)"),
                flush=True,
            )
            if arguments.json:
                print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
