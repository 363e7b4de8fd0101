"""The benchmark data of DESIGN.md §6: robot transitions in 200-step episodes."""

from __future__ import annotations

import numpy as np

from unibatch import BinarySpace, BoxSpace, ComputeBackend, DictSpace

EPISODE_LENGTH = 200


def transition_space(backend: ComputeBackend, image: bool) -> DictSpace:
    """``{obs: {state: f32[39], image: u8[3,84,84]}, action: f32[7], reward: f32, done: bool, episode_id: i32}``."""
    obs = {"state": BoxSpace(backend, -np.inf, np.inf, "float32", shape=(39,))}
    if image:
        obs["image"] = BoxSpace(backend, 0, 255, "uint8", shape=(3, 84, 84))
    return DictSpace(
        backend,
        {
            "obs": obs,
            "action": BoxSpace(backend, -1.0, 1.0, "float32", shape=(7,)),
            "reward": BoxSpace(backend, -np.inf, np.inf, "float32", shape=()),
            "done": BinarySpace(backend, ()),
            "episode_id": BoxSpace(backend, 0, 2**31 - 1, "int32", shape=()),
        },
    )


def transitions(start: int, stop: int, image: bool, rng: np.random.Generator) -> dict:
    """Rows ``start..stop`` as a NumPy batch (episode ids follow the 200-step episodes)."""
    n = stop - start
    steps = np.arange(start, stop)
    obs = {"state": rng.standard_normal((n, 39), dtype=np.float32)}
    if image:
        obs["image"] = rng.integers(0, 256, (n, 3, 84, 84), dtype=np.uint8)
    return {
        "obs": obs,
        "action": rng.uniform(-1, 1, (n, 7)).astype(np.float32),
        "reward": rng.standard_normal(n, dtype=np.float32),
        "done": (steps % EPISODE_LENGTH) == EPISODE_LENGTH - 1,
        "episode_id": (steps // EPISODE_LENGTH).astype(np.int32),
    }


def row_bytes(image: bool) -> int:
    """Bytes of one transition (the floor's byte-row width)."""
    return 39 * 4 + (3 * 84 * 84 if image else 0) + 7 * 4 + 4 + 1 + 4
