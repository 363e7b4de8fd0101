"""Where gathers write: large results on recycled buffers that stay valid while anything views them."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from unibatch.storages import _outputs
from unibatch.storages._outputs import RecyclingPool, take_rows

CLASS = 512


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


@pytest.fixture
def pool(monkeypatch):
    """A fresh pool used by ``take_rows`` for results of at least 1 KiB, in 512-byte size classes."""
    fresh = RecyclingPool()
    monkeypatch.setattr(_outputs, "RECYCLED", fresh)
    monkeypatch.setattr(_outputs, "RECYCLE_MIN_BYTES", 1024)
    monkeypatch.setattr(_outputs, "SIZE_CLASS_BYTES", CLASS)
    return fresh


def test_a_result_is_recycled_only_once_nothing_views_it(pool):
    source = np.arange(64 * 100, dtype=np.float32).reshape(64, 100)
    index = np.array([5, 1, 63, 5])
    first = take_rows(source, index)
    assert first.tolist() == source[index].tolist() and first.flags.writeable
    second = take_rows(source, index)
    assert address(second) != address(first)  # both alive: distinct buffers
    column = first[:, 3]  # a view of the first result keeps its buffer
    first_address = address(first)
    del first
    gc.collect()
    third = take_rows(source, index[::-1])
    assert address(third) != first_address and column.tolist() == [503.0, 103.0, 6303.0, 503.0]
    del column
    gc.collect()
    assert pool.idle_bytes == 4 * CLASS  # 1,600 bytes in the 2,048-byte class
    larger = np.array([5, 1, 63, 5, 2])  # 2,000 bytes: the same class reuses the buffer
    fourth = take_rows(source, larger)
    assert address(fourth) == first_address and fourth.tolist() == source[larger].tolist()
    assert pool.idle_bytes == 0


def test_a_tensor_made_from_a_result_keeps_its_buffer(pool):
    torch = pytest.importorskip("torch")
    source = np.ones((32, 300), np.uint8)
    result = take_rows(source, np.arange(8))
    tensor, result_address = torch.from_numpy(result)[2:], address(result)
    del result
    gc.collect()
    assert address(take_rows(source, np.arange(8))) != result_address
    assert int(tensor.sum()) == 6 * 300


def test_small_object_and_outside_results_take_the_plain_path(pool):
    assert take_rows(np.ones((10, 10), np.uint8), np.arange(3)).base is None  # below the size: a plain take
    texts = np.array(["a", "b"], dtype=object)
    assert take_rows(texts, np.array([1])).tolist() == ["b"]
    rows = np.arange(40 * 64, dtype=np.int64).reshape(40, 64)
    assert take_rows(rows, np.full(4, -1)).tolist() == rows[[-1] * 4].tolist()  # NumPy's wrap-around, as below
    with pytest.raises(IndexError):
        take_rows(rows, np.array([0, 40, 1, 2]))


def test_idle_buffers_are_bounded_and_the_steady_size_keeps_its_place(pool, monkeypatch):
    monkeypatch.setattr(_outputs, "IDLE_BUFFERS_PER_SIZE", 2)
    monkeypatch.setattr(_outputs, "IDLE_BYTES_MIN", 8 * CLASS)
    source = np.zeros((64, CLASS), np.uint8)
    results = [take_rows(source, np.arange(4)) for _ in range(5)]
    del results
    gc.collect()
    assert pool.idle_bytes == 2 * 4 * CLASS  # two of the five kept
    for rows in range(2, 40):  # many other sizes: the oldest idle buffers make room
        take_rows(source, np.arange(rows))  # dropped at once: reference counting releases it
        assert pool.idle_bytes <= max(8 * CLASS, 3 * max(rows, 4) * CLASS)  # the limit follows the largest
    steady = take_rows(source, np.arange(4))
    steady_address = address(steady)
    del steady
    gc.collect()
    assert address(take_rows(source, np.arange(4))) == steady_address
    pool.clear()
    assert pool.idle_bytes == 0
