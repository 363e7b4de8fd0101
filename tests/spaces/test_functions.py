"""The space function families on hand-checked examples: batching, flattening, validation."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch import BatchedSpace, BinarySpace, BoxSpace, DictSpace, TextSpace, TupleSpace
from unibatch.errors import SpaceMismatchError, UnsupportedSpaceError
from unibatch.spaces import (
    batch_size,
    batch_size_data,
    batch_space,
    check_data,
    concatenate,
    flat_dim,
    flat_dtype,
    flatten_data,
    flatten_space,
    get_at,
    iterate,
    set_at,
    unflatten_data,
)


def robot_space(backend):
    return DictSpace(
        backend,
        {
            "obs": {
                "state": BoxSpace(backend, -10.0, 10.0, "float32", shape=(3,)),
                "image": BoxSpace(backend, 0, 255, "uint8", shape=(2, 2)),
            },
            "done": BinarySpace(backend, ()),
            "action": BoxSpace(backend, -1.0, 1.0, "float32", shape=(2,)),
        },
    )


def robot_sample(backend, offset=0):
    return {
        "obs": {
            "state": backend.asarray([1.0, 2.0, 3.0], dtype="float32") + offset,
            "image": backend.asarray([[1, 2], [3, 4]], dtype="uint8"),
        },
        "done": backend.asarray(True),
        "action": backend.asarray([0.5, -0.5], dtype="float32"),
    }


# ---------------------------------------------------------------------- batching
def test_batch_space_shapes(backend):
    space = robot_space(backend)
    batched = batch_space(space, 4)
    assert batched["obs"]["image"].shape == (4, 2, 2)
    assert batched["done"].shape == (4,)
    assert batch_size(batched) == 4 and batch_size(space) == 2  # the space's own first axis
    assert batch_space(batched, 3)["action"].shape == (3, 4, 2)
    text = batch_space(TextSpace(backend, 3), 5)
    assert isinstance(text, BatchedSpace) and text.batch_shape == (5,)
    assert batch_space(text, 2).batch_shape == (2, 5)


def test_batch_space_keeps_bounds_abbreviated(backend):
    image = BoxSpace(backend, 0, 255, "uint8", shape=(3, 84, 84))
    batched = batch_space(image, 50_000)
    assert batched.host_bounds()[0].shape == (1, 1, 1, 1)


def test_concatenate_get_at_iterate(backend):
    space = robot_space(backend)
    batch = concatenate(space, [robot_sample(backend, i) for i in range(3)])
    assert batch_space(space, 3).contains(batch)
    assert batch_size_data(batch) == 3
    second = get_at(space, batch, 1)
    np.testing.assert_array_equal(to_numpy(second["obs"]["state"]), [2.0, 3.0, 4.0])
    states = [to_numpy(x["obs"]["state"])[0] for x in iterate(space, batch)]
    assert states == [1.0, 2.0, 3.0]
    sub = get_at(space, batch, backend.asarray([2, 0]))
    np.testing.assert_array_equal(to_numpy(sub["obs"]["state"])[:, 0], [3.0, 1.0])


def test_concatenate_rejects_mismatches(backend):
    space = robot_space(backend)
    bad = robot_sample(backend)
    del bad["done"]
    with pytest.raises(SpaceMismatchError, match="missing|keys"):
        concatenate(space, [robot_sample(backend), bad])
    box = BoxSpace(backend, 0, 1, "float32", shape=(2,))
    with pytest.raises(SpaceMismatchError, match=r"expected items of shape \(2,\), got \(3,\)"):
        concatenate(box, [backend.zeros((2,)), backend.zeros((3,))])


def test_concatenate_empty_and_texts(backend):
    box = BoxSpace(backend, 0, 1, "float32", shape=(2,))
    assert tuple(concatenate(box, []).shape) == (0, 2)
    texts = concatenate(TextSpace(backend, 3), ["a", "bc"])
    assert texts.dtype == object and texts.tolist() == ["a", "bc"]


def test_set_at_in_place_or_functional(backend):
    space = robot_space(backend)
    batch = concatenate(space, [robot_sample(backend, i) for i in range(3)])
    updated = set_at(space, batch, 1, robot_sample(backend, 10))
    np.testing.assert_array_equal(to_numpy(updated["obs"]["state"])[:, 0], [1.0, 11.0, 3.0])
    zeroed = set_at(space, updated, backend.asarray([0, 2]), 0)
    np.testing.assert_array_equal(to_numpy(zeroed["action"])[[0, 2]], np.zeros((2, 2)))


def test_tuple_batching(backend):
    space = TupleSpace(backend, [BinarySpace(backend, ()), BoxSpace(backend, 0, 3, "int32", shape=())])
    batch = concatenate(space, [(backend.asarray(True), backend.asarray(1, dtype="int32"))] * 2)
    assert batch_space(space, 2).contains(batch)
    assert [int(to_numpy(v[1])) for v in iterate(space, batch)] == [1, 1]


# ---------------------------------------------------------------------- flattening
def test_flat_layout_follows_sorted_keys(backend):
    space = robot_space(backend)
    flat = flatten_data(space, robot_sample(backend))
    # action(2) | done(1) | obs/image(4) | obs/state(3)
    np.testing.assert_array_equal(to_numpy(flat), [0.5, -0.5, 1, 1, 2, 3, 4, 1, 2, 3])
    assert flat_dim(space) == 10
    assert backend.dtype_name(flat.dtype) == "float32"


def test_flat_space_bounds_follow_the_same_order(backend):
    flat = flatten_space(robot_space(backend))
    np.testing.assert_array_equal(to_numpy(flat.low), [-1, -1, 0, 0, 0, 0, 0, -10, -10, -10])
    np.testing.assert_array_equal(to_numpy(flat.high), [1, 1, 1, 255, 255, 255, 255, 10, 10, 10])
    space = robot_space(backend)
    space["aaa"] = BoxSpace(backend, 7, 8, "float32", shape=())  # inserted later, sorts first
    assert float(to_numpy(flatten_space(space).low)[0]) == 7
    assert float(to_numpy(flatten_data(space, {**robot_sample(backend), "aaa": backend.asarray(7.5)}))[0]) == 7.5


@pytest.mark.parametrize(
    ("dtypes", "expected"),
    [
        (["uint8", "float32", "bool"], "float32"),
        (["float16", "int8"], "float32"),
        (["float64", "float32"], "float64"),
        (["int8", "uint8"], "int16"),
        (["int32", "bool"], "int32"),
        (["bool", "bool"], "uint8"),
    ],
)
def test_flat_dtype_rule_is_the_same_on_every_backend(backend, dtypes, expected):
    leaves = {}
    for i, name in enumerate(dtypes):
        leaves[f"k{i}"] = BinarySpace(backend, (1,)) if name == "bool" else BoxSpace(backend, 0, 1, name, shape=(1,))
    got = backend.dtype_name(flat_dtype(DictSpace(backend, leaves)))
    if backend.simplified_name == "jax" and expected == "float64":
        expected = "float32"
    assert got == expected


def test_flatten_batch_with_start_dim(backend):
    space = robot_space(backend)
    batch = concatenate(space, [robot_sample(backend, i) for i in range(4)])
    flat = flatten_data(batch_space(space, 1), batch, start_dim=1)
    assert tuple(flat.shape) == (4, 10)
    back = unflatten_data(batch_space(space, 1), flat, start_dim=1)
    assert batch_space(space, 4).contains(back)
    assert backend.dtype_name(back["obs"]["image"].dtype) == "uint8"
    assert backend.dtype_name(back["done"].dtype) == "bool"
    np.testing.assert_array_equal(to_numpy(back["obs"]["state"]), to_numpy(batch["obs"]["state"]))


def test_flatten_texts_with_charset(backend):
    space = DictSpace(
        backend, {"name": TextSpace(backend, 4, charset="abc"), "x": BoxSpace(backend, 0, 9, "int32", shape=(1,))}
    )
    value = {"name": "cab", "x": backend.asarray([7], dtype="int32")}
    flat = flatten_data(space, value)
    np.testing.assert_array_equal(to_numpy(flat), [2, 0, 1, 3, 7])
    assert unflatten_data(space, flat)["name"] == "cab"
    batch = concatenate(space, [value, {"name": "", "x": backend.asarray([1], dtype="int32")}])
    flat_batch = flatten_data(batch_space(space, 1), batch, start_dim=1)
    assert unflatten_data(batch_space(space, 1), flat_batch, start_dim=1)["name"].tolist() == ["cab", ""]


def test_flatten_errors_name_the_problem(backend):
    space = robot_space(backend)
    wrong_shape = robot_sample(backend)
    wrong_shape["obs"]["state"] = backend.zeros((4,))
    with pytest.raises(SpaceMismatchError, match=r"obs/state: expected shape \(batch..., 3\).*got \(4,\)"):
        flatten_data(space, wrong_shape)
    unknown = {**robot_sample(backend), "extra": backend.zeros((1,))}
    with pytest.raises(SpaceMismatchError, match=r"unknown \['extra'\]"):
        flatten_data(space, unknown)
    with pytest.raises(UnsupportedSpaceError, match="cannot flatten"):
        flatten_data(TextSpace(backend, 3), "abc")
    assert flat_dim(TextSpace(backend, 3)) is None
    with pytest.raises(SpaceMismatchError, match=r"expected shape \(batch..., 10\)"):
        unflatten_data(space, backend.zeros((9,)))
    with pytest.raises(SpaceMismatchError, match="batch shape"):
        mixed = concatenate(space, [robot_sample(backend)] * 2)
        mixed["action"] = backend.zeros((3, 2))
        flatten_data(batch_space(space, 1), mixed, start_dim=1)


# ---------------------------------------------------------------------- validation
def test_check_data_accepts_and_reports(backend):
    space = robot_space(backend)
    assert check_data(space, robot_sample(backend)) == ()
    batch = concatenate(space, [robot_sample(backend)] * 3)
    assert check_data(space, batch, batch_ndim=1) == (3,)
    bad = robot_sample(backend)
    bad["obs"]["image"] = backend.zeros((2, 2), dtype=backend.as_dtype("float32"))
    with pytest.raises(SpaceMismatchError, match=r"obs/image: expected dtype uint8 .*got float32"):
        check_data(space, bad)
    bad = robot_sample(backend)
    bad["done"] = np.zeros(()) if backend.simplified_name != "numpy" else [True]
    with pytest.raises(SpaceMismatchError, match=r"done: expected a \w+ array"):
        check_data(space, bad)
    with pytest.raises(SpaceMismatchError, match=r"value: expected keys"):
        check_data(space, {"obs": robot_sample(backend)["obs"]})


def test_check_data_dtype_rule(backend):
    box = BoxSpace(backend, -10, 10, "float32", shape=(2,))
    wide = "float32" if backend.simplified_name == "jax" else "float64"
    check_data(box, backend.zeros((2,), dtype=backend.as_dtype(wide)))
    check_data(box, backend.zeros((2,), dtype=backend.as_dtype("int32")))
    integers = BoxSpace(backend, 0, 10, "int32", shape=())
    check_data(integers, 3)
    with pytest.raises(SpaceMismatchError, match="expected dtype int32"):
        check_data(integers, backend.asarray(1.5, dtype="float32"))
    with pytest.raises(SpaceMismatchError, match="expected a"):
        check_data(integers, 1.5)


def test_check_data_bounds_are_opt_in(backend):
    box = BoxSpace(backend, 0, 1, "float32", shape=(2,))
    outside = backend.asarray([0.5, 3.0], dtype="float32")
    check_data(box, outside)
    with pytest.raises(SpaceMismatchError, match="outside the bounds"):
        check_data(box, outside, bounds=True)


def test_check_data_texts(backend):
    space = TextSpace(backend, 3, charset="ab")
    check_data(space, "ab")
    assert check_data(space, ["a", "b"], batch_ndim=1) == (2,)
    with pytest.raises(SpaceMismatchError, match="expected a value of TextSpace"):
        check_data(space, "abc")


def test_check_data_follows_a_dict_space_that_changes(backend):
    space = robot_space(backend)
    sample = robot_sample(backend)
    check_data(space, sample)  # builds and caches the validation plan
    space["extra"] = BinarySpace(backend, ())
    with pytest.raises(SpaceMismatchError, match=r"missing \['extra'\]"):
        check_data(space, sample)
    check_data(space, {**sample, "extra": backend.asarray(True)})
    wrong = {**sample, "extra": backend.asarray(True), "action": backend.zeros((3,))}
    with pytest.raises(SpaceMismatchError, match="action: expected shape"):
        check_data(space, wrong)
