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
Every storage also runs the index contract of DESIGN.md §3 through its public ``get``/``set``
(negative indices, steps, masks, empty indices, typed errors, caller arrays left as they were,
``set`` then ``get`` surviving ``dumps``), :class:`~unibatch.errors.ClosedError` after ``close``,
and ``create`` refusing bad capacities and non-empty directories without leaving anything behind.
The test module must provide a ``backend`` fixture (numpy, torch, jax).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import optree
import pytest

from unibatch import BinarySpace, BoxSpace, DictSpace, TextSpace
from unibatch.backends import ComputeBackend, get_backend_or_none
from unibatch.errors import ClosedError, IndexOutOfRangeError, InvalidIndexError, ReadOnlyError
from unibatch.spaces import Space, concatenate
from unibatch.storages import SpaceStorage
from unibatch.storages._leaves import split_value
from unibatch.testing.conformance import assert_tree_equal, host, stack_samples


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

    # ------------------------------------------------------------------ index forms (DESIGN.md §3)
    def test_index_forms_read(self, backend: ComputeBackend, space: Space, tmp_path: Path) -> None:
        """Every index form means the same on every storage; the caller's index arrays stay as they were."""
        storage = self.make_storage(backend, space, 5, tmp_path / "s")
        samples = self.fill(storage, backend, 5)
        expected = np.arange(5)
        forms: list[Any] = [
            slice(None, None, 2),
            slice(None, None, -1),
            slice(4, 0, -2),
            slice(-3, None),
            slice(1, 99),
            Ellipsis,
            [-1, 0, -5, 4],
            np.array([True, False, True, True, False]),
            backend.asarray(np.array([False, True, False, False, True])),
            backend.asarray(np.array([-2, 3, -2]), dtype=backend.default_index_dtype),
        ]
        for form in forms:
            rows = expected[form if not _is_backend_array(form) else _to_numpy(form)].tolist()
            assert_tree_equal(storage.get(form), stack_samples([samples[i] for i in rows]))
        for single in (-1, -5, np.int64(-2), backend.asarray(-1, dtype=backend.default_index_dtype)):
            assert_tree_equal(storage.get(single), samples[int(_to_numpy(single)) % 5])
        for caller in (
            np.array([-1, 0, -5]),
            backend.asarray(np.array([-1, 0, -5]), dtype=backend.default_index_dtype),
        ):
            before = np.array(_to_numpy(caller), copy=True)
            assert_tree_equal(storage.get(caller), stack_samples([samples[4], samples[0], samples[0]]))
            np.testing.assert_array_equal(_to_numpy(caller), before)  # never rewritten in place
        empties: list[Any] = [[], np.array([], dtype=np.int64), slice(2, 2), np.zeros(5, dtype=bool)]
        for empty in empties:
            _assert_empty_batch(storage.get(empty))
        storage.close()

    def test_index_errors(self, backend: ComputeBackend, space: Space, tmp_path: Path) -> None:
        """Out of range, wrong-length masks and unaccepted forms raise typed errors, for get and set."""
        storage = self.make_storage(backend, space, 5, tmp_path / "s")
        samples = self.fill(storage, backend, 5)
        value = samples[1]
        for bad in (
            5,
            -6,
            [0, 5],
            np.array([-6]),
            backend.asarray(np.array([1, 7]), dtype=backend.default_index_dtype),
        ):
            with pytest.raises(IndexOutOfRangeError, match="out of range for length 5"):
                storage.get(bad)
        with pytest.raises(IndexOutOfRangeError, match="index 5 is out of range for length 5"):
            storage.set(5, value)
        with pytest.raises(IndexOutOfRangeError, match="index -6 is out of range for length 5"):
            storage.set(-6, value)
        for mask in (np.ones(4, dtype=bool), np.ones(6, dtype=bool)):
            with pytest.raises(IndexOutOfRangeError, match="mask must have the length 5"):
                storage.get(mask)
            with pytest.raises(IndexOutOfRangeError, match="mask must have the length 5"):
                storage.set(mask, concatenate(space, [value] * int(mask.sum())))
        for bad in (True, 1.5, slice(0, 5, 0), np.zeros((1, 1), dtype=np.int64), np.array([0.5])):
            with pytest.raises(InvalidIndexError):
                storage.get(bad)
        with pytest.raises(InvalidIndexError, match="step cannot be zero"):
            storage.set(slice(0, 5, 0), concatenate(space, samples))
        assert_tree_equal(storage.get(slice(0, 5)), stack_samples(samples))  # the failed writes changed nothing
        storage.close()

    def test_index_forms_write(self, backend: ComputeBackend, space: Space, tmp_path: Path) -> None:
        """``set`` then ``get`` round-trips with every index form, also after ``dumps`` and a reload."""
        path = tmp_path / "s"
        storage = self.make_storage(backend, space, 5, path)
        rows = self.fill(storage, backend, 5)
        new = self.samples(backend, 10, 15)
        storage.set(-1, new[0])
        rows[4] = new[0]
        steps = slice(None, None, -2)  # rows 4, 2, 0
        storage.set(steps, concatenate(space, new[1:4]))
        rows[4], rows[2], rows[0] = new[1], new[2], new[3]
        mask = np.array([False, True, False, True, False])
        caller = np.array([-4, -2])  # rows 1 and 3, as the mask
        before = caller.copy()
        storage.set(caller, concatenate(space, new[3:5]))
        np.testing.assert_array_equal(caller, before)
        rows[1], rows[3] = new[3], new[4]
        assert_tree_equal(storage.get(mask), stack_samples([rows[1], rows[3]]))
        storage.set(backend.asarray(mask), storage.get(np.array([3, 1])))  # swap rows 1 and 3
        rows[1], rows[3] = rows[3], rows[1]
        empty = storage.get(slice(0, 0))
        nothings: list[Any] = [slice(3, 3), [], np.zeros(5, dtype=bool)]
        for nothing in nothings:
            storage.set(nothing, empty)
        assert_tree_equal(storage.get(slice(None)), stack_samples(rows))
        assert_tree_equal(storage.get(-1), rows[4])
        if self.persistent:
            storage.dumps(path)
            storage.close()
            with self.load_storage(storage, path, space, read_only=True) as loaded:
                assert len(loaded) == 5
                assert_tree_equal(loaded.get(slice(None)), stack_samples(rows))
        storage.close()

    def test_flattened_negative_indices(self, backend: ComputeBackend, tmp_path: Path) -> None:
        if backend.simplified_name not in self.backends:
            pytest.skip("backend not supported")
        space = self.make_space(backend, text=False)
        storage = self.make_storage(backend, space, 3, tmp_path / "s")
        samples = [self.make_sample(backend, i, text=False) for i in range(3)]
        storage.set(slice(0, 3), concatenate(space, samples))
        last = storage.get_flattened(2)
        assert_tree_equal(storage.get_flattened(-1), last)
        assert_tree_equal(storage.get_flattened([-1, 0]), storage.get_flattened(np.array([2, 0])))
        with pytest.raises(IndexOutOfRangeError, match="index 3 is out of range for length 3"):
            storage.get_flattened(3)
        storage.set_flattened(-3, last)
        assert_tree_equal(storage.get(0), samples[2])
        storage.close()

    # ------------------------------------------------------------------ lifecycle and create
    def test_closed_storage_refuses_reads_and_writes(
        self, backend: ComputeBackend, space: Space, tmp_path: Path
    ) -> None:
        storage = self.make_storage(backend, space, 2, tmp_path / "s")
        sample = self.make_sample(backend, 1, self.text)
        storage.set(0, sample)
        storage.close()
        with pytest.raises(ClosedError, match="closed"):
            storage.set(0, sample)
        with pytest.raises(ClosedError, match="closed"):
            storage.set_leaves(0, split_value(space, sample))
        with pytest.raises(ClosedError, match="closed"):
            storage.get(0)
        if self.growable:
            growable = self.make_storage(backend, space, None, tmp_path / "g")
            growable.close()
            with pytest.raises(ClosedError, match="closed"):
                growable.extend_length(1)

    @pytest.mark.parametrize("capacity", [True, 2.5, 0, -1, "3"])
    def test_create_refuses_bad_capacity_and_leaves_nothing(
        self, backend: ComputeBackend, space: Space, tmp_path: Path, capacity: Any
    ) -> None:
        path = tmp_path / "new" / "s"
        with pytest.raises(ValueError, match="capacity must be a positive int or None"):
            self.make_storage(backend, space, capacity, path)
        assert not (tmp_path / "new").exists()
        self.make_storage(backend, space, 2, path).close()  # the corrected retry works

    def test_create_refuses_a_non_empty_directory(self, backend: ComputeBackend, space: Space, tmp_path: Path) -> None:
        path = tmp_path / "s"
        self.make_storage(backend, space, 2, path).close()
        if not path.exists():
            pytest.skip("the storage does not live at the path it is given")
        listing = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
        with pytest.raises(FileExistsError, match=str(path)):
            self.make_storage(backend, space, 2, path)
        assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == listing  # untouched
        if path.is_dir():
            foreign = tmp_path / "foreign"
            foreign.mkdir()
            (foreign / "notes.txt").write_text("mine")
            with pytest.raises(FileExistsError, match=str(foreign)):
                self.make_storage(backend, space, 2, foreign)
            assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
            empty = tmp_path / "empty"
            empty.mkdir()
            self.make_storage(backend, space, 2, empty).close()  # an empty directory is accepted

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


def _is_backend_array(value: Any) -> bool:
    return get_backend_or_none(value) is not None and not isinstance(value, np.ndarray)


def _to_numpy(value: Any) -> Any:
    backend = get_backend_or_none(value)
    return value if backend is None else np.asarray(backend.to_numpy(value))


def _assert_empty_batch(batch: Any) -> None:
    """Every leaf of ``batch`` holds zero rows."""
    leaves = optree.tree_leaves(host(batch), none_is_leaf=True)
    assert leaves and all(len(leaf) == 0 for leaf in leaves), f"expected an empty batch, got {batch!r}"


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
