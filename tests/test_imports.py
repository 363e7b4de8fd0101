"""``import unibatch`` must stay light: no backend or format library is loaded."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "jax", "jaxlib", "h5py", "zarr", "pyarrow", "av", "PIL", "fsspec", "gymnasium", "ray", "tqdm")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(output.split())


def test_import_unibatch_loads_no_heavy_library():
    loaded = _loaded_after("import unibatch, unibatch.spaces, unibatch.transformations, unibatch.backends")
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_numpy_work_loads_no_heavy_library():
    statement = (
        "import numpy as np, unibatch; from unibatch.spaces import *; "
        "b = unibatch.NumpyComputeBackend; s = BoxSpace(b, 0, 1, 'float32', shape=(2,)); "
        "flatten_data(s, s.sample(b.random_number_generator(0))[1]); unibatch.backends.get_backend(np.zeros(1))"
    )
    loaded = _loaded_after(statement)
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_lazy_backend_attribute_loads_only_its_library():
    loaded = _loaded_after("import unibatch; unibatch.PyTorchComputeBackend")
    assert "torch" in loaded
    assert "jax" not in loaded


def test_unknown_attribute_raises_attribute_error():
    import pytest

    import unibatch

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        unibatch.Nope  # noqa: B018
