"""ComputeBackend behaviour on every backend: dtypes, devices, RNG, at[].set, trees."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch.backends import backend_from_name, get_backend
from unibatch.errors import UnknownNameError


def test_get_backend_detects_own_arrays(backend):
    x = backend.zeros((2,))
    assert get_backend(x) is backend
    assert backend.is_backendarray(x)


def test_numpy_scalars_are_not_arrays(backend):
    assert not backend.is_backendarray(np.int64(1))
    assert not backend.is_backendarray(3)


def test_get_backend_rejects_non_arrays_and_mixtures():
    with pytest.raises(TypeError, match="expected arrays of numpy, torch or jax, got list"):
        get_backend([1, 2])
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="different backends: numpy, pytorch"):
        get_backend(np.zeros(1), torch.zeros(1))


def test_backend_from_name_and_pickle_identity(backend):
    assert backend_from_name(backend.simplified_name) is backend
    assert pickle.loads(pickle.dumps(backend)) is backend
    with pytest.raises(UnknownNameError, match="unknown backend 'tensorflow'"):
        backend_from_name("tensorflow")


@pytest.mark.parametrize("name", ["bool", "int8", "uint8", "int16", "int32", "float16", "float32"])
def test_dtype_names_round_trip(backend, name):
    dtype = backend.dtype_from_name(name)
    assert backend.dtype_name(dtype) == name
    assert backend.as_dtype(np.dtype(name)) == dtype
    assert backend.as_dtype(name) == dtype


def test_64_bit_dtypes(backend):
    expected = "int32" if backend.simplified_name == "jax" else "int64"
    assert backend.dtype_name(backend.as_dtype("int64")) == expected
    assert backend.dtype_name(backend.default_index_dtype) == expected


def test_dtype_predicates(backend):
    assert backend.dtype_is_real_floating(backend.as_dtype("float32"))
    assert backend.dtype_is_real_integer(backend.as_dtype("uint8"))
    assert not backend.dtype_is_real_integer(backend.as_dtype("bool"))
    assert backend.dtype_is_boolean(backend.default_boolean_dtype)


def test_unknown_dtype_name(backend):
    with pytest.raises(UnknownNameError, match="float128|unknown dtype"):
        backend.dtype_from_name("float128")


def test_device_round_trip(backend):
    x = backend.zeros((1,))
    device = backend.device(x)
    name = backend.serialize_device(device)
    assert name.startswith("cpu")
    assert backend.serialize_device(backend.deserialize_device(name)) == name
    assert backend.serialize_device(None) is None
    assert backend.deserialize_device(None) is None
    with pytest.raises(UnknownNameError):
        backend.deserialize_device("nosuchdevice:7")


def test_to_device_keeps_values(backend):
    x = backend.asarray([1, 2, 3])
    moved = backend.to_device(x, backend.default_device)
    assert to_numpy(moved).tolist() == [1, 2, 3]
    assert backend.to_device(x, None) is x


def test_at_set_in_place_or_functional(backend):
    x = backend.zeros((4,), dtype=backend.as_dtype("int32"))
    y = backend.at(x)[backend.asarray([1, 3])].set(7)
    assert to_numpy(y).tolist() == [0, 7, 0, 7]
    if backend.simplified_name == "jax":
        assert to_numpy(x).tolist() == [0, 0, 0, 0]
    else:
        assert y is x


@pytest.mark.parametrize("seed", [0, 123])
def test_rng_is_functional_and_reproducible(backend, seed):
    def draws(rng):
        rng, a = backend.random_discrete_uniform((50,), 3, 9, rng=rng)
        rng, b = backend.random_uniform((50,), rng=rng, low=-2.0, high=5.0)
        rng, c = backend.random_normal((2000,), rng=rng)
        rng, d = backend.random_permutation(20, rng=rng)
        rng, e = backend.random_exponential((500,), rng=rng)
        return [to_numpy(v) for v in (a, b, c, d, e)]

    first = draws(backend.random_number_generator(seed))
    second = draws(backend.random_number_generator(seed))
    for left, right in zip(first, second):
        np.testing.assert_array_equal(left, right)
    a, b, c, d, e = first
    assert a.min() >= 3 and a.max() < 9 and a.dtype.kind == "i"
    assert b.min() >= -2.0 and b.max() < 5.0
    assert abs(c.mean()) < 0.15 and 0.85 < c.std() < 1.15
    assert sorted(d.tolist()) == list(range(20))
    assert e.min() >= 0 and 0.8 < e.mean() < 1.2


@pytest.mark.parametrize("n", [1, 7, 1_000_003])
def test_random_indices_cover_the_range_uniformly(backend, n):
    rng, indices = backend.random_indices(n, 20_000, rng=backend.random_number_generator(0))
    values = to_numpy(indices)
    assert values.shape == (20_000,) and values.dtype == backend.numpy_dtype(backend.default_index_dtype)
    assert values.min() >= 0 and values.max() < n
    if n == 7:  # every index about equally often (chi-square, 6 degrees of freedom, p > 1e-4)
        counts = np.bincount(values, minlength=7)
        assert ((counts - 20_000 / 7) ** 2 / (20_000 / 7)).sum() < 27.9
    _, again = backend.random_indices(n, 20_000, rng=backend.random_number_generator(0))
    np.testing.assert_array_equal(to_numpy(again), values)


def test_numpy_random_indices_beyond_float_precision_take_exact_integers():
    from unibatch.backends import NumpyComputeBackend as numpy_backend

    _, indices = numpy_backend.random_indices(2**60, 1000, rng=numpy_backend.random_number_generator(0))
    assert indices.dtype == np.int64 and indices.min() >= 0 and indices.max() > 2**55


def test_rng_draws_advance_the_state(backend):
    rng = backend.random_number_generator(1)
    rng, first = backend.random_uniform((8,), rng=rng)
    rng, second = backend.random_uniform((8,), rng=rng)
    assert not np.array_equal(to_numpy(first), to_numpy(second))


def test_unseeded_generators_differ(backend):
    _, a = backend.random_uniform((8,), rng=backend.random_number_generator())
    _, b = backend.random_uniform((8,), rng=backend.random_number_generator())
    assert not np.array_equal(to_numpy(a), to_numpy(b))


def test_namespace_forwarding(backend):
    x = backend.arange(6)
    assert to_numpy(backend.reshape(x, (2, 3))).shape == (2, 3)
    assert to_numpy(backend.concat([x, x])).shape == (12,)


def test_map_fn_over_arrays(backend):
    tree = {"a": backend.ones((2,)), "b": [backend.zeros((1,)), "text"], "c": None}
    result = backend.map_fn_over_arrays(tree, lambda x: x + 1)
    assert to_numpy(result["a"]).tolist() == [2, 2]
    assert to_numpy(result["b"][0]).tolist() == [1]
    assert result["b"][1] == "text" and result["c"] is None


def test_numpy_backend_rejects_other_devices():
    numpy_backend = backend_from_name("numpy")
    with pytest.raises(ValueError, match="cpu"):
        numpy_backend.to_device(np.zeros(1), "cuda:0")
