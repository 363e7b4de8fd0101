"""A write never changes a value silently (issue 17 §2; DESIGN §3.11, §5).

A dtype fits when NumPy's ``same_kind`` allows the cast *and* the cast keeps every value: a
lossy cast (``300`` into ``uint8``, ``1e300`` into ``float32``, a flat ``2.7`` into an integer
leaf) raises :class:`SpaceMismatchError` naming the key path and the value, and the buffer is
left exactly as it was (contents and length). Bounds are checked when ``check_bounds`` is set.
Every case runs on NumPy, PyTorch and JAX, on memory and memmap buffers, through ``append``,
``extend``, ``set_at`` and the flattened writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch import BinarySpace, BoxSpace, DictSpace, ReplayBuffer
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import batch_space, flatten_data
from unibatch.storages import FlattenedStorage, MemoryStorage

STORAGES = ("memory", "memmap", "flattened")
FLAT_COLUMNS = {"count": 0, "done": 1, "pixels": 2, "reward": 4, "state": 5}
"""Flat layout (sorted keys): count | done | pixels[2] | reward | state[2]; flat dtype float32."""


def space_of(backend) -> DictSpace:
    return DictSpace(
        backend,
        {
            "count": BoxSpace(backend, -5, 5, "int16", shape=()),
            "done": BinarySpace(backend, ()),
            "pixels": BoxSpace(backend, 0, 255, "uint8", shape=(2,)),
            "reward": BoxSpace(backend, -np.inf, np.inf, "float32", shape=()),
            "state": BoxSpace(backend, -1.0, 1.0, "float32", shape=(2,)),
        },
    )


def numpy_rows(n: int, start: int = 0) -> dict[str, np.ndarray]:
    i = np.arange(start, start + n)
    return {
        "count": (i % 5).astype(np.int16),
        "done": i % 2 == 0,
        "pixels": np.stack([i % 256, (3 * i) % 256], axis=1).astype(np.uint8),
        "reward": (i / 4).astype(np.float32),
        "state": np.stack([i / 10 % 1, -(i / 20 % 1)], axis=1).astype(np.float32),
    }


def on(backend, tree: Any) -> Any:
    if isinstance(tree, dict):
        return {key: on(backend, value) for key, value in tree.items()}
    return backend.from_numpy(np.array(tree))  # a contiguous copy, 0-d stays 0-d


def row(tree: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {key: value[i] for key, value in tree.items()}


def make(backend, kind: str, tmp_path) -> ReplayBuffer:
    space = space_of(backend)
    if kind == "memory":
        buffer = ReplayBuffer.create(MemoryStorage, space, capacity=6)
    elif kind == "memmap":
        buffer = ReplayBuffer.create(None, space, capacity=6, cache_path=tmp_path / "buffer")
    else:
        buffer = ReplayBuffer.create(FlattenedStorage, space, MemoryStorage, capacity=6)
    buffer.extend(on(backend, numpy_rows(4)))
    return buffer


def snapshot(buffer: ReplayBuffer) -> tuple[int, dict[str, np.ndarray]]:
    rows = buffer.get_at(slice(None))
    return len(buffer), {key: to_numpy(value).copy() for key, value in rows.items()}


def assert_refused(buffer: ReplayBuffer, write: Callable[[], None], *fragments: str) -> None:
    """``write`` raises SpaceMismatchError naming every fragment, and the buffer is unchanged."""
    before = snapshot(buffer)
    with pytest.raises(SpaceMismatchError) as raised:
        write()
    for fragment in fragments:
        assert fragment in str(raised.value), (fragment, str(raised.value))
    after = snapshot(buffer)
    assert after[0] == before[0]
    for key in before[1]:
        np.testing.assert_array_equal(after[1][key], before[1][key], err_msg=key)


def with_leaf(backend, base: dict[str, np.ndarray], key: str, value: np.ndarray) -> dict[str, Any]:
    changed = dict(base)
    changed[key] = value
    return on(backend, changed)


def flat_rows(backend, n: int = 2, start: int = 10) -> np.ndarray:
    batched = batch_space(space_of(backend), 1)
    return to_numpy(flatten_data(batched, on(backend, numpy_rows(n, start)), start_dim=1)).copy()


# ---------------------------------------------------------------------- lossy casts
@pytest.mark.parametrize("kind", STORAGES)
def test_integer_narrowing_that_wraps_is_refused(backend, kind, tmp_path):
    buffer = make(backend, kind, tmp_path)
    rows = numpy_rows(3, 10)
    wide = rows["pixels"].astype(np.uint16)
    wide[1, 0] = 300  # would be stored as 44
    assert_refused(
        buffer, lambda: buffer.extend(with_leaf(backend, rows, "pixels", wide)), "pixels", "uint8", "uint16", "300"
    )
    assert_refused(buffer, lambda: buffer.append(with_leaf(backend, row(rows, 1), "pixels", wide[1])), "pixels", "300")
    assert_refused(
        buffer, lambda: buffer.set_at(slice(0, 3), with_leaf(backend, rows, "pixels", wide)), "pixels", "300"
    )
    assert_refused(buffer, lambda: buffer.append({**on(backend, row(rows, 0)), "count": 2**40}), "count", "int16")


@pytest.mark.parametrize("kind", STORAGES)
def test_value_preserving_casts_are_still_accepted(backend, kind, tmp_path):
    buffer = make(backend, kind, tmp_path)
    rows = numpy_rows(2, 10)
    rows["pixels"] = np.array([[255, 0], [200, 7]], np.uint16)  # narrower dtype, every value fits
    buffer.extend(with_leaf(backend, rows, "pixels", rows["pixels"]))
    buffer.append({**on(backend, row(rows, 0)), "reward": 3.5, "count": -5})  # Python scalars
    stored = buffer.get_at(slice(-3, None))
    assert to_numpy(stored["pixels"]).tolist() == [[255, 0], [200, 7], [255, 0]]
    assert to_numpy(stored["count"]).tolist()[-1] == -5 and to_numpy(stored["reward"]).tolist()[-1] == 3.5


@pytest.mark.parametrize("kind", STORAGES)
def test_float_overflow_to_inf_is_refused(backend, kind, tmp_path):
    buffer = make(backend, kind, tmp_path)
    rows = numpy_rows(2, 10)
    # A Python float on the compiled fast path of append: float32 would store inf.
    assert_refused(buffer, lambda: buffer.append({**on(backend, row(rows, 0)), "reward": 1e300}), "reward", "inf")
    if backend.simplified_name == "jax":
        return  # JAX runs with 32-bit types: it has no float64 arrays to narrow
    state = rows["state"].astype(np.float64)
    state[1, 1] = 1e300
    assert_refused(
        buffer,
        lambda: buffer.extend(with_leaf(backend, rows, "state", state)),
        "state",
        "float32",
        "float64",
        "1e+300",
    )
    assert_refused(buffer, lambda: buffer.set_at(0, with_leaf(backend, row(rows, 1), "state", state[1])), "state")
    # Infinite and NaN values stay what they are: nothing changes in the cast.
    state[1, 1] = np.inf
    buffer.append(with_leaf(backend, row(rows, 1), "state", state[1]))
    assert to_numpy(buffer.get_at(-1)["state"])[1] == np.inf


@pytest.mark.parametrize("kind", STORAGES)
@pytest.mark.parametrize(
    ("key", "bad", "fragment"),
    [("pixels", -7.0, "uint8"), ("pixels", 1e10, "uint8"), ("count", 2.7, "int16"), ("count", np.nan, "int16")],
    ids=["negative-uint8", "huge-uint8", "fraction-int", "nan-int"],
)
def test_flattened_writes_that_change_a_value_are_refused(backend, kind, tmp_path, key, bad, fragment):
    buffer = make(backend, kind, tmp_path)
    flat = flat_rows(backend)
    flat[1, FLAT_COLUMNS[key]] = bad
    good = backend.from_numpy(flat[0].copy())
    rows = backend.from_numpy(flat)
    assert_refused(buffer, lambda: buffer.append_flattened(backend.from_numpy(flat[1].copy())), key, fragment)
    assert_refused(buffer, lambda: buffer.extend_flattened(rows), key, fragment)
    assert_refused(buffer, lambda: buffer.set_flattened_at(slice(1, 3), rows), key, fragment)
    assert_refused(buffer, lambda: buffer.set_flattened_at(-1, backend.from_numpy(flat[1].copy())), key)
    buffer.append_flattened(good)  # the same row without the bad value is written
    assert to_numpy(buffer.get_flattened_at(-1)).tolist() == flat[0].tolist()


@pytest.mark.parametrize("kind", STORAGES)
def test_flattened_binary_leaves_take_only_0_and_1(backend, kind, tmp_path):
    buffer = make(backend, kind, tmp_path)
    flat = flat_rows(backend, 1)
    flat[0, FLAT_COLUMNS["done"]] = 0.5
    assert_refused(buffer, lambda: buffer.append_flattened(backend.from_numpy(flat[0].copy())), "done", "0 or 1")


# ---------------------------------------------------------------------- bounds
@pytest.mark.parametrize("kind", STORAGES)
@pytest.mark.parametrize("bad", [3.0, np.nan, np.inf, -np.inf], ids=["outside", "nan", "inf", "-inf"])
def test_check_bounds_refuses_values_outside_before_writing(backend, kind, tmp_path, bad):
    buffer = make(backend, kind, tmp_path)
    rows = numpy_rows(3, 10)
    rows["state"][2, 0] = bad
    step = on(backend, row(rows, 2))
    batch = on(backend, rows)
    flat = flat_rows(backend, 3)
    flat[2, FLAT_COLUMNS["state"]] = bad
    buffer.append(step)  # off by default: accepted
    assert buffer.check_bounds is False
    buffer.check_bounds = True
    expected = "nan" if bad != bad else str(bad)
    assert_refused(buffer, lambda: buffer.append(step), "state", "bounds", expected)
    assert_refused(buffer, lambda: buffer.extend(batch), "state", "bounds", "[2, 0]")
    assert_refused(buffer, lambda: buffer.set_at(0, step), "state", "bounds")
    assert_refused(buffer, lambda: buffer.set_at(slice(0, 3), batch), "state", "bounds")
    assert_refused(buffer, lambda: buffer.append_flattened(backend.from_numpy(flat[2].copy())), "state", "bounds")
    assert_refused(buffer, lambda: buffer.extend_flattened(backend.from_numpy(flat)), "state", "bounds")
    assert_refused(buffer, lambda: buffer.set_flattened_at(slice(0, 3), backend.from_numpy(flat)), "state")
    good = on(backend, row(numpy_rows(1, 40), 0))
    assert_refused(buffer, lambda: buffer.append({**good, "reward": float("nan")}), "reward", "nan")  # scalar leaf
    # Values inside the bounds still take every path; an infinite bound admits inf (as BoxSpace.contains).
    inside = numpy_rows(3, 20)
    inside["reward"][0] = np.inf
    buffer.extend(on(backend, inside))
    buffer.append(on(backend, row(inside, 1)))
    buffer.append_flattened(backend.from_numpy(flat_rows(backend, 1, 30)[0]))
    assert len(buffer) == 6 and to_numpy(buffer.get_at(-1)["count"]).item() == 30 % 5


def test_check_bounds_is_kept_by_a_persistent_buffer(backend, tmp_path):
    buffer = make(backend, "memmap", tmp_path)
    buffer.check_bounds = True
    buffer.flush()
    buffer.close()
    again = ReplayBuffer.load_from(tmp_path / "buffer", backend=backend, read_only=False)
    assert again.check_bounds is True
    rows = numpy_rows(1, 10)
    rows["pixels"][0, 0] = 0
    rows["count"][0] = 4
    rows["state"][0, 1] = -1.5
    assert_refused(again, lambda: again.append(on(backend, row(rows, 0))), "state", "-1.5")
    again.check_bounds = False
    again.flush()
    again.close()
    assert ReplayBuffer.load_from(tmp_path / "buffer", backend=backend).check_bounds is False


def test_trajectory_buffers_check_values_and_bounds(backend, tmp_path):
    from unibatch import TrajectoryReplayBuffer

    buffer = TrajectoryReplayBuffer.create(
        space_of(backend), None, step_data_capacity=6, cache_path=tmp_path / "trajectory"
    )
    rows = numpy_rows(3, 10)
    buffer.extend(on(backend, rows))

    def contents(batch: TrajectoryReplayBuffer) -> tuple[int, list[Any]]:
        data = batch.get_at(slice(None))["step_data"]
        return len(batch), [to_numpy(data[key]).tolist() for key in sorted(data)]

    before = contents(buffer)
    wide = rows["pixels"].astype(np.uint16)
    wide[0, 1] = 300
    with pytest.raises(SpaceMismatchError, match="pixels.*300"):
        buffer.extend(with_leaf(backend, rows, "pixels", wide))
    assert contents(buffer) == before
    outside = numpy_rows(1, 10)
    outside["state"][0, 0] = 2.0
    buffer.append(on(backend, row(outside, 0)))  # bounds are off by default
    buffer.check_bounds = True
    buffer.flush()
    buffer.close()
    buffer = TrajectoryReplayBuffer.load_from(tmp_path / "trajectory", backend=backend)
    assert buffer.check_bounds is True
    before = contents(buffer)
    for write in (
        lambda: buffer.append(on(backend, row(outside, 0))),
        lambda: buffer.extend(on(backend, outside)),
        lambda: buffer.set_at(0, {"step_data": on(backend, row(outside, 0))}),
    ):
        with pytest.raises(SpaceMismatchError, match="state.*bounds"):
            write()
        assert contents(buffer) == before
    buffer.close()
