"""construct_space_from_data and Gymnasium conversion."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch import BinarySpace, BoxSpace, DictSpace, TextSpace, TupleSpace
from unibatch.errors import UnsupportedSpaceError
from unibatch.spaces import construct_space_from_data, from_gymnasium_space, to_gymnasium_space


def test_construct_space_from_data(backend):
    sample = {
        "image": backend.zeros((3, 4), dtype=backend.as_dtype("uint8")),
        "done": backend.asarray(False),
        "pair": (backend.ones((2,)), "hello"),
    }
    space = construct_space_from_data(sample)
    assert space.backend is backend
    assert space.contains(sample)
    assert isinstance(space["done"], BinarySpace)
    assert space["image"] == BoxSpace(backend, 0, 255, "uint8", shape=(3, 4))
    assert isinstance(space["pair"], TupleSpace) and isinstance(space["pair"][1], TextSpace)


def test_construct_from_python_scalars(backend):
    space = construct_space_from_data({"x": 1.5, "n": 3, "b": True}, backend)
    assert space.backend is backend
    assert isinstance(space["b"], BinarySpace) and space["n"].shape == ()
    with pytest.raises(UnsupportedSpaceError, match="cannot infer a space from object"):
        construct_space_from_data(object(), backend)


def test_gymnasium_round_trip(backend):
    gymnasium = pytest.importorskip("gymnasium")
    spaces = gymnasium.spaces
    gym_space = spaces.Dict(
        {
            "pos": spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32),
            "grid": spaces.MultiBinary([2, 2]),
            "choice": spaces.Discrete(4, start=1),
            "keys": spaces.MultiDiscrete([3, 5]),
            "both": spaces.Tuple([spaces.Discrete(2), spaces.Text(4, charset="xyz")]),
        }
    )
    space = from_gymnasium_space(gym_space, backend)
    assert isinstance(space, DictSpace) and space.backend is backend
    choice = space["choice"]
    assert choice.shape == () and int(to_numpy(choice.low)) == 1 and int(to_numpy(choice.high)) == 4
    np.testing.assert_array_equal(to_numpy(space["keys"].high), [2, 4])
    assert isinstance(space["grid"], BinarySpace) and space["grid"].shape == (2, 2)
    assert space["both"][1] == TextSpace(backend, 4, min_length=1, charset="xyz")
    back = to_gymnasium_space(space)
    assert back["pos"] == gym_space["pos"]
    assert back["grid"].shape == (2, 2)
    _, sample = space.sample(backend.random_number_generator(0))
    assert space.contains(sample)


def test_gymnasium_unsupported():
    gymnasium = pytest.importorskip("gymnasium")
    with pytest.raises(UnsupportedSpaceError, match="Sequence"):
        from_gymnasium_space(gymnasium.spaces.Sequence(gymnasium.spaces.Discrete(2)))
