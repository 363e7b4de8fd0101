"""``unibatch demo``: a tour of spaces on every installed backend.

Until the buffers exist, the demo builds the robot-transition space of DESIGN.md on each
backend, samples a batch, flattens and unflattens it, serializes the space to JSON and back,
and converts the batch between backends, printing what it did and how long it took.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from typing import Any

import numpy as np

from unibatch import BinarySpace, BoxSpace, ComputeBackend, DictSpace
from unibatch.backends import backend_from_name, convert_tree
from unibatch.spaces import batch_space, flat_dim, flatten_data, json_to_space, space_to_json, unflatten_data


def register(commands: Any) -> None:
    parser = commands.add_parser("demo", help="run the demonstration job")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per batch (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def robot_transition_space(backend: ComputeBackend) -> DictSpace:
    """``{obs: {state: f32[39], image: u8[3,84,84]}, action: f32[7], reward: f32, done: bool}``."""
    return DictSpace(
        backend,
        {
            "obs": {
                "state": BoxSpace(backend, -np.inf, np.inf, "float32", shape=(39,)),
                "image": BoxSpace(backend, 0, 255, "uint8", shape=(3, 84, 84)),
            },
            "action": BoxSpace(backend, -1.0, 1.0, "float32", shape=(7,)),
            "reward": BoxSpace(backend, -np.inf, np.inf, "float32", shape=()),
            "done": BinarySpace(backend, ()),
        },
    )


def installed_backends() -> list[ComputeBackend]:
    names = ["numpy"] + [n for n in ("pytorch", "jax") if importlib.util.find_spec(n.replace("pytorch", "torch"))]
    return [backend_from_name(name) for name in names]


def run(arguments: argparse.Namespace) -> int:
    backends = installed_backends()
    print(f"unibatch demo: spaces on {', '.join(b.simplified_name for b in backends)}")
    batches = {}
    for backend in backends:
        batches[backend.simplified_name] = _tour(backend, arguments.batch_size, arguments.seed)
    source = batches["numpy"]
    for backend in backends[1:]:
        start = time.perf_counter()
        converted = convert_tree(source, backend)
        elapsed = time.perf_counter() - start
        print(
            f"converted the numpy batch to {backend.simplified_name} in {elapsed * 1e3:.2f} ms "
            f"(image {type(converted['obs']['image']).__name__}, {converted['obs']['image'].dtype})"
        )
    return 0


def _tour(backend: ComputeBackend, batch_size: int, seed: int) -> Any:
    space = robot_transition_space(backend)
    batched = batch_space(space, batch_size)
    rng = backend.random_number_generator(seed)
    start = time.perf_counter()
    rng, batch = batched.sample(rng)
    sampled = time.perf_counter() - start
    start = time.perf_counter()
    flat = flatten_data(batch_space(space, 1), batch, start_dim=1)
    back = unflatten_data(batch_space(space, 1), flat, start_dim=1)
    flattened = time.perf_counter() - start
    text = json.dumps(space_to_json(space), allow_nan=False)
    reloads_equal = json_to_space(json.loads(text), backend) == space
    print(f"\n[{backend.simplified_name}] {space!r}")
    print(f"  sampled {batch_size} transitions in {sampled * 1e3:.1f} ms; all in the space: {batched.contains(batch)}")
    print(
        f"  flat vector: {flat_dim(space)} values of {backend.dtype_name(flat.dtype)}; batch {tuple(flat.shape)}; "
        f"flatten+unflatten {flattened * 1e3:.1f} ms; round trip exact: {batched.contains(back)}"
    )
    print(f"  space as JSON: {len(text)} bytes; reloads equal: {reloads_equal}")
    return batch
