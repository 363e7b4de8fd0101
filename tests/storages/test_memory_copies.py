"""Copies of memory storages (pickle, deepcopy, PyTorch's pickler for other processes) stay one coherent buffer."""

from __future__ import annotations

import copy
import gc
import pickle

import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch import BoxSpace, DictSpace, ReplayBuffer


def space_of(backend) -> DictSpace:
    """Two packed leaves and one large leaf."""
    return DictSpace(
        backend,
        {
            "a": BoxSpace(backend, -10, 10, "float32", shape=(3,)),
            "b": BoxSpace(backend, -10, 10, "float32"),
            "image": BoxSpace(backend, 0, 255, "uint8", shape=(2000,)),
        },
    )


def row(backend, value: int) -> dict:
    return {
        "a": backend.asarray(np.full(3, value, np.float32)),
        "b": backend.asarray(np.float32(value)),
        "image": backend.asarray(np.full(2000, value, np.uint8)),
    }


def batch(backend, *values: int) -> dict:
    rows = [row(backend, value) for value in values]
    return {key: backend.asarray(np.stack([to_numpy(r[key]) for r in rows])) for key in ("a", "b", "image")}


@pytest.mark.parametrize("copier", [copy.deepcopy, lambda buffer: pickle.loads(pickle.dumps(buffer))])
def test_a_copied_buffer_reads_what_was_written_on_every_path(backend, copier):
    original = ReplayBuffer.create(None, space_of(backend), capacity=8)
    original.extend(batch(backend, 1))
    clone = copier(original)
    clone.append(row(backend, 2))  # one row
    clone.extend(batch(backend, 3, 4))  # a chunk
    clone.set_at(0, row(backend, 5))  # the detailed path
    rows = clone.get_at(backend.asarray(np.arange(4), dtype=backend.default_index_dtype))
    for key in ("a", "b", "image"):
        first = to_numpy(rows[key]).reshape(4, -1)[:, 0]
        assert first.tolist() == [5, 2, 3, 4], key
        assert [float(to_numpy(clone.get_at(i)[key]).reshape(-1)[0]) for i in range(4)] == [5, 2, 3, 4]
    assert len(original) == 1 and float(to_numpy(original.get_at(0)["b"])) == 1.0  # the original is untouched


def test_pytorch_pickling_for_other_processes_keeps_the_buffer_readable():
    from multiprocessing.reduction import ForkingPickler

    from unibatch.backends import backend_from_name

    torch = pytest.importorskip("torch")
    pytest.importorskip("torch.multiprocessing")  # registers PyTorch's reductions, which share tensors' memory

    backend = backend_from_name("pytorch")
    buffer = ReplayBuffer.create(None, space_of(backend), capacity=64)
    buffer.extend(batch(backend, *range(64)))
    ForkingPickler.dumps(buffer)  # what spawn workers and DataLoader workers receive
    garbage = [np.full(64 * 2000, 7, np.uint8) for _ in range(20)]  # reuse any memory freed under the buffer
    read = buffer.get_at(np.arange(64))
    assert int(read["image"][:, 0].sum()) == sum(range(64)) and isinstance(read["image"], torch.Tensor)
    buffer.append(row(backend, 9))
    assert float(buffer.get_at(63)["b"]) == 9.0
    del garbage
    gc.collect()
