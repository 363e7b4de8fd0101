"""``StorageTests``: the conformance suite every :class:`~unibatch.storages.SpaceStorage` passes.

Subclass it and implement :meth:`StorageTests.make_storage`::

    class TestMyStorage(StorageTests):
        def make_storage(self, backend, space, capacity, path):
            return MyStorage.create(space, capacity=capacity, cache_path=path)

Set ``persistent = True`` when ``dumps`` + ``load_from`` must round-trip, ``growable = False``
when the storage has a fixed capacity only, and ``backends`` to the backend names it supports.
A storage limited to some spaces (images only, say) overrides :meth:`StorageTests.make_space`
and :meth:`StorageTests.make_sample`. When :meth:`StorageTests.buffer_storage` names the class
and its ``create`` keywords, the suite also runs the storage under ``ReplayBuffer`` (fixed ring,
growable, ``dumps``/``load_from``), ``TrajectoryReplayBuffer``, and a writer process with a
reader that must only ever see committed rows.
The test module must provide a ``backend`` fixture (numpy, torch, jax).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from unibatch import BinarySpace, BoxSpace, DictSpace, TextSpace
from unibatch.backends import ComputeBackend
from unibatch.errors import ReadOnlyError
from unibatch.spaces import Space, concatenate
from unibatch.storages import SpaceStorage
from unibatch.testing.conformance import assert_tree_equal, stack_samples


def storage_space(backend: ComputeBackend, text: bool = True) -> Space:
    """A nested dict space with every leaf kind a storage must handle."""
    spaces: dict[str, Any] = {
        "obs": {
            "image": BoxSpace(backend, 0, 255, "uint8", shape=(3, 4, 4)),
            "state": BoxSpace(backend, -10.0, 10.0, "float32", shape=(5,)),
        },
        "action": BoxSpace(backend, -1, 1, "int32", shape=(2,)),
        "done": BinarySpace(backend, ()),
    }
    if text:
        spaces["note"] = TextSpace(backend, 6, charset="abcdef")
    return DictSpace(backend, spaces)


def storage_sample(backend: ComputeBackend, i: int, text: bool = True) -> dict[str, Any]:
    """A deterministic value of :func:`storage_space` number ``i``."""
    sample: dict[str, Any] = {
        "obs": {
            "image": backend.asarray(np.full((3, 4, 4), i % 256, np.uint8)),
            "state": backend.asarray(np.linspace(-1, 1, 5, dtype=np.float32) * (i % 7)),
        },
        "action": backend.asarray(np.array([i % 3 - 1, (i + 1) % 3 - 1], np.int32)),
        "done": backend.asarray(bool(i % 2)),
    }
    if text:
        sample["note"] = "abcdef"[: i % 7]
    return sample


class StorageTests:
    """Conformance tests for a storage; implement :meth:`make_storage`."""

    persistent: ClassVar[bool] = True
    growable: ClassVar[bool] = True
    text: ClassVar[bool] = True
    backends: ClassVar[tuple[str, ...]] = ("numpy", "pytorch", "jax")

    def make_storage(self, backend: ComputeBackend, space: Space, capacity: int | None, path: Path) -> SpaceStorage:
        raise NotImplementedError("subclasses create the storage under test")

    def make_space(self, backend: ComputeBackend, text: bool) -> Space:
        """The space the suite stores (``text=False``: without text leaves, for flattening)."""
        return storage_space(backend, text)

    def make_sample(self, backend: ComputeBackend, i: int, text: bool) -> Any:
        """A deterministic value of :meth:`make_space` number ``i`` (distinct for distinct ``i``)."""
        return storage_sample(backend, i, text)

    def buffer_storage(self) -> tuple[type[SpaceStorage], dict[str, Any]] | None:
        """The class and ``create`` keywords to build buffers on; None skips the buffer tests."""
        return None

    def load_storage(self, storage: SpaceStorage, path: Path, space: Space, read_only: bool) -> SpaceStorage:
        """Reopen what ``storage.dumps(path)`` wrote."""
        return type(storage).load_from(path, space, capacity=storage.capacity, read_only=read_only)

    @pytest.fixture
    def space(self, backend: ComputeBackend) -> Space:
        if backend.simplified_name not in self.backends:
            pytest.skip(f"{type(self).__name__} does not support {backend.simplified_name}")
        return self.make_space(backend, self.text)

    def samples(self, backend: ComputeBackend, start: int, stop: int) -> list[Any]:
        return [self.make_sample(backend, i, self.text) for i in range(start, stop)]

    def fill(self, storage: SpaceStorage, backend: ComputeBackend, n: int) -> list[Any]:
        samples = self.samples(backend, 0, n)
        if storage.capacity is None:
            storage.extend_length(n)
        storage.set(slice(0, n), concatenate(storage.single_instance_space, samples))
        return samples

    # ------------------------------------------------------------------ tests
    def test_fixed_capacity_round_trip(self, backend: ComputeBackend, space: Space, tmp_path: Path) -> None:
        storage = self.make_storage(backend, space, 6, tmp_path / "s")
        assert storage.capacity == 6 and len(storage) == 6 and not storage.is_growable
        samples = self.fill(storage, backend, 6)
        assert_tree_equal(storage.get(3), samples[3])
        order = backend.asarray([5, 0, 5, 2], dtype=backend.default_index_dtype)
        assert_tree_equal(storage.get(order), stack_samples([samples[i] for i in (5, 0, 5, 2)]))
        assert_tree_equal(storage.get(slice(1, 4)), stack_samples(samples[1:4]))
        storage.set(2, samples[5])
        assert_tree_equal(storage.get(2), samples[5])
        storage.close()

    def test_flattened_access(self, backend: ComputeBackend, tmp_path: Path) -> None:
        if backend.simplified_name not in self.backends:
            pytest.skip("backend not supported")
        space = self.make_space(backend, text=False)
        storage = self.make_storage(backend, space, 4, tmp_path / "s")
        samples = [self.make_sample(backend, i, text=False) for i in range(4)]
        storage.set(slice(0, 4), concatenate(space, samples))
        index = backend.asarray([3, 1], dtype=backend.default_index_dtype)
        flat = storage.get_flattened(index)
        assert tuple(flat.shape)[0] == 2
        storage.set_flattened(index, flat[::-1] if backend.simplified_name != "pytorch" else flat.flip(0))
        assert_tree_equal(storage.get(1), samples[3])
        storage.close()

    def test_growable(self, backend: ComputeBackend, space: Space, tmp_path: Path) -> None:
        if not self.growable:
            pytest.skip("fixed capacity only")
        storage = self.make_storage(backend, space, None, tmp_path / "s")
        assert storage.is_growable and len(storage) == 0
        samples = self.samples(backend, 0, 40)
        for start in range(0, 40, 8):
            storage.extend_length(8)
            storage.set(slice(start, start + 8), concatenate(space, samples[start : start + 8]))
        assert len(storage) == 40
        assert_tree_equal(storage.get(39), samples[39])
        assert_tree_equal(storage.get(slice(0, 40)), stack_samples(samples))
        storage.shrink_length(10)
        assert len(storage) == 30
        storage.clear()
        assert len(storage) == 0
        storage.clear()  # an empty growable storage clears without error
        storage.close()

    def test_persistence(self, backend: ComputeBackend, space: Space, tmp_path: Path) -> None:
        if not self.persistent:
            pytest.skip("not persistent")
        for capacity in (5, None) if self.growable else (5,):
            path = tmp_path / f"s-{capacity}"
            storage = self.make_storage(backend, space, capacity, path)
            samples = self.fill(storage, backend, 5)
            storage.dumps(path)
            copy_path = tmp_path / f"copy-{capacity}"
            storage.dumps(copy_path)
            storage.close()
            for where in (path, copy_path):
                loaded = self.load_storage(storage, where, space, read_only=True)
                assert len(loaded) == 5 and loaded.capacity == capacity
                assert_tree_equal(loaded.get(slice(0, 5)), stack_samples(samples))
                with pytest.raises(ReadOnlyError):
                    loaded.set(0, samples[0])
                loaded.close()
            writable = self.load_storage(storage, path, space, read_only=False)
            writable.set(0, samples[4])
            assert_tree_equal(writable.get(0), samples[4])
            writable.close()

    def test_pickles_for_worker_processes(self, backend: ComputeBackend, space: Space, tmp_path: Path) -> None:
        storage = self.make_storage(backend, space, 3, tmp_path / "s")
        if not storage.is_multiprocessing_safe:
            pytest.skip("not multiprocessing safe")
        samples = self.fill(storage, backend, 3)
        clone = pickle.loads(pickle.dumps(storage))
        assert_tree_equal(clone.get(slice(0, 3)), stack_samples(samples))
        storage.set(1, samples[0])  # the clone sees writes: the data is shared, not copied
        assert_tree_equal(clone.get(1), samples[0])
        clone.close()
        storage.close()

    def test_close_is_idempotent(self, backend: ComputeBackend, space: Space, tmp_path: Path) -> None:
        storage = self.make_storage(backend, space, 2, tmp_path / "s")
        storage.close()
        storage.close()

    # ------------------------------------------------------------------ under the buffers
    def _buffer_storage(self, backend: ComputeBackend) -> tuple[type[SpaceStorage], dict[str, Any]]:
        if backend.simplified_name not in self.backends:
            pytest.skip(f"{type(self).__name__} does not support {backend.simplified_name}")
        found = self.buffer_storage()
        if found is None:
            pytest.skip("no buffer storage declared")
        return found

    def test_ring_buffer_wraps_and_reloads(self, backend: ComputeBackend, space: Space, tmp_path: Path) -> None:
        from unibatch.buffers import ReplayBuffer

        cls, kwargs = self._buffer_storage(backend)
        samples = self.samples(backend, 0, 12)
        path = tmp_path / "ring"
        with ReplayBuffer.create(cls, space, cache_path=path, capacity=5, **kwargs) as buffer:
            buffer.extend(concatenate(space, samples[:7]))  # wraps: rows 2..6 remain
            buffer.append(samples[7])
            assert len(buffer) == 5
            assert_tree_equal(buffer.get_at(slice(0, 5)), stack_samples(samples[3:8]))
            buffer.flush()
        with ReplayBuffer.load_from(path, backend=backend) as loaded:
            assert len(loaded) == 5
            assert_tree_equal(loaded.get_at(slice(0, 5)), stack_samples(samples[3:8]))
            order = backend.asarray([4, 0, 4, 2], dtype=backend.default_index_dtype)
            assert_tree_equal(loaded.get_at(order), stack_samples([samples[i] for i in (7, 3, 7, 5)]))
        with ReplayBuffer.load_from(path, backend=backend, read_only=False) as writable:
            writable.extend(concatenate(space, samples[8:12]))
            writable.flush()
            writable.dumps(tmp_path / "copy")
        for where in (path, tmp_path / "copy"):
            with ReplayBuffer.load_from(where, backend=backend) as loaded:
                assert_tree_equal(loaded.get_at(slice(0, 5)), stack_samples(samples[7:12]))

    def test_growable_buffer_reloads(self, backend: ComputeBackend, space: Space, tmp_path: Path) -> None:
        from unibatch.buffers import ReplayBuffer

        if not self.growable:
            pytest.skip("fixed capacity only")
        cls, kwargs = self._buffer_storage(backend)
        samples = self.samples(backend, 0, 23)
        path = tmp_path / "grow"
        with ReplayBuffer.create(cls, space, cache_path=path, capacity=None, **kwargs) as buffer:
            for start in range(0, 20, 5):
                buffer.extend(concatenate(space, samples[start : start + 5]))
            buffer.append(samples[20])
            buffer.flush()
            buffer.append(samples[21])  # not committed: a reload does not see it
            with ReplayBuffer.load_from(path, backend=backend) as reader:
                assert len(reader) == 21
                assert_tree_equal(reader.get_at(slice(0, 21)), stack_samples(samples[:21]))
        with ReplayBuffer.load_from(path, backend=backend, read_only=False) as writable:
            assert len(writable) == 21
            writable.append(samples[22])
            writable.flush()
            assert_tree_equal(writable.get_at(-1), samples[22])
        with ReplayBuffer.load_from(path, backend=backend) as loaded:
            assert len(loaded) == 22
            assert_tree_equal(loaded.get_at(slice(19, 22)), stack_samples([samples[19], samples[20], samples[22]]))

    def test_trajectory_buffer_step_storage(self, backend: ComputeBackend, space: Space, tmp_path: Path) -> None:
        from unibatch.buffers import TrajectoryReplayBuffer

        cls, kwargs = self._buffer_storage(backend)
        samples = self.samples(backend, 0, 9)
        path = tmp_path / "traj"
        buffer = TrajectoryReplayBuffer.create(space, cls, step_data_capacity=None, cache_path=path, **kwargs)
        for episode in ((0, 4), (4, 6), (6, 9)):
            for i in range(*episode):
                buffer.append(samples[i])
            buffer.mark_episode_end()
        buffer.close()
        loaded = TrajectoryReplayBuffer.load_from(path, backend=backend, read_only=True)
        data, metadata = loaded.get_at_with_metadata(slice(0, 9))
        assert_tree_equal(data["step_data"], stack_samples(samples))
        assert metadata is not None
        assert np.asarray(metadata["episode_ids"]).tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2]
        loaded.close()

    @pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
    def test_reader_sees_only_committed_rows(self, backend: ComputeBackend, tmp_path: Path) -> None:
        """A writer process appends and flushes in steps; every reopen shows a committed prefix."""
        import multiprocessing

        from unibatch.buffers import ReplayBuffer

        if backend.simplified_name != "numpy":
            pytest.skip("one backend is enough for a process test")
        cls, kwargs = self._buffer_storage(backend)
        if not cls.is_persistent:
            pytest.skip("snapshots of a memory storage are replaced whole; readers reopen after a flush")
        space = self.make_space(backend, self.text)
        path = tmp_path / "shared"
        ReplayBuffer.create(cls, space, cache_path=path, capacity=None if self.growable else 48, **kwargs).close()
        context = multiprocessing.get_context("fork")
        writer = context.Process(target=_append_and_flush, args=(self, path, 48, 6))
        writer.start()
        try:
            seen = 0
            while writer.is_alive() or seen < 48:
                with ReplayBuffer.load_from(path, backend=backend) as reader:
                    count = len(reader)
                    assert count % 6 == 0 and count >= seen, f"saw {count} rows after {seen}"
                    if count:
                        expected = stack_samples(self.samples(backend, 0, count))
                        assert_tree_equal(reader.get_at(slice(0, count)), expected)
                    seen = count
                if not writer.is_alive() and seen < 48:
                    assert writer.exitcode == 0, f"writer exited with {writer.exitcode}"
        finally:
            writer.join(timeout=60)
        assert writer.exitcode == 0 and seen == 48


def _append_and_flush(suite: StorageTests, path: Path, rows: int, every: int) -> None:
    """The writer of ``test_reader_sees_only_committed_rows``: rows one by one, a flush per ``every``."""
    from unibatch.backends import backend_from_name
    from unibatch.buffers import ReplayBuffer

    backend = backend_from_name("numpy")
    with ReplayBuffer.load_from(path, backend=backend, read_only=False) as buffer:
        for i in range(rows):
            buffer.append(suite.make_sample(backend, i, suite.text))
            if (i + 1) % every == 0:
                buffer.flush()
