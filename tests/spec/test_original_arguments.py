"""Arguments of the original at the page's version that the page does not show, and what they do."""

from __future__ import annotations

import threading

import pytest
from tests.buffers.test_trajectory import episode_space, make, record, step_space
from tests.conftest import to_numpy

from unibatch import CombinedBatch, TrajectoryReplayBuffer
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import BoxSpace, DictSpace
from unibatch.testing.memory_batch import InMemoryBatch


class MeetingBatch(InMemoryBatch):
    """Reads wait at a barrier: they return only while another read runs at the same time."""

    def __init__(self, barrier: threading.Barrier, start: int) -> None:
        source = InMemoryBatch.from_range(3, start=start)
        super().__init__(source.single_space, source.data)
        self.barrier = barrier
        self.threads: list[str] = []

    def _get(self, index, with_metadata):
        self.threads.append(threading.current_thread().name)
        self.barrier.wait(timeout=5)
        return super()._get(index, with_metadata)


def test_combined_batch_reads_its_children_in_parallel_threads_with_use_thread_pool():
    barrier = threading.Barrier(2)
    first, second = MeetingBatch(barrier, 0), MeetingBatch(barrier, 10)
    combined = CombinedBatch([first, second], use_thread_pool=True)
    data, metadata = combined.get_at_with_metadata([4, 0, 5, 1])  # both children at once, or the barrier breaks
    assert data["x"].tolist() == [11, 0, 12, 1] and metadata["batch_index"].tolist() == [1, 0, 1, 0]
    assert combined.get_flattened_at([3, 2]).tolist() == [[10], [2]]
    assert all(name.startswith("CombinedBatch") for name in first.threads + second.threads)
    sequential = CombinedBatch([InMemoryBatch.from_range(3), InMemoryBatch.from_range(3, start=10)])
    assert sequential.use_thread_pool is False and sequential.get_at([4, 0])["x"].tolist() == [11, 0]


def test_trajectory_load_from_reuses_given_spaces_and_refuses_other_ones(backend, tmp_path):
    buffer = make(backend, tmp_path)
    record(buffer, backend, 2)
    buffer.flush()
    steps, episodes = step_space(backend), episode_space(backend)
    loaded = TrajectoryReplayBuffer.load_from(
        tmp_path / "trajectory",
        backend=backend,
        step_data_single_instance_space=steps,
        episode_data_single_instance_space=episodes,
    )
    assert loaded.step_data_buffer.single_space is steps
    assert loaded.episode_data_buffer.single_space is episodes
    assert to_numpy(loaded.get_at(4)["step_data"]["obs"]).tolist() == [1, 1]
    loaded.close()
    other = DictSpace(backend, {"task": BoxSpace(backend, 0, 5, "int32")})
    with pytest.raises(SpaceMismatchError, match="not the given"):
        TrajectoryReplayBuffer.load_from(
            tmp_path / "trajectory", backend=backend, read_only=True, episode_data_single_instance_space=other
        )
    buffer.close()


def test_parquet_build_space_from_parquet_file_on_empty_filled_and_foreign_data(tmp_path):
    pytest.importorskip("pyarrow")
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from unibatch.backends import backend_from_name
    from unibatch.spaces import BinarySpace, TextSpace
    from unibatch.storages import ParquetStorage
    from unibatch.storages.parquet import infer_parquet_space

    numpy = backend_from_name("numpy")
    space = DictSpace(
        numpy,
        {"a": BoxSpace(numpy, 0, 1, "float32", shape=(2,)), "f": BinarySpace(numpy, (3,)), "t": TextSpace(numpy, 5)},
    )
    storage = ParquetStorage.create(space, capacity=None, cache_path=tmp_path / "p")
    storage.close()  # empty: no part file, only parquet.json
    count, capacity, inferred = ParquetStorage.build_space_from_parquet_file(tmp_path / "p")
    assert (count, capacity) == (0, 0) and inferred == infer_parquet_space(tmp_path / "p", numpy)
    assert inferred["a"] == BoxSpace(numpy, -np.inf, np.inf, "float32", shape=(2,))
    assert inferred["f"] == BinarySpace(numpy, (3,)) and inferred["t"].max_length == 5
    with pytest.raises(SpaceMismatchError, match="no column \\['b'\\]"):
        infer_parquet_space(tmp_path / "p", numpy, columns=["a", "b"])

    storage = ParquetStorage.load_from(tmp_path / "p", space, read_only=False)
    storage.extend_length(3)
    storage.flush()
    storage.close()
    assert ParquetStorage.build_space_from_parquet_file(tmp_path / "p")[:2] == (3, 3)

    pq.write_table(pa.table({"x": np.arange(4, dtype=np.int64)}), tmp_path / "foreign.parquet")
    count, capacity, inferred = ParquetStorage.build_space_from_parquet_file(tmp_path / "foreign.parquet")
    assert (count, capacity) == (4, 4) and list(inferred.keys()) == ["x"]
    (tmp_path / "nothing").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no .parquet file"):
        ParquetStorage.build_space_from_parquet_file(tmp_path / "nothing")
