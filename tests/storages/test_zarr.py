"""ZarrStorage: the storage conformance suite on a local path, a file:// URL and memory://, plus the format details."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import uuid

import numpy as np
import pytest

from unibatch import BoxSpace, DictSpace, TextSpace
from unibatch.backends import backend_from_name
from unibatch.buffers import ReplayBuffer
from unibatch.errors import (
    FormatVersionError,
    ReadOnlyError,
    SpaceMismatchError,
    UnsupportedOperationError,
    UnsupportedSpaceError,
)
from unibatch.spaces import concatenate
from unibatch.storages import ZarrStorage, storage_class
from unibatch.testing.conformance import assert_tree_equal, stack_samples
from unibatch.testing.storage_conformance import StorageTests, storage_sample, storage_space

zarr = pytest.importorskip("zarr")


class TestZarrStorage(StorageTests):
    def make_storage(self, backend, space, capacity, path):
        return ZarrStorage.create(space, capacity=capacity, cache_path=path, chunk_rows=4, initial_rows=4)

    def buffer_storage(self):
        return ZarrStorage, {"chunk_rows": 4, "initial_rows": 4}


class TestZarrStorageFileUrlBlosc(StorageTests):
    """A ``file://`` URL, blosc, and chunk boundaries that differ between leaves."""

    backends = ("numpy",)

    def make_storage(self, backend, space, capacity, path):
        return ZarrStorage.create(
            space,
            capacity=capacity,
            cache_path=path.as_uri(),
            chunk_rows={"obs/image": 2, "*": 3},
            compression="blosc",
            initial_rows=1,
        )

    def buffer_storage(self):
        return ZarrStorage, {"chunk_rows": {"obs/image": 1, "*": 3}, "compression": "blosc", "initial_rows": 1}


class TestZarrStorageInMemoryFsspec(StorageTests):
    """fsspec's in-process ``memory://`` file system, uncompressed; ``dumps`` copies to local directories."""

    backends = ("numpy",)

    def make_storage(self, backend, space, capacity, path):
        return ZarrStorage.create(space, capacity=capacity, cache_path=_memory_url(), chunk_rows=2, compression=None)


def _memory_url() -> str:
    return f"memory://unibatch-tests/{uuid.uuid4().hex}"


# ---------------------------------------------------------------------- layout and options
def test_registered_and_lazy():
    assert storage_class("zarr") is ZarrStorage


def test_layout_attributes_and_arrays(tmp_path):
    backend = backend_from_name("numpy")
    storage = ZarrStorage.create(storage_space(backend), capacity=10, cache_path=tmp_path / "s", chunk_rows={"*": 4})
    document = json.loads((tmp_path / "s" / "zarr.json").read_text())["attributes"]["unibatch"]
    assert document["format_version"] == 1 and document["capacity"] == 10 and document["length"] == 10
    assert document["options"] == {
        "chunk_rows": {"action": 4, "done": 4, "note": 4, "obs/image": 4, "obs/state": 4},
        "compression": "zstd",
        "compression_level": 3,
        "initial_rows": 1024,
        "empty_chunks_written": True,
    }
    assert [leaf["name"] for leaf in document["leaves"]] == ["action", "done", "note", "obs/image", "obs/state"]
    image = json.loads((tmp_path / "s" / "obs" / "image" / "zarr.json").read_text())
    assert image["shape"] == [10, 3, 4, 4] and image["chunk_grid"]["configuration"]["chunk_shape"] == [4, 3, 4, 4]
    assert image["codecs"][-1] == {"name": "zstd", "configuration": {"level": 3, "checksum": False}}
    assert json.loads((tmp_path / "s" / "obs" / "zarr.json").read_text())["node_type"] == "group"
    note = json.loads((tmp_path / "s" / "note" / "zarr.json").read_text())
    assert note["data_type"] == "string"
    storage.set(5, storage_sample(backend, 5))
    assert (tmp_path / "s" / "obs" / "image" / "c" / "1" / "0" / "0" / "0").exists()  # rows 4..7
    storage.close()


