"""``StorageTests``: the conformance suite every :class:`~unibatch.storages.SpaceStorage` passes.

Subclass it and implement :meth:`StorageTests.make_storage`::

    class TestMyStorage(StorageTests):
        def make_storage(self, backend, space, capacity, path):
            return MyStorage.create(space, capacity=capacity, cache_path=path)

Set ``persistent = True`` when ``dumps`` + ``load_from`` must round-trip, ``growable = False``
when the storage has a fixed capacity only, and ``backends`` to the backend names it supports.
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

    def load_storage(self, storage: SpaceStorage, path: Path, space: Space, read_only: bool) -> SpaceStorage:
        """Reopen what ``storage.dumps(path)`` wrote."""
        return type(storage).load_from(path, space, capacity=storage.capacity, read_only=read_only)

    @pytest.fixture
    def space(self, backend: ComputeBackend) -> Space:
        if backend.simplified_name not in self.backends:
            pytest.skip(f"{type(self).__name__} does not support {backend.simplified_name}")
        return storage_space(backend, self.text)

    def samples(self, backend: ComputeBackend, start: int, stop: int) -> list[Any]:
        return [storage_sample(backend, i, self.text) for i in range(start, stop)]

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
        space = storage_space(backend, text=False)
        storage = self.make_storage(backend, space, 4, tmp_path / "s")
        samples = [storage_sample(backend, i, text=False) for i in range(4)]
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
