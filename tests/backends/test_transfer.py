"""Conversion between every pair of backends: values, dtypes, aliasing rules, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch.backends import convert, convert_tree, get_backend


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"])
def test_values_and_dtypes_survive_every_pair(backend, other_backend, dtype):
    values = np.arange(-3, 9).reshape(3, 4) % (2 if dtype == "bool" else 100)
    if dtype.startswith("uint"):
        values = np.abs(values)
    source = backend.asarray(values.astype(dtype), dtype=dtype)
    result = convert(source, other_backend)
    assert get_backend(result) is other_backend
    expected_dtype = other_backend.dtype_name(other_backend.as_dtype(backend.dtype_name(source.dtype)))
    assert other_backend.dtype_name(result.dtype) == expected_dtype
    np.testing.assert_array_equal(to_numpy(result), to_numpy(source))


def test_bfloat16_crosses_backends():
    torch = pytest.importorskip("torch")
    pytest.importorskip("jax")
    from unibatch.backends import backend_from_name

    numpy_backend, jax_backend = backend_from_name("numpy"), backend_from_name("jax")
    tensor = torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16)
    as_numpy = convert(tensor, numpy_backend)
    assert as_numpy.dtype.name == "bfloat16"
    back = convert(as_numpy, backend_from_name("pytorch"))
    assert back.dtype == torch.bfloat16 and torch.equal(back, tensor)
    as_jax = convert(tensor, jax_backend)
    assert str(as_jax.dtype) == "bfloat16"
    assert np.asarray(as_jax, dtype=np.float32).tolist() == [1.5, -2.0, 3.25]


def test_numpy_to_torch_shares_writable_memory():
    torch = pytest.importorskip("torch")
    from unibatch.backends import backend_from_name

    array = np.zeros(3, np.float32)
    tensor = convert(array, backend_from_name("pytorch"))
    array[0] = 5
    assert float(tensor[0]) == 5.0
    assert isinstance(tensor, torch.Tensor)


def test_read_only_numpy_is_copied_for_torch():
    pytest.importorskip("torch")
    from unibatch.backends import backend_from_name

    array = np.zeros(3, np.float32)
    array.flags.writeable = False
    tensor = convert(array, backend_from_name("pytorch"))
    tensor[0] = 1.0  # must not write into the protected memory
    assert array[0] == 0.0


def test_jax_results_never_alias_mutable_sources():
    torch = pytest.importorskip("torch")
    pytest.importorskip("jax")
    from unibatch.backends import backend_from_name

    jax_backend, torch_backend = backend_from_name("jax"), backend_from_name("pytorch")
    tensor = torch.arange(4, dtype=torch.float32)
    as_jax = convert(tensor, jax_backend)
    tensor[0] = 100.0
    assert float(as_jax[0]) == 0.0
    array = np.arange(4, dtype=np.float32)
    as_jax = convert(array, jax_backend)
    array[0] = 100.0
    assert float(as_jax[0]) == 0.0
    back = convert(as_jax, torch_backend)
    back[1] = -1.0  # a writable tensor must own its memory
    assert float(as_jax[1]) == 1.0


def test_convert_tree_keeps_non_array_leaves(backend, other_backend):
    tree = {"x": backend.ones((2,)), "meta": ("name", 3, None), "nested": [backend.zeros((1,))]}
    result = convert_tree(tree, other_backend)
    assert get_backend(result["x"]) is other_backend
    assert result["meta"] == ("name", 3, None)
    assert get_backend(result["nested"][0]) is other_backend