def test_default_chunk_rows_follow_the_leaf_size(tmp_path):
    backend = backend_from_name("numpy")
    space = DictSpace(
        backend,
        {
            "image": BoxSpace(backend, 0, 255, np.uint8, shape=(3, 84, 84)),
            "state": BoxSpace(backend, -1.0, 1.0, np.float32, shape=(39,)),
            "reward": BoxSpace(backend, -1.0, 1.0, np.float32, shape=()),
        },
    )
    storage = ZarrStorage.create(space, capacity=None, cache_path=tmp_path / "s")
    document = json.loads((tmp_path / "s" / "zarr.json").read_text())["attributes"]["unibatch"]
    assert document["options"]["chunk_rows"] == {"image": 8, "state": 1024, "reward": 65536}
    storage.close()
    fixed = ZarrStorage.create(space, capacity=100, cache_path=tmp_path / "f")  # a capacity caps chunks
    assert json.loads((tmp_path / "f" / "zarr.json").read_text())["attributes"]["unibatch"]["options"][
        "chunk_rows"
    ] == {"image": 8, "state": 100, "reward": 100}
    fixed.close()


def test_a_space_that_is_a_leaf_is_the_array_data(tmp_path):
    backend = backend_from_name("numpy")
    space = BoxSpace(backend, 0.0, 1.0, np.float32, shape=(2,))
    storage = ZarrStorage.create(space, capacity=3, cache_path=tmp_path / "s")
    storage.set(slice(0, 3), np.arange(6, dtype=np.float32).reshape(3, 2))
    storage.dumps(tmp_path / "s")
    assert zarr.open_group(tmp_path / "s", mode="r")["data"].shape == (3, 2)
    loaded = ZarrStorage.load_from(tmp_path / "s", space)
    np.testing.assert_array_equal(loaded.get(2), [4.0, 5.0])
    loaded.close()
    storage.close()


def test_create_refuses_bad_options(tmp_path):
    backend = backend_from_name("numpy")
    space = storage_space(backend)
    path = tmp_path / "s"
    with pytest.raises(TypeError, match="unexpected arguments"):
        ZarrStorage.create(space, capacity=3, cache_path=path, chunk=4)
    with pytest.raises(UnsupportedOperationError, match="needs a cache_path"):
        ZarrStorage.create(space, capacity=3)
    with pytest.raises(ValueError, match="compression must be one of"):
        ZarrStorage.create(space, capacity=3, cache_path=path, compression="gzip")
    with pytest.raises(ValueError, match=r"compression_level for zstd must be an int in \[1, 22\], got 40"):
        ZarrStorage.create(space, capacity=3, cache_path=path, compression_level=40)
    with pytest.raises(ValueError, match="needs a compression"):
        ZarrStorage.create(space, capacity=3, cache_path=path, compression=None, compression_level=3)
    with pytest.raises(ValueError, match=r"chunk_rows names unknown leaves \['obs/imag'\]"):
        ZarrStorage.create(space, capacity=3, cache_path=path, chunk_rows={"obs/imag": 2})
    with pytest.raises(ValueError, match="chunk_rows for leaf 'action' must be a positive int, got 0"):
        ZarrStorage.create(space, capacity=3, cache_path=path, chunk_rows=0)
    with pytest.raises(ValueError, match="initial_rows must be a positive int"):
        ZarrStorage.create(space, capacity=None, cache_path=path, initial_rows=0)
    with pytest.raises(UnsupportedSpaceError, match="leaf '__meta'"):
        ZarrStorage.create(DictSpace(backend, {"__meta": space["done"]}), capacity=3, cache_path=path)
    overlapping = DictSpace(backend, {"a": {"b": space["done"]}, "a/b": space["done"]})
    with pytest.raises(UnsupportedSpaceError, match=r"leaf paths \['a/b', 'a/b'\] overlap"):
        ZarrStorage.create(overlapping, capacity=3, cache_path=path)
    assert not path.exists()  # nothing was created by a refused call
    ZarrStorage.create(space, capacity=3, cache_path=path).close()
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        ZarrStorage.create(space, capacity=3, cache_path=path)


