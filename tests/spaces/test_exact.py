"""The compiled exact-match leaf extractor behind the per-step append path."""

from __future__ import annotations

import numpy as np
import pytest

from unibatch import BinarySpace, BoxSpace, DictSpace, ReplayBuffer, TextSpace, TupleSpace
from unibatch.errors import SpaceMismatchError
from unibatch.spaces._exact import exact_leaves
from unibatch.testing.conformance import assert_tree_equal


def step_space(backend):
    return DictSpace(
        backend,
        {
            "obs": {"state": BoxSpace(backend, -1, 1, "float32", shape=(3,))},
            "pair": TupleSpace(backend, [BoxSpace(backend, 0, 9, "int32", shape=(2,)), BinarySpace(backend, ())]),
            "reward": BoxSpace(backend, -1, 1, "float32", shape=()),
        },
    )


def step(backend, i):
    return {
        "obs": {"state": backend.asarray(np.full(3, i / 10, np.float32))},
        "pair": (backend.asarray(np.array([i, i + 1], np.int32)), bool(i % 2)),
        "reward": float(i),
    }


def test_exact_values_give_their_leaves_in_flat_order(backend):
    extract = exact_leaves(step_space(backend))
    if backend.simplified_name == "jax":
        assert extract(step(backend, 1)) is None  # JAX storages write functionally: the detailed path
        return
    leaves = extract(step(backend, 1))
    assert leaves is not None and len(leaves) == 4
    assert leaves[2] is True and leaves[3] == 1.0


@pytest.mark.parametrize(
    "change",
    [
        lambda v: {**v, "extra": 1},
        lambda v: {k: x for k, x in v.items() if k != "reward"},
        lambda v: {**v, "obs": {"state": np.zeros(4, np.float32)}},
        lambda v: {**v, "obs": {"state": np.zeros(3, np.float64)}},
        lambda v: {**v, "pair": list(v["pair"])},
        lambda v: {**v, "reward": 1},
        lambda v: {**v, "reward": np.float64(1.0)},
        lambda v: [v],
    ],
    ids=[
        "extra key",
        "missing key",
        "shape",
        "dtype",
        "list for tuple",
        "int for float",
        "other numpy scalar",
        "not a dict",
    ],
)
def test_anything_not_exact_goes_to_the_detailed_check(change):
    from unibatch.backends import backend_from_name

    backend = backend_from_name("numpy")
    assert exact_leaves(step_space(backend))(change(step(backend, 1))) is None


def test_text_spaces_have_no_extractor(backend):
    assert exact_leaves(DictSpace(backend, {"t": TextSpace(backend, 4)})) is None


def test_extractor_follows_a_changed_dict_space(backend):
    space = step_space(backend)
    before = exact_leaves(space)
    space["more"] = BoxSpace(backend, 0, 1, "float32", shape=(1,))
    assert exact_leaves(space) is not before


def test_append_fast_and_detailed_paths_write_the_same_rows(backend):
    space = step_space(backend)
    buffer = ReplayBuffer.create(None, space, capacity=3)
    value = step(backend, 2)
    widened = {**value, "obs": {"state": backend.asarray(np.full(3, 0.2, np.float64))}}  # same kind, not exact
    buffer.append(value)
    buffer.append(widened)
    assert_tree_equal(buffer.get_at(0), buffer.get_at(1))
    with pytest.raises(SpaceMismatchError, match="obs/state"):
        buffer.append({**value, "obs": {"state": backend.asarray(np.zeros(4, np.float32))}})
    assert len(buffer) == 2  # the failed append left the buffer as it was


def test_numpy_scalars_of_the_leaf_dtype_are_exact_on_numpy():
    """Indexing a NumPy batch gives NumPy scalars (``batch["reward"][i]``): they take the fast path."""
    from unibatch.backends import backend_from_name

    backend = backend_from_name("numpy")
    value = {**step(backend, 3), "reward": np.float32(0.5), "pair": (np.array([3, 4], np.int32), np.bool_(True))}
    leaves = exact_leaves(step_space(backend))(value)
    assert leaves is not None and leaves[2] is value["pair"][1] and leaves[3] is value["reward"]
    buffer = ReplayBuffer.create(None, step_space(backend), capacity=2)
    buffer.append(value)
    assert_tree_equal(
        buffer[0], {**value, "reward": np.asarray(0.5, np.float32), "pair": (value["pair"][0], np.asarray(True))}
    )
