"""Sources shared by the batch tests: an in-memory robot dataset with its oracle."""

from __future__ import annotations

import numpy as np

from unibatch import BinarySpace, BoxSpace, DictSpace, TextSpace
from unibatch.spaces import concatenate
from unibatch.testing.memory_batch import InMemoryBatch


def robot_space(backend, text: bool = False) -> DictSpace:
    spaces = {
        "obs": {
            "state": BoxSpace(backend, -100.0, 100.0, "float32", shape=(3,)),
            "image": BoxSpace(backend, 0, 255, "uint8", shape=(2, 2)),
        },
        "done": BinarySpace(backend, ()),
        "episode_id": BoxSpace(backend, 0, 1000, "int32", shape=()),
    }
    if text:
        spaces["tag"] = TextSpace(backend, 4, charset="abcd")
    return DictSpace(backend, spaces)


def robot_sample(backend, i: int, episode: int = 0, text: bool = False) -> dict:
    sample = {
        "obs": {
            "state": backend.asarray(np.array([i, -i, i / 2], np.float32)),
            "image": backend.asarray(np.full((2, 2), i % 256, np.uint8)),
        },
        "done": backend.asarray(bool(i % 3 == 2)),
        "episode_id": backend.asarray(np.int32(episode)),
    }
    if text:
        sample["tag"] = "abcd"[: i % 5]
    return sample


def robot_batch(backend, n: int = 7, episodes=None, mutable: bool = True, text: bool = False, start: int = 0):
    """An InMemoryBatch of ``n`` robot samples and the list of those samples."""
    episodes = episodes if episodes is not None else [0] * n
    samples = [robot_sample(backend, start + i, episodes[i], text) for i in range(n)]
    space = robot_space(backend, text)
    data = concatenate(space, samples) if samples else None
    return InMemoryBatch(space, data, mutable=mutable), samples