def test_dtypes_zarr_cannot_hold_are_refused():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from unibatch.storages._leaves import Leaf
    from unibatch.storages._zarr_store import check_leaves

    space = BoxSpace(backend_from_name("numpy"), 0.0, 1.0, np.float32, shape=(2,))
    with pytest.raises(UnsupportedSpaceError, match="leaf 'x': zarr stores bool, .* got dtype bfloat16"):
        check_leaves([Leaf("x", space, (2,), np.dtype(ml_dtypes.bfloat16))])


def test_load_errors_name_what_is_wrong(tmp_path):
    backend = backend_from_name("numpy")
    space = storage_space(backend)
    ZarrStorage.create(space, capacity=3, cache_path=tmp_path / "s").close()
    with pytest.raises(SpaceMismatchError, match="stores leaves"):
        ZarrStorage.load_from(tmp_path / "s", storage_space(backend, text=False))
    with pytest.raises(SpaceMismatchError, match="holds capacity 3, expected 4"):
        ZarrStorage.load_from(tmp_path / "s", space, capacity=4)
    with pytest.raises(FileNotFoundError, match="is not a zarr storage"):
        ZarrStorage.load_from(tmp_path / "nothing", space)
    with pytest.raises(TypeError, match="unexpected arguments"):
        ZarrStorage.load_from(tmp_path / "s", space, chunk_rows=3)
    zarr.open_group(tmp_path / "foreign", mode="w")
    with pytest.raises(FormatVersionError, match="without unibatch metadata"):
        ZarrStorage.load_from(tmp_path / "foreign", space)
    group = zarr.open_group(tmp_path / "s", mode="r+")
    document = group.attrs["unibatch"]
    group.update_attributes({"unibatch": {**document, "format_version": 99}})
    with pytest.raises(FormatVersionError, match="format_version 99"):
        ZarrStorage.load_from(tmp_path / "s", space)
    group.update_attributes({"unibatch": document})
    del group["obs/state"]
    with pytest.raises(FileNotFoundError, match="no array 'obs/state'"):
        ZarrStorage.load_from(tmp_path / "s", space)


def test_bad_values_raise_before_anything_is_written(backend, tmp_path):
    space = storage_space(backend)
    storage = ZarrStorage.create(space, capacity=4, cache_path=tmp_path / "s", chunk_rows=2)
    samples = [storage_sample(backend, i) for i in range(4)]
    storage.set(slice(0, 4), concatenate(space, samples))
    wrong_dtype = storage_sample(backend, 3)
    wrong_dtype["obs"]["state"] = np.ones(5, np.complex64)  # "obs/state" comes after "action", "done", "note"
    with pytest.raises(SpaceMismatchError, match=r"obs/state: expected dtype float32 .* got complex64"):
        storage.set(1, wrong_dtype)
    wrong_shape = concatenate(space, samples[:2])
    wrong_shape["obs"]["image"] = np.zeros((2, 3, 4, 5), np.uint8)
    with pytest.raises(SpaceMismatchError, match=r"obs/image: expected shape \(2, 3, 4, 4\), got \(2, 3, 4, 5\)"):
        storage.set(slice(2, 4), wrong_shape)
    not_text = storage_sample(backend, 0)
    not_text["note"] = np.array([1.5], dtype=object)
    with pytest.raises(SpaceMismatchError, match="note: expected text"):
        storage.set(0, not_text)
    assert_tree_equal(storage.get(slice(0, 4)), stack_samples(samples))
    storage.close()


