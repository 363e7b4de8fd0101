"""The exact fast paths of ``ReplayBuffer.append`` and ``extend`` (DESIGN §6 W1/W1b, decision 11).

A value that exactly matches the space is checked by a compiled function and written as host
leaves (packed rows, opaque per-row copies); everything else takes the detailed check. These
tests hold both paths to the same result, and hold every wrong value to the detailed error and
an untouched buffer, on every backend and on memory, shared-memory and memmap storages.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from unibatch import BinarySpace, BoxSpace, DictSpace, ReplayBuffer
from unibatch.batches import BatchBase
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import concatenate
from unibatch.storages import MemoryStorage
from unibatch.testing.conformance import assert_tree_equal, host

KINDS = ("memory", "shared", "memmap")
CAPACITY = 5


def space_of(backend) -> DictSpace:
    """Packed leaves of every shape kind (multi-axis, vector, scalar, bool) and one leaf too large to pack."""
    return DictSpace(
        backend,
        {
            "obs": {
                "image": BoxSpace(backend, 0, 255, "uint8", shape=(3, 2, 2)),
                "state": BoxSpace(backend, -10.0, 10.0, "float32", shape=(5,)),
                "wide": BoxSpace(backend, -1.0, 1.0, "float32", shape=(300,)),  # 1,200 bytes: its own array
            },
            "action": BoxSpace(backend, -9, 9, "int32", shape=(2,)),
            "done": BinarySpace(backend, ()),
            "reward": BoxSpace(backend, -100.0, 100.0, "float32", shape=()),
        },
    )


def numpy_step(i: int) -> dict[str, Any]:
    """Step ``i`` as NumPy leaves (every float exact in float32)."""
    return {
        "obs": {
            "image": np.full((3, 2, 2), i % 256, np.uint8),
            "state": np.arange(5, dtype=np.float32) * i / 4,
            "wide": np.full(300, (i % 8) / 8, np.float32),
        },
        "action": np.array([i % 9, -(i % 7)], np.int32),
        "done": np.asarray(i % 3 == 0),
        "reward": np.asarray(i / 2, np.float32),
    }


def convert(backend, tree: Any) -> Any:
    if isinstance(tree, dict):
        return {key: convert(backend, value) for key, value in tree.items()}
    return backend.asarray(tree)


def step(backend, i: int) -> dict[str, Any]:
    return convert(backend, numpy_step(i))


def batch(backend, ids) -> dict[str, Any]:
    return concatenate(space_of(backend), [step(backend, i) for i in ids])


def widened(backend, value: dict[str, Any]) -> dict[str, Any]:
    """``value`` with its state as float64: still valid (same kind), never exact."""
    state = backend.to_numpy(value["obs"]["state"]).astype(np.float64)
    return {**value, "obs": {**value["obs"], "state": backend.asarray(state)}}


def make(kind: str, backend, capacity: int | None, path: Path) -> ReplayBuffer:
    if kind == "memory":
        return ReplayBuffer.create(MemoryStorage, space_of(backend), capacity=capacity, initial_rows=2)
    if kind == "shared":
        return ReplayBuffer.create(
            MemoryStorage, space_of(backend), capacity=capacity, multiprocessing=True, initial_rows=2
        )
    return ReplayBuffer.create(None, space_of(backend), cache_path=path, capacity=capacity, initial_rows=2)


@pytest.fixture
def buffers():
    made: list[ReplayBuffer] = []
    yield made
    for buffer in made:
        shared = buffer.storage.cache_filename if buffer.cache_path is None else None
        buffer.close()
        if shared is not None and str(shared).startswith("/dev/shm/unibatch-"):
            shutil.rmtree(Path(shared).parent, ignore_errors=True)


def snapshot(buffer: ReplayBuffer) -> Any:
    """Count, offset, length, every physical slot and every file byte of the buffer."""
    files: dict[str, bytes] = {}
    directory = buffer.cache_path or buffer.storage.cache_filename
    if directory is not None:
        files = {
            str(p.relative_to(directory)): p.read_bytes() for p in sorted(Path(directory).rglob("*")) if p.is_file()
        }
    rows = host(buffer.storage.get(slice(0, len(buffer.storage))))
    return buffer.count, buffer.offset, len(buffer.storage), rows, files


def assert_same(before: Any, after: Any, attempt: str) -> None:
    assert before[:3] == after[:3], f"count, offset or length changed by {attempt}"
    assert_tree_equal(after[3], before[3])
    assert before[4] == after[4], f"files changed by {attempt}"


def fills_fast(backend) -> bool:
    """JAX arrays are never exact for host storages (``jax.Array`` is abstract): they take the detailed path."""
    return backend.simplified_name != "jax"


# ---------------------------------------------------------------------------------------------- same rows


OPERATIONS: list[tuple[str, Any]] = [
    ("extend", range(0, 3)),
    ("append", 3),
    ("extend", range(4, 8)),  # wraps: two segments
    ("append", 8),  # full: replaces the oldest row
    ("extend", range(9, 10)),
    ("extend", range(10, 22)),  # more than the capacity: the last rows
    ("append", 22),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("capacity", [CAPACITY, None])
def test_fast_and_detailed_paths_write_the_same_rows(kind, capacity, backend, tmp_path, buffers, monkeypatch):
    if kind == "memory" and not fills_fast(backend):
        pytest.skip("JAX memory storages write functionally: both buffers take the detailed path (slow to compile)")
    fast = make(kind, backend, capacity, tmp_path / "fast")
    detailed = make(kind, backend, capacity, tmp_path / "detailed")
    buffers += [fast, detailed]
    calls: list[str] = []
    for name in ("append", "extend"):
        generic = getattr(BatchBase, name)
        monkeypatch.setattr(BatchBase, name, lambda self, v, n=name, f=generic: (calls.append(n), f(self, v))[1])
    for operation, ids in OPERATIONS:
        exact = step(backend, ids) if operation == "append" else batch(backend, ids)
        getattr(fast, operation)(exact)
        assert not calls or not fills_fast(backend), f"an exact {operation} took the detailed path"
        getattr(detailed, operation)(widened(backend, exact))
        assert calls, f"a widened {operation} took the fast path"
        calls.clear()
        assert (fast.count, fast.offset) == (detailed.count, detailed.offset)
        assert_tree_equal(snapshot(fast)[3], snapshot(detailed)[3])
    expected = list(range(23)) if capacity is None else list(range(23))[-capacity:]
    assert_tree_equal(fast.get_at(slice(None)), host(batch(backend, expected)))
    if kind == "memmap":
        fast.flush()
        reopened = ReplayBuffer.load_from(tmp_path / "fast", backend=backend)
        buffers.append(reopened)
        assert_tree_equal(reopened.get_at(slice(None)), host(batch(backend, expected)))


@pytest.mark.parametrize("kind", ["memory", "memmap"])
def test_exact_batches_of_any_layout_are_written(kind, backend, tmp_path, buffers):
    """Strided leaves (every other row of a larger batch) and empty batches take the fast path too."""
    buffer = make(kind, backend, CAPACITY, tmp_path / "rb")
    buffers.append(buffer)
    larger = batch(backend, range(10, 16))
    every_other = convert(backend, _map(lambda leaf: np.asarray(host(leaf))[::2], larger))
    buffer.extend(every_other)
    buffer.extend(batch(backend, []))
    assert_tree_equal(buffer.get_at(slice(None)), host(batch(backend, [10, 12, 14])))


def _map(function: Callable[[Any], Any], tree: Any) -> Any:
    if isinstance(tree, dict):
        return {key: _map(function, value) for key, value in tree.items()}
    return function(tree)


# ---------------------------------------------------------------------------------------------- wrong values


def wrong_steps(backend) -> dict[str, tuple[Any, str]]:
    """Values one step away from exact, each with the key path the error must name."""
    good = step(backend, 5)
    obs = good["obs"]
    return {
        "extra key": ({**good, "bogus": good["reward"]}, "bogus"),
        "missing key": ({k: v for k, v in good.items() if k != "done"}, "done"),
        "missing nested key": ({**good, "obs": {k: v for k, v in obs.items() if k != "wide"}}, "wide"),
        "shape": ({**good, "obs": {**obs, "state": backend.asarray(np.zeros(6, np.float32))}}, "obs/state"),
        "float into int": ({**good, "action": backend.asarray(np.zeros(2, np.float32))}, "action"),
        "float into bool": ({**good, "done": 1.0}, "done"),
        "vector for scalar": ({**good, "reward": backend.asarray(np.zeros(1, np.float32))}, "reward"),
        "list for array": ({**good, "action": [1, 2]}, "action"),
        "batched": (batch(backend, [5]), "action"),
        "not a dict": ([good], "value"),
    }


def wrong_batches(backend) -> dict[str, tuple[Any, str]]:
    good = batch(backend, [5, 6, 7])
    obs = good["obs"]
    return {
        "extra key": ({**good, "bogus": good["reward"]}, "bogus"),
        "missing nested key": ({**good, "obs": {k: v for k, v in obs.items() if k != "image"}}, "image"),
        "batch sizes": ({**good, "done": good["done"][:2]}, "done"),
        "unbatched leaf": ({**good, "reward": 1.0}, "reward"),
        "unbatched": (step(backend, 5), "action"),
        "shape": ({**good, "obs": {**obs, "wide": backend.asarray(np.zeros((3, 301), np.float32))}}, "obs/wide"),
        "float into int": ({**good, "action": backend.asarray(np.zeros((3, 2), np.float64))}, "action"),
        "extra axis": ({**good, "done": backend.asarray(np.zeros((3, 1), bool))}, "done"),
        "larger than the capacity": (
            {**batch(backend, range(12)), "reward": backend.asarray(np.zeros(11, np.float32))},
            "reward",
        ),
        "empty with a wrong shape": (
            {**batch(backend, []), "action": backend.asarray(np.zeros((0, 3), np.int32))},
            "action",
        ),
    }


def other_backend_values(backend) -> dict[str, tuple[Any, str, str]]:
    """Exact in every way but the array type: NumPy leaves into a PyTorch or JAX buffer, or the reverse."""
    if backend.simplified_name == "numpy":
        torch = pytest.importorskip("torch")
        as_other: Callable[[Any], Any] = torch.from_numpy
    else:
        as_other = np.asarray
    good, goods = step(backend, 5), batch(backend, [5, 6])
    return {
        "append": (
            {**good, "obs": {**good["obs"], "state": as_other(host(good["obs"]["state"]))}},
            "obs/state",
            "append",
        ),
        "extend": ({**goods, "action": as_other(host(goods["action"]))}, "action", "extend"),
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("capacity", [CAPACITY, None])
def test_wrong_values_get_the_detailed_error_and_change_nothing(kind, capacity, backend, tmp_path, buffers):
    buffer = make(kind, backend, capacity, tmp_path / "rb")
    buffers.append(buffer)
    buffer.extend(batch(backend, range(4)))
    buffer.append(step(backend, 4))
    buffer.append(step(backend, 5))  # a full ring when capacity is 5 (offset 1)
    if kind == "memmap":
        buffer.flush()  # committed: a write would first move the committed range
    before = snapshot(buffer)
    attempts = [(f"append {name}", buffer.append, value, path) for name, (value, path) in wrong_steps(backend).items()]
    attempts += [
        (f"extend {name}", buffer.extend, value, path) for name, (value, path) in wrong_batches(backend).items()
    ]
    attempts += [
        (f"{operation} of another backend", getattr(buffer, operation), value, path)
        for operation, (value, path, _) in other_backend_values(backend).items()
    ]
    for name, write, value, path in attempts:
        with pytest.raises(SpaceMismatchError) as error:
            write(value)
        message = str(error.value)
        assert path in message and "expected" in message and "got" in message, f"{name}: {message}"
        assert_same(before, snapshot(buffer), name)


def test_tensors_that_need_their_own_conversion_take_the_detailed_path(tmp_path, buffers):
    """A tensor requiring grad has no direct NumPy view: the detailed path converts it (same rows)."""
    torch = pytest.importorskip("torch")
    from unibatch.backends import backend_from_name

    backend = backend_from_name("pytorch")
    buffer = make("memory", backend, CAPACITY, tmp_path)
    buffers.append(buffer)
    value = step(backend, 3)
    value["obs"]["state"] = value["obs"]["state"].clone().requires_grad_(True)
    values = batch(backend, [4, 5])
    values["reward"] = values["reward"].clone().requires_grad_(True)
    buffer.append(value)
    buffer.extend(values)
    expected = host(batch(backend, [3, 4, 5]))
    assert_tree_equal(buffer.get_at(slice(None)), expected)
    assert isinstance(buffer.get_at(0)["obs"]["state"], torch.Tensor)


# ---------------------------------------------------------------------------------------------- crash safety


def test_fast_writes_into_committed_rows_commit_first(backend, tmp_path, buffers):
    """DESIGN §5 on the fast path: committed slots leave the committed range before their bytes change."""
    buffer = make(kind="memmap", backend=backend, capacity=8, path=tmp_path / "rb")
    buffers.append(buffer)
    buffer.extend(batch(backend, range(8)))
    buffer.flush()
    for write, survivors in [
        (lambda: buffer.extend(batch(backend, [8, 9, 10])), [3, 4, 5, 6, 7]),  # overwrites rows 0..2
        (lambda: buffer.append(step(backend, 11)), [4, 5, 6, 7]),
    ]:
        write()
        crashed = ReplayBuffer.load_from(tmp_path / "rb", backend=backend)  # what a SIGKILL now leaves
        buffers.append(crashed)
        assert_tree_equal(crashed.get_at(slice(None)), host(batch(backend, survivors)))
