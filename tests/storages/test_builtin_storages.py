"""The storage conformance suite on the memory and memmap storages, plus what is specific to them."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from unibatch.errors import FormatVersionError, SpaceMismatchError, UnknownNameError, UnsupportedOperationError
from unibatch.spaces import concatenate
from unibatch.storages import MemmapStorage, MemoryStorage, storage_class
from unibatch.testing.conformance import assert_tree_equal
from unibatch.testing.storage_conformance import StorageTests, storage_sample, storage_space


class TestMemoryStorage(StorageTests):
    def make_storage(self, backend, space, capacity, path):
        return MemoryStorage.create(space, capacity=capacity, initial_rows=4)

    def buffer_storage(self):
        return MemoryStorage, {}


class TestSharedMemoryStorage(StorageTests):
    def make_storage(self, backend, space, capacity, path):
        return MemoryStorage.create(space, capacity=capacity, multiprocessing=True, initial_rows=4)

    def load_storage(self, storage, path, space, read_only):
        return MemmapStorage.load_from(path, space, capacity=storage.capacity, read_only=read_only)


class TestMemmapStorage(StorageTests):
    def make_storage(self, backend, space, capacity, path):
        return MemmapStorage.create(space, capacity=capacity, cache_path=path, initial_rows=4)

    def buffer_storage(self):
        return MemmapStorage, {"initial_rows": 4}


def test_registry_names():
    assert storage_class("memmap") is MemmapStorage
    assert storage_class("memory") is MemoryStorage
    with pytest.raises(UnknownNameError, match="unknown storage 'tape'"):
        storage_class("tape")


def test_memmap_layout_and_errors(backend, tmp_path):
    space = storage_space(backend)
    storage = MemmapStorage.create(space, capacity=3, cache_path=tmp_path / "s")
    sidecar = json.loads((tmp_path / "s" / "memmap.json").read_text())
    assert sidecar["format_version"] == 2 and sidecar["capacity"] == 3
    assert [leaf["name"] for leaf in sidecar["leaves"]] == ["action", "done", "note", "obs/image", "obs/state"]
    # Small leaves share packed rows (int32[2] at 0, float32[5] at 8, bool at 28, uint8[3,4,4] at 29; 80 bytes);
    # the text leaf keeps its own file.
    assert sidecar["packed"] == {"leaves": [0, 1, 3, 4], "offsets": [0, 28, 29, 8], "itemsize": 80}
    assert (tmp_path / "s" / "packed.bin").stat().st_size == 3 * 80
    assert sorted(p.name for p in (tmp_path / "s").glob("*.bin")) == ["leaf_002.bin", "packed.bin"]
    storage.close()
    with pytest.raises(FileExistsError, match="not empty"):
        MemmapStorage.create(space, capacity=3, cache_path=tmp_path / "s")
    with pytest.raises(UnsupportedOperationError, match="needs a cache_path"):
        MemmapStorage.create(space, capacity=3)
    with pytest.raises(SpaceMismatchError, match="stores leaves"):
        MemmapStorage.load_from(tmp_path / "s", storage_space(backend, text=False))
    with pytest.raises(FileNotFoundError, match="memmap.json is missing"):
        MemmapStorage.load_from(tmp_path / "nothing", space)
    sidecar["format_version"] = 99
    (tmp_path / "s" / "memmap.json").write_text(json.dumps(sidecar))
    with pytest.raises(FormatVersionError, match="format_version 99"):
        MemmapStorage.load_from(tmp_path / "s", space)


def test_memmap_reads_format_version_1_directories(backend, tmp_path):
    """Version 1 wrote one raw file per leaf and no packed rows; such directories still open."""
    space = storage_space(backend)
    samples = [storage_sample(backend, i) for i in range(3)]
    with MemmapStorage.create(space, capacity=3, cache_path=tmp_path / "v2") as current:
        current.set(slice(0, 3), concatenate(space, samples))
        values = [np.asarray(v) for v in current._get_leaves(range(5), np.arange(3))]
    sidecar = json.loads((tmp_path / "v2" / "memmap.json").read_text())
    old = tmp_path / "v1"
    old.mkdir()
    for position, (leaf, value) in enumerate(zip(sidecar["leaves"], values, strict=True)):
        np.asarray(value, dtype=np.dtype(leaf["dtype"])).tofile(old / f"leaf_{position:03d}.bin")
    del sidecar["packed"]
    sidecar["format_version"] = 1
    (old / "memmap.json").write_text(json.dumps(sidecar))
    with MemmapStorage.load_from(old, space) as loaded:
        assert_tree_equal(loaded.get(slice(0, 3)), concatenate(space, samples))


def test_memmap_reader_follows_growth_in_another_handle(backend, tmp_path):
    space = storage_space(backend)
    writer = MemmapStorage.create(space, capacity=None, cache_path=tmp_path / "s", initial_rows=2)
    reader = pickle.loads(pickle.dumps(writer))
    writer.extend_length(10)
    writer.set(9, storage_sample(backend, 9))
    # A buffer knows the count from its shared ring state and reads through the normalised path;
    # the public ``get`` checks indices against this handle's own length (0 here).
    assert_tree_equal(reader._get(9), storage_sample(backend, 9))  # remaps the grown files
    writer.close()


def test_shared_memory_directory_is_removed_on_close(backend):
    storage = MemoryStorage.create(storage_space(backend), capacity=2, multiprocessing=True)
    directory = storage.cache_filename
    assert directory.exists() and str(directory).startswith("/dev/shm")
    clone = pickle.loads(pickle.dumps(storage))
    clone.close()
    assert directory.exists()  # only the creator deletes it
    storage.close()
    assert not directory.exists()


def test_memory_storage_results_do_not_alias_rows(backend):
    storage = MemoryStorage.create(storage_space(backend, text=False), capacity=2)
    storage.set(0, storage_sample(backend, 1, text=False))
    row = storage.get(0)
    storage.set(0, storage_sample(backend, 2, text=False))
    assert int(np.asarray(backend.to_numpy(row["obs"]["image"]))[0, 0, 0]) == 1