def test_index_arrays_unsorted_with_duplicates(backend, tmp_path):
    space = storage_space(backend)
    storage = ZarrStorage.create(space, capacity=9, cache_path=tmp_path / "s", chunk_rows=2)
    samples = [storage_sample(backend, i) for i in range(9)]
    storage.set(slice(0, 9), concatenate(space, samples))
    order = [8, 0, 3, 8, 2, 2]
    got = storage.get(backend.asarray(order, dtype=backend.default_index_dtype))
    assert_tree_equal(got, stack_samples([samples[i] for i in order]))
    empty = storage.get(backend.asarray([], dtype=backend.default_index_dtype))
    assert np.asarray(backend.to_numpy(empty["obs"]["image"])).shape == (0, 3, 4, 4)
    # repeated rows keep the last value written, as NumPy assignment does
    writes = [storage_sample(backend, 20 + i) for i in range(3)]
    storage.set(backend.asarray([5, 1, 5], dtype=backend.default_index_dtype), concatenate(space, writes))
    assert_tree_equal(storage.get(5), writes[2])
    assert_tree_equal(storage.get(1), writes[1])
    assert_tree_equal(storage.get(4), samples[4])
    storage.close()


# ---------------------------------------------------------------------- growth, copies, locations
def test_growable_appends_across_chunk_boundaries_and_commits_on_flush(tmp_path):
    backend = backend_from_name("numpy")
    space = storage_space(backend)
    storage = ZarrStorage.create(space, capacity=None, cache_path=tmp_path / "s", chunk_rows=3, initial_rows=2)
    samples = [storage_sample(backend, i) for i in range(17)]
    for i in range(7):  # one row at a time: chunks fill, arrays double from 2 rows
        storage.extend_length(1)
        storage.set(i, samples[i])
    storage.extend_length(8)  # a batch that spans three chunks
    storage.set(slice(7, 15), concatenate(space, samples[7:15]))
    assert zarr.open_group(tmp_path / "s", mode="r")["obs/image"].shape[0] == 16  # 2 -> 4 -> 8 -> 16 rows
    storage.flush()
    storage.extend_length(2)
    storage.set(slice(15, 17), concatenate(space, samples[15:17]))  # written, not committed
    reader = ZarrStorage.load_from(tmp_path / "s", space)
    assert len(reader) == 15
    assert_tree_equal(reader.get(slice(0, 15)), stack_samples(samples[:15]))
    reader.close()
    storage.shrink_length(5)
    storage.flush()
    reopened = ZarrStorage.load_from(tmp_path / "s", space, read_only=False)
    assert len(reopened) == 12
    reopened.extend_length(1)
    reopened.set(12, samples[0])
    assert_tree_equal(reopened.get(slice(11, 13)), stack_samples([samples[11], samples[0]]))
    reopened.close()
    storage.close()


def test_reader_handle_follows_growth_of_the_writer(tmp_path):
    backend = backend_from_name("numpy")
    writer = ZarrStorage.create(storage_space(backend), capacity=None, cache_path=tmp_path / "s", initial_rows=2)
    reader = pickle.loads(pickle.dumps(writer))
    writer.extend_length(40)
    writer.set(39, storage_sample(backend, 39))
    # A buffer knows the count from its ring state and reads through the normalised path; the
    # public ``get`` checks indices against this handle's own length.
    assert_tree_equal(reader._get(39), storage_sample(backend, 39))  # re-reads the grown arrays' shapes
    writer.close()
    reader.close()


