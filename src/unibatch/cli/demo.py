"""``unibatch demo``: record a small robot dataset to disk, reopen it, sample frame-stacked batches.

A simulated arm (joint state, camera image, action, reward, done) is recorded step by step into
a ``TrajectoryReplayBuffer`` on the embedded default storage (memmap), reopened read-only, and
sampled by a ``StepSampler`` as frame-stacked windows whose ``slice_valid_mask`` never crosses
episodes, on every installed backend. Everything it does is printed with timings.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from unibatch import BinarySpace, BoxSpace, ComputeBackend, DictSpace, FrameStackedBatch, ToBackendOrDeviceBatch
from unibatch.backends import backend_from_name
from unibatch.backends.transfer import convert_tree
from unibatch.buffers import TrajectoryReplayBuffer
from unibatch.samplers import StepSampler

JOINTS = 7


def register(commands: Any) -> None:
    parser = commands.add_parser("demo", help="record, reopen and sample a small robot dataset")
    parser.add_argument("--episodes", type=int, default=200, help="episodes to record (default 200)")
    parser.add_argument("--steps", type=int, default=50, help="steps per episode (default 50)")
    parser.add_argument("--image-size", type=int, default=64, help="camera image height and width (default 64)")
    parser.add_argument("--batch-size", type=int, default=256, help="windows per sampled batch (default 256)")
    parser.add_argument("--frames", type=int, default=4, help="frames per window (default 4)")
    parser.add_argument("--batches", type=int, default=50, help="batches to sample per backend (default 50)")
    parser.add_argument("--path", type=Path, default=None, help="where to record (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def robot_step_space(backend: ComputeBackend, image_size: int) -> DictSpace:
    """``{obs: {joints: f32[7], image: u8[3,H,W]}, action: f32[7], reward: f32, done: bool}``."""
    return DictSpace(
        backend,
        {
            "obs": {
                "joints": BoxSpace(backend, -np.pi, np.pi, "float32", shape=(JOINTS,)),
                "image": BoxSpace(backend, 0, 255, "uint8", shape=(3, image_size, image_size)),
            },
            "action": BoxSpace(backend, -1.0, 1.0, "float32", shape=(JOINTS,)),
            "reward": BoxSpace(backend, -np.inf, np.inf, "float32", shape=()),
            "done": BinarySpace(backend, ()),
        },
    )


class SimulatedArm:
    """A 7-joint arm driven towards a random goal; the camera sees the joints as colour bands."""

    def __init__(self, image_size: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.size = image_size
        self.rows = np.linspace(0.0, 1.0, image_size, dtype=np.float32)[:, None]

    def reset(self) -> None:
        self.joints = self.rng.uniform(-1, 1, JOINTS).astype(np.float32)
        self.goal = self.rng.uniform(-1, 1, JOINTS).astype(np.float32)

    def step(self, last: bool) -> dict[str, Any]:
        action = np.clip(self.goal - self.joints + self.rng.normal(0, 0.05, JOINTS), -1, 1).astype(np.float32)
        self.joints = np.clip(self.joints + 0.1 * action, -np.pi, np.pi).astype(np.float32)
        bands = (np.sin(self.rows * 6 + self.joints[:3, None, None]) * 0.5 + 0.5) * 255
        image = np.broadcast_to(bands, (3, self.size, self.size)).astype(np.uint8)
        return {
            "obs": {"joints": self.joints.copy(), "image": image},
            "action": action,
            "reward": np.float32(-np.linalg.norm(self.goal - self.joints)),
            "done": np.bool_(last),
        }


def installed_backends() -> list[ComputeBackend]:
    names = ["numpy"] + [n for n, module in (("pytorch", "torch"), ("jax", "jax")) if importlib.util.find_spec(module)]
    return [backend_from_name(name) for name in names]


def run(arguments: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="unibatch-demo-") as scratch:
        path = arguments.path or Path(scratch) / "robot"
        record(path, arguments)
        for backend in installed_backends():
            sample(path, backend, arguments)
    return 0


def record_robot(
    path: Path,
    *,
    episodes: int,
    steps: int,
    image_size: int,
    seed: int = 0,
    backend: ComputeBackend | None = None,
    capacity: int | None = None,
) -> float:
    """Record ``episodes`` x ``steps`` of the simulated arm into a memmap ``TrajectoryReplayBuffer`` at ``path``.

    Each episode has a goal as episode data; ``capacity`` (default: every step) smaller than the
    total makes the ring drop the oldest steps. Returns the seconds spent appending.
    """
    backend = backend or backend_from_name("numpy")
    buffer = TrajectoryReplayBuffer.create(
        robot_step_space(backend, image_size),
        None,  # the embedded default for persistence: memmap
        step_data_capacity=capacity or episodes * steps,
        episode_data_instance_space=DictSpace(backend, {"goal": BoxSpace(backend, -1, 1, "float32", shape=(JOINTS,))}),
        episode_data_capacity=episodes,
        cache_path=path,
    )
    arm = SimulatedArm(image_size, seed)
    start = time.perf_counter()
    for _ in range(episodes):
        arm.reset()
        buffer.set_current_episode_data(convert_tree({"goal": arm.goal}, backend))
        for t in range(steps):
            buffer.append(convert_tree(arm.step(last=t == steps - 1), backend))
        buffer.mark_episode_end()  # commits the episode to disk
    elapsed = time.perf_counter() - start
    buffer.close()
    return elapsed


def record(path: Path, arguments: argparse.Namespace) -> None:
    total = arguments.episodes * arguments.steps
    elapsed = record_robot(
        path, episodes=arguments.episodes, steps=arguments.steps, image_size=arguments.image_size, seed=arguments.seed
    )
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    print(f"recorded {arguments.episodes} episodes x {arguments.steps} steps = {total} steps into {path}")
    layout = "raw files: small leaves packed in rows, one file per large leaf"
    print(f"  storage: memmap ({layout}), {size / 2**20:.1f} MiB on disk")
    print(f"  append: {total / elapsed:,.0f} steps/s ({elapsed / total * 1e6:.1f} us per step incl. simulation)")


def sample(path: Path, backend: ComputeBackend, arguments: argparse.Namespace) -> None:
    start = time.perf_counter()
    buffer = TrajectoryReplayBuffer.load_from(path, backend=backend_from_name("numpy"), read_only=True)
    reopened = time.perf_counter() - start
    source = buffer if backend.simplified_name == "numpy" else ToBackendOrDeviceBatch(buffer, backend)
    mask = FrameStackedBatch.get_valid_mask_function_for_episodes(source)
    windows = FrameStackedBatch(source, prefetch_horizon=arguments.frames - 1, get_valid_mask_function=mask)
    sampler = StepSampler(windows, arguments.batch_size, seed=arguments.seed)
    data, metadata = sampler.sample_with_metadata()  # warm-up (JAX compiles here)
    start = time.perf_counter()
    for _ in range(arguments.batches):
        data, metadata = sampler.sample_with_metadata()
    elapsed = (time.perf_counter() - start) / arguments.batches
    valid = backend.to_numpy((metadata or {})["slice_valid_mask"])
    image = data["step_data"]["obs"]["image"]
    name, episodes = backend.simplified_name, buffer.current_episode_id
    print(f"[{name}] reopened {len(buffer)} steps of {episodes} episodes in {reopened * 1e3:.1f} ms")
    print(
        f"  frame-stacked batch: image {tuple(image.shape)} {backend.dtype_name(image.dtype)}, "
        f"mask {tuple(valid.shape)}, {valid.mean():.1%} of frames inside their episode"
    )
    print(f"  {1 / elapsed:,.0f} batches/s ({elapsed * 1e3:.2f} ms per batch of {arguments.batch_size} windows)")
    buffer.close()
