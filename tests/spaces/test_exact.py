"""The compiled exact-match leaf extractor behind the per-step append path."""

from __future__ import annotations

import numpy as np
import pytest

from unibatch import BinarySpace, BoxSpace, DictSpace, ReplayBuffer, TextSpace, TupleSpace
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import concatenate
from unibatch.spaces._exact import exact_batch_leaves, exact_leaves
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


# ---------------------------------------------------------------------------------------------- batches


def step_batch(backend, ids):
    return concatenate(step_space(backend), [step(backend, i) for i in ids])


def test_exact_batches_give_their_size_and_leaves_in_flat_order(backend):
    extract = exact_batch_leaves(step_space(backend))
    batch = step_batch(backend, range(3))
    if backend.simplified_name == "jax":
        assert extract(batch) is None  # as for single values: the detailed path
        return
    n, leaves = extract(batch)
    assert n == 3 and [tuple(leaf.shape) for leaf in leaves] == [(3, 3), (3, 2), (3,), (3,)]
    assert leaves[0] is batch["obs"]["state"] and leaves[3] is batch["reward"]
    assert exact_batch_leaves(step_space(backend))(step_batch(backend, []))[0] == 0


@pytest.mark.parametrize(
    "change",
    [
        lambda v: {**v, "extra": v["reward"]},
        lambda v: {k: x for k, x in v.items() if k != "obs"},
        lambda v: {**v, "obs": {"state": np.zeros((3, 4), np.float32)}},
        lambda v: {**v, "obs": {"state": np.zeros((3, 3), np.float64)}},
        lambda v: {**v, "reward": v["reward"][:2]},
        lambda v: {**v, "reward": np.float32(1.0)},
        lambda v: {**v, "reward": 1.0},
        lambda v: {**v, "pair": list(v["pair"])},
        lambda v: {**v, "obs": {"state": v["obs"]["state"].tolist()}},
        lambda v: v["reward"],
    ],
    ids=[
        "extra key",
        "missing key",
        "shape",
        "dtype",
        "batch sizes",
        "numpy scalar leaf",
        "python scalar leaf",
        "list for tuple",
        "list for array",
        "not a dict",
    ],
)
def test_any_batch_not_exact_goes_to_the_detailed_check(change):
    from unibatch.backends import backend_from_name

    backend = backend_from_name("numpy")
    assert exact_batch_leaves(step_space(backend))(change(step_batch(backend, range(3)))) is None


# ---------------------------------------------------------------------------------------------- host leaves


def test_host_leaves_of_numpy_values_are_the_values_themselves():
    from unibatch.backends import backend_from_name

    backend = backend_from_name("numpy")
    value, batch = step(backend, 2), step_batch(backend, range(2))
    assert exact_leaves(step_space(backend), host=True)(value) == exact_leaves(step_space(backend))(value)
    host_batch = exact_batch_leaves(step_space(backend), host=True)(batch)
    assert all(a is b for a, b in zip(host_batch[1], exact_batch_leaves(step_space(backend))(batch)[1], strict=True))


def test_host_leaves_of_tensors_are_numpy_views_and_python_scalars():
    torch = pytest.importorskip("torch")
    from unibatch.backends import backend_from_name

    backend = backend_from_name("pytorch")
    space = step_space(backend)
    value = {**step(backend, 1), "reward": torch.tensor(0.5)}
    state, first, second, reward = exact_leaves(space, host=True)(value)
    assert type(state) is np.ndarray and np.shares_memory(state, value["obs"]["state"].numpy())
    assert type(first) is np.ndarray and first.dtype == np.int32
    assert second is True and type(reward) is float and reward == 0.5
    n, leaves = exact_batch_leaves(space, host=True)(step_batch(backend, range(4)))
    assert n == 4 and all(type(leaf) is np.ndarray for leaf in leaves)
    assert [leaf.dtype for leaf in leaves] == [np.float32, np.int32, np.bool_, np.float32]


@pytest.mark.parametrize("batched", [False, True], ids=["value", "batch"])
def test_tensors_without_a_direct_host_view_go_to_the_detailed_check(batched):
    """A tensor requiring grad (or on a device) is valid but not exact for a host storage."""
    pytest.importorskip("torch")
    from unibatch.backends import backend_from_name

    backend = backend_from_name("pytorch")
    value = step_batch(backend, range(2)) if batched else step(backend, 1)
    value["obs"]["state"] = value["obs"]["state"].clone().requires_grad_(True)
    extract = (exact_batch_leaves if batched else exact_leaves)(step_space(backend), host=True)
    assert extract(value) is None
    assert (exact_batch_leaves if batched else exact_leaves)(step_space(backend))(value) is not None


def test_spaces_with_compiled_extractors_pickle(backend):
    """Compiled code does not pickle: a space sent to a worker process compiles its extractors again."""
    import pickle

    space = step_space(backend)
    for host in (False, True):
        exact_leaves(space, host=host)
        exact_batch_leaves(space, host=host)
    clone = pickle.loads(pickle.dumps(space))
    assert clone == space
    value = step(backend, 1)
    assert (exact_leaves(clone)(value) is None) == (exact_leaves(space)(value) is None)