def test_dumps_copies_between_locations_and_replaces_only_storages(tmp_path):
    backend = backend_from_name("numpy")
    space = storage_space(backend)
    samples = [storage_sample(backend, i) for i in range(6)]
    storage = ZarrStorage.create(space, capacity=None, cache_path=tmp_path / "s", chunk_rows=4)
    storage.extend_length(6)
    storage.set(slice(0, 6), concatenate(space, samples))
    url = _memory_url()
    storage.dumps(url)
    storage.dumps(tmp_path / "copy")
    storage.set(0, samples[5])
    storage.dumps(tmp_path / "copy")  # a storage already there is replaced
    in_memory = ZarrStorage.load_from(url, space)
    assert not in_memory.is_multiprocessing_safe and in_memory.cache_filename == url
    assert_tree_equal(in_memory.get(slice(0, 6)), stack_samples(samples))
    in_memory.dumps(tmp_path / "from-memory")
    copy = ZarrStorage.load_from((tmp_path / "copy").as_uri(), space)
    assert copy.cache_filename == tmp_path / "copy"
    assert_tree_equal(copy.get(0), samples[5])
    back = ZarrStorage.load_from(tmp_path / "from-memory", space)
    assert len(back) == 6 and zarr.open_group(tmp_path / "from-memory", mode="r")["obs/image"].shape[0] == 6
    assert_tree_equal(back.get(slice(0, 6)), stack_samples(samples))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        storage.dumps(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"
    for opened in (storage, in_memory, copy, back):
        opened.close()


def test_storage_options_reach_fsspec_and_are_not_stored():
    backend = backend_from_name("numpy")
    url = _memory_url()
    storage = ZarrStorage.create(
        storage_space(backend), capacity=2, cache_path=url, storage_options={"skip_instance_cache": True}
    )
    document = zarr.open_group(url, mode="r").attrs["unibatch"]
    assert "skip_instance_cache" not in json.dumps(document)
    clone = pickle.loads(pickle.dumps(storage))  # options travel with the handle, not with the data
    assert clone._storage_options == {"skip_instance_cache": True}
    storage.close()


def test_local_cache_serves_objects_already_read(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    backend = backend_from_name("numpy")
    space = storage_space(backend)
    samples = [storage_sample(backend, i) for i in range(5)]
    url = _memory_url()
    storage = ZarrStorage.create(space, capacity=None, cache_path=url, chunk_rows=2)
    storage.extend_length(5)
    storage.set(slice(0, 5), concatenate(space, samples))
    storage.flush()
    cached = ZarrStorage.load_from(url, space, local_cache=tmp_path / "cache")
    assert_tree_equal(cached.get(slice(0, 5)), stack_samples(samples))
    assert any(path.name == "zarr.json" for path in (tmp_path / "cache").rglob("*"))
    fsspec.filesystem("memory").rm(url.removeprefix("memory://"), recursive=True)  # the source is gone
    again = ZarrStorage.load_from(url, space, local_cache=tmp_path / "cache")  # a new handle, the same cache
    assert_tree_equal(again.get(np.array([4, 0])), stack_samples([samples[4], samples[0]]))
    with pytest.raises(ValueError, match="read-only"):
        ZarrStorage.load_from(tmp_path / "nowhere", space, read_only=False, local_cache=tmp_path / "c2")


def test_read_only_handle_refuses_writes(tmp_path):
    backend = backend_from_name("numpy")
    ZarrStorage.create(storage_space(backend), capacity=2, cache_path=tmp_path / "s").close()
    reader = ZarrStorage.load_from(tmp_path / "s", storage_space(backend))
    with pytest.raises(ReadOnlyError):
        reader.set(0, storage_sample(backend, 0))
    with pytest.raises(ReadOnlyError):
        reader.get_column(["obs", "image"]).set(0, np.zeros((3, 4, 4), np.uint8))
    reader.flush()  # nothing to do, no error
    reader.close()


def test_column_reads_and_writes_one_leaf(tmp_path):
    backend = backend_from_name("numpy")
    space = storage_space(backend)
    storage = ZarrStorage.create(space, capacity=4, cache_path=tmp_path / "s")
    storage.set(slice(0, 4), concatenate(space, [storage_sample(backend, i) for i in range(4)]))
    column = storage.get_column(["obs", "image"])
    column.set(2, np.full((3, 4, 4), 77, np.uint8))
    assert int(storage.get(2)["obs"]["image"][0, 0, 0]) == 77
    np.testing.assert_array_equal(column.get(np.array([2, 0]))[:, 0, 0, 0], [77, 0])
    storage.close()


# ---------------------------------------------------------------------- processes
def row_space(backend):
    return DictSpace(
        backend,
        {
            "id": BoxSpace(backend, 0, 2**30, np.int64, shape=()),
            "obs": {
                "image": BoxSpace(backend, 0, 255, np.uint8, shape=(2, 8, 8)),
                "state": BoxSpace(backend, -1e9, 1e9, np.float32, shape=(5,)),
            },
            "note": TextSpace(backend, 12),
        },
    )


def row(i):
    """Row ``i``: every leaf says ``i``, so a row mixing two writes is detected."""
    return {
        "id": np.int64(i),
        "obs": {"image": np.full((2, 8, 8), i % 251, np.uint8), "state": np.full(5, i, np.float32)},
        "note": f"row{i}",
    }


def check_consecutive_rows(data, count):
    """The rows read from a buffer are whole writes with consecutive ids; returns the ids."""
    ids = np.asarray(data["id"])
    assert len(ids) == count
    np.testing.assert_array_equal(ids, ids[0] + np.arange(count))
    np.testing.assert_array_equal(
        np.asarray(data["obs"]["image"]), np.broadcast_to((ids % 251)[:, None, None, None], (count, 2, 8, 8))
    )
    np.testing.assert_array_equal(
        np.asarray(data["obs"]["state"]), np.broadcast_to(ids[:, None], (count, 5)).astype(np.float32)
    )
    assert list(data["note"]) == [f"row{i}" for i in ids]
    return ids


def _write_rows(path, rows, every, queue):
    """Append rows (forever when ``rows`` is None), flushing every ``every`` rows and reporting the rows written."""
    with ReplayBuffer.load_from(path, backend=backend_from_name("numpy"), read_only=False) as buffer:
        i = 0
        while rows is None or i < rows:
            buffer.append(row(i))
            i += 1
            if i % every == 0:
                buffer.flush()
                if queue is not None:
                    queue.put(i)


def _read_committed(path, rounds, queue):
    try:
        for _ in range(rounds):
            with ReplayBuffer.load_from(path, backend=backend_from_name("numpy")) as reader:
                count = len(reader)
                if count:
                    ids = check_consecutive_rows(reader.get_at(slice(0, count)), count)
                    assert ids[0] == 0 and count % 4 == 0, f"saw {count} rows from id {ids[0]}"
        queue.put("ok")
    except BaseException as error:  # report to the parent, which asserts
        queue.put(repr(error))


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
@pytest.mark.parametrize("capacity", [24, None], ids=["ring", "growable"])
def test_sigkilled_writer_leaves_a_committed_prefix(tmp_path, capacity):
    backend = backend_from_name("numpy")
    path = tmp_path / "buffer"
    options = {"chunk_rows": {"obs/image": 4, "*": 3}, "initial_rows": 4}
    ReplayBuffer.create(ZarrStorage, row_space(backend), cache_path=path, capacity=capacity, **options).close()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    writer = context.Process(target=_write_rows, args=(path, None, 5, queue))
    writer.start()
    flushed = 0
    try:
        while flushed < 75:  # the ring has wrapped about three times
            flushed = queue.get(timeout=60)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(timeout=60)
    assert writer.exitcode == -signal.SIGKILL
    with ReplayBuffer.load_from(path, backend=backend, read_only=False) as reopened:
        count = len(reopened)
        assert count >= 1 and (capacity is None or count <= capacity)
        ids = check_consecutive_rows(reopened.get_at(slice(0, count)), count)
        assert ids[-1] + 1 >= flushed  # every row committed before the kill is there
        if capacity is None:
            assert ids[0] == 0
        reopened.append(row(int(ids[-1]) + 1))  # and the writer can go on
        reopened.flush()
    with ReplayBuffer.load_from(path, backend=backend) as again:
        check_consecutive_rows(again.get_at(slice(0, len(again))), len(again))


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_several_reader_processes_see_committed_rows(tmp_path):
    backend = backend_from_name("numpy")
    path = tmp_path / "buffer"
    ReplayBuffer.create(ZarrStorage, row_space(backend), cache_path=path, capacity=None, chunk_rows=3).close()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    writer = context.Process(target=_write_rows, args=(path, 48, 4, None))
    readers = [context.Process(target=_read_committed, args=(path, 15, queue)) for _ in range(2)]
    for process in (writer, *readers):
        process.start()
    results = [queue.get(timeout=120) for _ in readers]
    for process in (writer, *readers):
        process.join(timeout=60)
    assert results == ["ok", "ok"] and writer.exitcode == 0
    with ReplayBuffer.load_from(path, backend=backend) as final:
        check_consecutive_rows(final.get_at(slice(0, 48)), 48)
