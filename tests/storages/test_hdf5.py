"""HDF5Storage: the storage conformance suite, plus what is specific to HDF5.

Options and layout, coalesced reads of unsorted/duplicated rows, writes with duplicates, texts,
validation before writing, copies, growth across chunks, SWMR readers in another process, writers
killed with SIGKILL (and reopened), fork and pickling, and foreign (robomimic-like) files.
"""

from __future__ import annotations

import inspect
import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from unibatch import BinarySpace, BoxSpace, DictSpace, NumpyComputeBackend, TextSpace
from unibatch.backends import backend_from_name
from unibatch.buffers import ReplayBuffer
from unibatch.errors import (
    ClosedError,
    FormatVersionError,
    IndexOutOfRangeError,
    MissingDependencyError,
    ReadOnlyError,
    SpaceMismatchError,
    UnsupportedOperationError,
    UnsupportedSpaceError,
)
from unibatch.integrations.foreign_files import open_hdf5_as_replay_buffer
from unibatch.spaces import concatenate
from unibatch.storages import HDF5Storage, storage_class
from unibatch.storages.hdf5 import infer_hdf5_space
from unibatch.testing.conformance import assert_tree_equal, stack_samples
from unibatch.testing.storage_conformance import StorageTests, storage_space

NP = backend_from_name("numpy")


class TestHDF5Storage(StorageTests):
    def make_storage(self, backend, space, capacity, path):
        return HDF5Storage.create(space, capacity=capacity, cache_path=path)

    def buffer_storage(self):
        return HDF5Storage, {}


class TestCompressedSmallChunksHDF5Storage(StorageTests):
    """gzip on every leaf, lzf on the image, two rows per chunk: every request spans several chunks."""

    options = {"compression": {"*": "gzip", "obs/image": "lzf"}, "compression_opts": {"obs/state": 9}, "chunk_rows": 2}

    def make_storage(self, backend, space, capacity, path):
        return HDF5Storage.create(space, capacity=capacity, cache_path=path, **self.options)

    def buffer_storage(self):
        return HDF5Storage, self.options


# ---------------------------------------------------------------------------------------------- helpers


def row_space(backend=NP):
    """A small transition: an image, a state, a sequence number, a flag and a note."""
    return DictSpace(
        backend,
        {
            "obs": {
                "image": BoxSpace(backend, 0, 255, "uint8", shape=(3, 8, 8)),
                "state": BoxSpace(backend, -1e9, 1e9, "float32", shape=(5,)),
            },
            "seq": BoxSpace(backend, 0, 2**40, "int64", shape=()),
            "done": BinarySpace(backend, ()),
            "note": TextSpace(backend, 8),
        },
    )


def row(i, backend=NP):
    return {
        "obs": {
            "image": backend.asarray(np.full((3, 8, 8), i % 251, np.uint8)),
            "state": backend.asarray(np.arange(5, dtype=np.float32) + i),
        },
        "seq": backend.asarray(np.int64(i)),
        "done": backend.asarray(bool(i % 3 == 0)),
        "note": f"é{i}",
    }


def rows(indices, backend=NP):
    return concatenate(row_space(backend), [row(int(i), backend) for i in indices])


def filled(path, n, growable=False, **options):
    storage = HDF5Storage.create(row_space(), capacity=None if growable else n, cache_path=path, **options)
    if growable:
        storage.extend_length(n)
    storage.set(slice(0, n), rows(range(n)))
    return storage


def seqs(values):
    return np.asarray(values["seq"]).tolist()


# ---------------------------------------------------------------------------------------------- layout and options


def test_registered_and_layout(tmp_path):
    assert storage_class("hdf5") is HDF5Storage
    storage = HDF5Storage.create(
        row_space(),
        capacity=None,
        cache_path=tmp_path / "s.hdf5",
        compression={"*": "gzip", "note": None},
        chunk_rows={"obs/image": 7},
    )
    storage.close()
    with h5py.File(tmp_path / "s.hdf5", "r") as file:
        metadata = json.loads(file.attrs["unibatch"])
        assert metadata["format_version"] == 1 and metadata["capacity"] is None
        leaves = {leaf["name"]: leaf for leaf in metadata["leaves"]}
        assert list(leaves) == ["done", "note", "obs/image", "obs/state", "seq"]
        image = file["obs/image"]
        assert image.shape == (0, 3, 8, 8) and image.maxshape == (None, 3, 8, 8) and image.chunks == (7, 3, 8, 8)
        assert image.compression == "gzip" and leaves["obs/image"]["chunk_rows"] == 7
        assert file["note"].compression is None and file["note"].dtype == h5py.string_dtype("utf-8", 32)
        assert file["note"].chunks == ((1 << 20) // 32,) == (leaves["note"]["chunk_rows"],)  # about 1 MiB
        assert file["obs/state"].chunks == ((64 << 10) // 20, 5)  # compressed: smaller default chunks


def test_single_leaf_space_is_dataset_data(tmp_path):
    space = BoxSpace(NP, 0.0, 1.0, "float64", shape=(2,))
    with HDF5Storage.create(space, capacity=3, cache_path=tmp_path / "s.hdf5", compression="lzf") as storage:
        storage.set(1, np.array([0.25, 0.5]))
        assert np.asarray(storage.get(np.array([1, 1]))).tolist() == [[0.25, 0.5], [0.25, 0.5]]
    with h5py.File(tmp_path / "s.hdf5", "r") as file:
        assert list(file) == ["data"] and file["data"].shape == (3, 2) and file["data"].compression == "lzf"


def test_create_and_load_errors(tmp_path):
    space, path = row_space(), tmp_path / "s.hdf5"
    with pytest.raises(SpaceMismatchError, match=r"compression names \['obs/imgae'\], which are not leaves"):
        HDF5Storage.create(space, capacity=2, cache_path=path, compression={"obs/imgae": "gzip"})
    with pytest.raises(ValueError, match="compression of 'done' must be one of"):
        HDF5Storage.create(space, capacity=2, cache_path=path, compression="zstd")
    with pytest.raises(ValueError, match="gzip\\) must be a level 0-9"):
        HDF5Storage.create(space, capacity=2, cache_path=path, compression="gzip", compression_opts=12)
    with pytest.raises(ValueError, match="must be None with compression 'lzf'"):
        HDF5Storage.create(space, capacity=2, cache_path=path, compression="lzf", compression_opts=3)
    with pytest.raises(ValueError, match="chunk_rows of 'seq' must be a positive int"):
        HDF5Storage.create(space, capacity=2, cache_path=path, chunk_rows={"seq": 0})
    with pytest.raises(TypeError, match="unexpected arguments"):
        HDF5Storage.create(space, capacity=2, cache_path=path, chunks=4)
    with pytest.raises(UnsupportedOperationError, match="one writer"):
        HDF5Storage.create(space, capacity=2, cache_path=path, multiprocessing=True)
    with pytest.raises(UnsupportedOperationError, match="needs a cache_path"):
        HDF5Storage.create(space, capacity=2)
    with pytest.raises(UnsupportedSpaceError, match="zero-length axis"):
        HDF5Storage.create(BoxSpace(NP, 0, 1, "float32", shape=(0,)), capacity=2, cache_path=path)
    assert not path.exists()  # nothing was left behind by the refused calls

    writer = HDF5Storage.create(space, capacity=2, cache_path=path)
    with pytest.raises(UnsupportedOperationError, match="open for writing in another process or handle"):
        HDF5Storage.load_from(path, space, read_only=False)  # one writer, also within a process
    writer.close()
    reader = HDF5Storage.load_from(path, space)
    with pytest.raises(UnsupportedOperationError, match="open read-only in this process"):
        HDF5Storage.load_from(path, space, read_only=False)  # HDF5 cannot upgrade a file this process reads
    reader.close()
    with pytest.raises(FileExistsError):
        HDF5Storage.create(space, capacity=2, cache_path=path)
    with pytest.raises(SpaceMismatchError, match="stores leaves"):
        HDF5Storage.load_from(path, storage_space(NP))
    with pytest.raises(SpaceMismatchError, match="capacity 2, expected 3"):
        HDF5Storage.load_from(path, space, capacity=3)
    with pytest.raises(UnsupportedOperationError, match="cannot be shared"):
        HDF5Storage.load_from(path, space, read_only=False, multiprocessing=True)
    with pytest.raises(TypeError, match="unexpected arguments"):
        HDF5Storage.load_from(path, space, compression="gzip")
    with pytest.raises(FileNotFoundError):
        HDF5Storage.load_from(tmp_path / "missing.hdf5", space)
    with h5py.File(path, "r+") as file:
        file.attrs["unibatch"] = json.dumps({**json.loads(file.attrs["unibatch"]), "format_version": 7})
    with pytest.raises(FormatVersionError, match="format_version 7"):
        HDF5Storage.load_from(path, space)
    with h5py.File(tmp_path / "foreign.hdf5", "w") as file:
        file["seq"] = np.arange(3)
    with pytest.raises(FormatVersionError, match="not an HDF5Storage file"):
        HDF5Storage.load_from(tmp_path / "foreign.hdf5", space)


def test_missing_h5py_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if h5py were not installed
    with pytest.raises(MissingDependencyError, match=r'pip install "unibatch\[hdf5\]"'):
        HDF5Storage.create(row_space(), capacity=2, cache_path=tmp_path / "s.hdf5")


# ---------------------------------------------------------------------------------------------- reads and writes


@pytest.mark.parametrize("options", [{}, {"compression": "gzip", "chunk_rows": 16}], ids=["plain", "gzip"])
def test_reads_coalesce_unsorted_duplicated_rows(tmp_path, options):
    n = 300
    storage = filled(tmp_path / "s.hdf5", n, **options)
    generator = np.random.default_rng(0)
    for size in (1, 5, 64, 256, 1000):
        index = generator.integers(0, n, size)
        if size == 5:
            index = np.array([299, 0, 150, 150, 0])
        values = storage.get(index)
        assert seqs(values) == index.tolist()
        assert np.asarray(values["obs"]["image"])[:, 0, 0, 0].tolist() == (index % 251).tolist()
        assert np.asarray(values["obs"]["state"])[:, 0].tolist() == index.astype(np.float32).tolist()
        assert list(values["note"]) == [f"é{i}" for i in index]
    assert seqs(storage.get(np.arange(40, 90))) == list(range(40, 90))  # sorted, distinct: no gather
    assert seqs(storage.get(slice(297, 300))) == [297, 298, 299]
    assert seqs(storage.get(np.array([], dtype=np.int64))) == []
    assert storage.get(slice(5, 5))["obs"]["image"].shape == (0, 3, 8, 8)
    one = storage.get(7)
    assert int(one["seq"]) == 7 and one["note"] == "é7" and one["obs"]["image"].shape == (3, 8, 8)
    storage.close()


def test_writes_with_unsorted_duplicates_keep_the_last_value(tmp_path):
    storage = filled(tmp_path / "s.hdf5", 10)
    storage.set(np.array([7, 2, 7, 9, 2]), rows([100, 101, 102, 103, 104]))
    assert seqs(storage.get(slice(0, 10))) == [0, 1, 104, 3, 4, 5, 6, 102, 8, 103]
    assert list(storage.get(np.array([2, 7]))["note"]) == ["é104", "é102"]
    storage.set(np.array([], dtype=np.int64), rows([]))
    storage.set(0, row(55))
    assert seqs(storage.get(np.array([0, 1]))) == [55, 1]
    storage.close()


def test_values_of_other_backends_and_dtypes_are_converted(tmp_path, backend):
    space = row_space(backend)
    with HDF5Storage.create(space, capacity=4, cache_path=tmp_path / "s.hdf5") as storage:
        storage.set(slice(0, 4), rows(range(4), backend))
        value = row(9)
        value["obs"]["state"] = np.arange(5, dtype=np.float64) + 9  # float64 into a float32 leaf
        storage.set(backend.asarray([3], dtype=backend.default_index_dtype), rows([9], backend))
        storage.set(2, value)
        assert_tree_equal(storage.get(backend.asarray([3, 2])), stack_samples([row(9, backend), row(9, backend)]))


def test_bad_values_are_refused_before_anything_is_written(tmp_path):
    storage = filled(tmp_path / "s.hdf5", 4)
    before = storage.get(slice(0, 4))
    bad_state = rows([7, 8])
    bad_state["obs"]["state"] = np.zeros((2, 6), np.float32)  # a later leaf than "done" and "note"
    with pytest.raises(SpaceMismatchError, match=r"obs/state: expected shape \(2, 5\), got \(2, 6\)"):
        storage.set(slice(0, 2), bad_state)
    bad_seq = rows([7, 8])
    bad_seq["seq"] = np.array([1.5, 2.5])
    with pytest.raises(SpaceMismatchError, match="seq: expected values castable to int64, got float64"):
        storage.set(np.array([1, 3]), bad_seq)
    long_note = row(7)
    long_note["note"] = "x" * 9
    with pytest.raises(SpaceMismatchError, match="note: expected texts of at most 8 characters, got 9"):
        storage.set(0, long_note)
    not_text = row(7)
    not_text["note"] = 5
    with pytest.raises(SpaceMismatchError, match="note: expected str values, got int"):
        storage.set(0, not_text)
    with pytest.raises(IndexOutOfRangeError, match="index 4 is out of range for length 4"):
        storage.set(np.array([0, 4]), rows([7, 8]))
    assert_tree_equal(storage.get(slice(0, 4)), before)
    storage.close()
    reader = HDF5Storage.load_from(tmp_path / "s.hdf5", row_space())
    with pytest.raises(ReadOnlyError):
        reader.set(0, row(1))
    assert_tree_equal(reader.get(slice(0, 4)), before)
    reader.close()


def test_growable_appends_across_chunks_and_columns(tmp_path):
    path = tmp_path / "s.hdf5"
    storage = HDF5Storage.create(row_space(), capacity=None, cache_path=path, chunk_rows=4, compression={"seq": "gzip"})
    for i in range(10):  # one row at a time, as ReplayBuffer.append does
        storage.extend_length(1)
        storage.set(i, row(i))
    for start in range(10, 31, 7):  # chunks of 7 straddle the 4-row chunks
        storage.extend_length(7)
        storage.set(slice(start, start + 7), rows(range(start, start + 7)))
    assert len(storage) == 31 and seqs(storage.get(slice(0, 31))) == list(range(31))
    column = storage.get_column(["obs", "state"])
    assert np.asarray(column.get(np.array([30, 2])))[:, 0].tolist() == [30.0, 2.0]
    storage.shrink_length(11)
    storage.extend_length(2)  # rows 20 and 21 come back as zeros (HDF5 fill value)
    assert len(storage) == 22 and seqs(storage.get(slice(18, 22))) == [18, 19, 0, 0]
    storage.flush()
    with h5py.File(path, "r", swmr=True, locking=False) as file:
        assert {len(file[name]) for name in ("seq", "note", "obs/image")} == {22}
    storage.close()


def test_chunk_cache_only_for_compressed_leaves(tmp_path):
    """Unfiltered reads move only the selected rows (no cache); a compressed chunk is decompressed once."""
    storage = HDF5Storage.create(row_space(), capacity=8, cache_path=tmp_path / "s.hdf5", compression={"seq": "lzf"})
    for name, dataset in zip(("done", "note", "obs/image", "obs/state", "seq"), storage._handle().datasets):
        _, cache_bytes, _ = dataset.id.get_access_plist().get_chunk_cache()
        assert cache_bytes == (4 * 8 * 8 if name == "seq" else 0), name  # 4 chunks of 8 int64 rows
    storage.close()


def test_dumps_copies_and_reopens(tmp_path):
    storage = filled(tmp_path / "s.hdf5", 12, growable=True, compression={"obs/image": "gzip"}, chunk_rows=5)
    storage.dumps(tmp_path / "s.hdf5")  # its own file: a flush
    storage.dumps(tmp_path / "copy" / "c.hdf5")
    storage.set(0, row(99))
    storage.dumps(tmp_path / "copy" / "c.hdf5")  # replaces the previous copy
    storage.close()
    copy = HDF5Storage.load_from(tmp_path / "copy" / "c.hdf5", row_space(), read_only=False)
    assert copy.capacity is None and seqs(copy.get(slice(0, 12))) == [99, *range(1, 12)]
    copy.extend_length(1)
    copy.set(12, row(12))
    copy.close()
    with h5py.File(tmp_path / "copy" / "c.hdf5", "r") as file:
        assert file["obs/image"].compression == "gzip" and file["obs/image"].chunks[0] == 5
        assert len(file["seq"]) == 13
    assert not list((tmp_path / "copy").glob(".*.tmp"))


# ---------------------------------------------------------------------------------------------- processes

WRITER = """
import sys
import numpy as np
from unibatch.backends import backend_from_name
from unibatch.buffers import ReplayBuffer
NP = backend_from_name("numpy")
{row}
path, log, every = sys.argv[1], sys.argv[2], int(sys.argv[3])
with ReplayBuffer.load_from(path, backend=NP, read_only=False) as buffer:
    i = int(buffer.get_at(len(buffer) - 1)["seq"]) + 1 if len(buffer) else 0
    while True:
        buffer.append(row(i))
        i += 1
        if i % every == 0:
            buffer.flush()
            with open(log, "a") as handle:
                handle.write(f"{{i}}\\n")
"""


def start_writer(path, log, every=5):
    script = WRITER.format(row=inspect.getsource(row))
    with open(f"{log}.stderr", "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-c", script, str(path), str(log), str(every)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group: killed as a whole, never leaked
        )


def flushed(log):
    """The rows committed by the writer's last logged flush (a kill may leave half a line)."""
    lines = log.read_text().split("\n")[:-1] if log.exists() else []
    return int(lines[-1]) if lines else 0


def wait_for_flushes(log, process, at_least):
    deadline = time.monotonic() + 60
    while flushed(log) < at_least:
        if process.poll() is not None:
            pytest.fail(f"the writer exited with {process.returncode}: {Path(f'{log}.stderr').read_text()}")
        if time.monotonic() > deadline:
            pytest.fail("the writer did not flush in time")
        time.sleep(0.005)
    return flushed(log)


def hold_plain_reader(path):
    """Another process holding ``path`` open with plain h5py (SWMR read, default HDF5 file locking)."""
    script = "import sys, time, h5py; f = h5py.File(sys.argv[1], 'r', swmr=True); print(len(f['seq']), flush=True)"
    script += "; time.sleep(60)"
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stdout.readline().strip().isdigit()
    process.stdout.close()
    return process


def kill(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def test_open_reader_follows_a_writer_in_another_process(tmp_path):
    """SWMR: a storage opened read-only once keeps seeing what the writer process flushes."""
    path, log = tmp_path / "buffer", tmp_path / "log"
    ReplayBuffer.create(HDF5Storage, row_space(), cache_path=path, capacity=None).close()
    writer = start_writer(path, log)
    try:
        wait_for_flushes(log, writer, 5)
        reader = HDF5Storage.load_from(path / "storage.hdf5", row_space())
        for target in (20, 60, 120):
            committed = wait_for_flushes(log, writer, target)
            values = reader.get(np.arange(committed)[::-1])  # beyond the opening length: refreshes
            assert seqs(values) == list(range(committed))[::-1]
            assert list(values["note"][:2]) == [f"é{committed - 1}", f"é{committed - 2}"]
        with pytest.raises(UnsupportedOperationError, match="open for writing in another process"):
            HDF5Storage.load_from(path / "storage.hdf5", row_space(), read_only=False)
        other = hold_plain_reader(path / "storage.hdf5")  # another program, HDF5 file locking on: opens too
        kill(other)
        reader.close()
    finally:
        kill(writer)


@pytest.mark.parametrize("capacity", [None, 16], ids=["growable", "ring"])
def test_writer_killed_then_read_and_reopened_for_writing(tmp_path, capacity):
    path, log = tmp_path / "buffer", tmp_path / "log"
    ReplayBuffer.create(HDF5Storage, row_space(), cache_path=path, capacity=capacity, chunk_rows=4).close()
    writer = start_writer(path, log, every=3)
    wait_for_flushes(log, writer, 40)
    time.sleep(np.random.default_rng().uniform(0, 0.02))  # somewhere in the middle of appends
    kill(writer)
    committed = flushed(log)
    # The killed writer left its write marks (which plain HDF5 refuses, or not, depending on its release and
    # file-locking settings); SWMR readers open it as of the last flush: consecutive rows, none lost, none torn.
    with ReplayBuffer.load_from(path, backend=NP) as reader:
        values = reader.get_at(slice(0, len(reader)))
        first, last = seqs(values)[0], seqs(values)[-1]
        assert seqs(values) == list(range(first, last + 1)) and last + 1 >= committed
        assert first == 0 if capacity is None else len(reader) <= capacity  # a ring keeps its newest rows
        assert np.asarray(values["obs"]["image"])[:, 2, 7, 7].tolist() == [s % 251 for s in range(first, last + 1)]
        assert list(values["note"]) == [f"é{s}" for s in range(first, last + 1)]
    # A new writer clears the marks (the killed one holds no lock any more) and carries on, even
    # while another program's SWMR reader (which holds a shared flock) has the file open.
    other = hold_plain_reader(path / "storage.hdf5")
    try:
        with ReplayBuffer.load_from(path, backend=NP, read_only=False) as writable:
            for i in range(last + 1, last + 4):
                writable.append(row(i))
            writable.flush()
    finally:
        kill(other)
    with ReplayBuffer.load_from(path, backend=NP) as reloaded:
        assert seqs(reloaded.get_at(slice(0, len(reloaded))))[-4:] == list(range(last, last + 4))
    with h5py.File(path / "storage.hdf5", "r"):  # closed cleanly: no marks left
        pass


def _read_in_child(storage, queue):
    try:
        queue.put(seqs(storage.get(np.array([3, 1]))))
    except Exception as error:  # reported to the parent
        queue.put(f"{type(error).__name__}: {error}")


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_fork_and_pickle(tmp_path):
    path = tmp_path / "s.hdf5"
    writer = filled(path, 5, growable=True)
    writer.flush()
    reader = HDF5Storage.load_from(path, row_space())
    assert reader.is_multiprocessing_safe and not writer.is_multiprocessing_safe
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    for storage in (reader, writer):
        child = context.Process(target=_read_in_child, args=(storage, results))
        child.start()
        child.join(timeout=60)
    assert results.get(timeout=10) == [3, 1]  # the reader reopens the file in the child
    assert "UnsupportedOperationError: " in results.get(timeout=10)  # the writer's handles stay in the parent
    assert seqs(writer.get(np.array([4]))) == [4]  # and still work there
    clone = pickle.loads(pickle.dumps(writer))  # a writable storage pickles as a reader of its file
    assert not clone.is_mutable and seqs(clone.get(np.array([0, 4]))) == [0, 4]
    with pytest.raises(ReadOnlyError):
        clone.set(0, row(1))
    writer.extend_length(1)
    writer.set(5, row(5))
    writer.flush()
    assert seqs(pickle.loads(pickle.dumps(reader)).get(np.array([5]))) == [5]
    for storage in (clone, reader, writer):
        storage.close()
    with pytest.raises(ClosedError, match="closed"):
        reader.get(0)


# ---------------------------------------------------------------------------------------------- foreign files


def write_robomimic_like(path, n=50):
    generator = np.random.default_rng(1)
    data = {
        "obs/agentview_image": generator.integers(0, 256, (n, 84, 84, 3), dtype=np.uint8),
        "obs/robot0_eef_pos": generator.normal(size=(n, 3)),
        "actions": generator.uniform(-1, 1, (n, 7)),
        "rewards": generator.uniform(size=n),
        "dones": np.arange(n) == n - 1,
        "language": np.array([f"pick {i}".encode() for i in range(n)]),
    }
    with h5py.File(path, "w") as file:
        demo = file.create_group("data/demo_0")
        demo.attrs["num_samples"] = n
        for name, values in data.items():
            demo.create_dataset(name, data=values, chunks=True if name == "actions" else None)
        demo.create_dataset("states", data=np.zeros((n + 1, 4)))  # another length: left out
        demo.create_dataset("model_file", data="<mujoco/>")  # a scalar: left out
        file.create_dataset("data/demo_1/actions", data=np.zeros((3, 7)))
    return data


def test_robomimic_like_file_as_replay_buffer(tmp_path, backend):
    path = tmp_path / "demo.hdf5"
    data = write_robomimic_like(path)
    buffer = open_hdf5_as_replay_buffer(path, backend, group="data/demo_0")
    space = buffer.single_space
    assert len(buffer) == 50 and not buffer.is_mutable
    assert list(space.keys()) == ["actions", "dones", "language", "obs", "rewards"]
    assert space["obs"]["agentview_image"] == BoxSpace(backend, 0, 255, "uint8", shape=(84, 84, 3))
    assert isinstance(space["dones"], BinarySpace) and space["language"].max_length == 7
    assert buffer.storage.skipped_datasets == ("model_file", "states")
    assert "skipped=['model_file', 'states']" in repr(buffer.storage)
    index = np.random.default_rng(2).integers(0, 50, 256)
    batch = buffer.get_at(backend.asarray(index, dtype=backend.default_index_dtype))
    host = {key: np.asarray(backend.to_numpy(value)) for key, value in batch.items() if key not in ("obs", "language")}
    np.testing.assert_array_equal(host["actions"], data["actions"][index].astype(host["actions"].dtype))
    np.testing.assert_array_equal(host["dones"], data["dones"][index])
    np.testing.assert_array_equal(backend.to_numpy(batch["obs"]["agentview_image"]), data["obs/agentview_image"][index])
    assert list(batch["language"][:3]) == [f"pick {i}" for i in index[:3]]
    with pytest.raises(ReadOnlyError):
        buffer.set_at(0, buffer.get_at(1))
    buffer.dumps(tmp_path / "converted")  # a unibatch buffer from then on
    buffer.close()
    with ReplayBuffer.load_from(tmp_path / "converted", backend=backend) as converted:
        assert_tree_equal(
            converted.get_at(slice(0, 50)),
            open_hdf5_as_replay_buffer(path, backend, group="data/demo_0").get_at(slice(0, 50)),
        )


def test_inference_errors_and_single_datasets(tmp_path):
    path = tmp_path / "demo.hdf5"
    write_robomimic_like(path, n=6)
    space, skipped = infer_hdf5_space(path, NP, group="data/demo_0/actions")
    assert space == BoxSpace(NP, -np.inf, np.inf, "float64", shape=(7,)) and skipped == ()
    whole, skipped = infer_hdf5_space(path, NP)  # 6 rows in most datasets: demo_1 and states are left out
    assert "data/demo_1/actions" in skipped and list(whole["data"].keys()) == ["demo_0"]
    with pytest.raises(FileNotFoundError, match="no group or dataset 'data/demo_9'"):
        infer_hdf5_space(path, NP, group="data/demo_9")
    with h5py.File(tmp_path / "odd.hdf5", "w") as file:
        file["x"] = 3
        file["y"] = np.zeros(4, dtype=[("a", "i4"), ("b", "f4")])
    with pytest.raises(SpaceMismatchError, match="no dataset under '/'"):
        infer_hdf5_space(tmp_path / "odd.hdf5", NP)
    with h5py.File(tmp_path / "text.hdf5", "w") as file:
        file["words"] = np.array(["a", "ünïcode", ""], dtype=h5py.string_dtype())
    buffer = open_hdf5_as_replay_buffer(tmp_path / "text.hdf5", NP, group="words")
    assert buffer.single_space.max_length == 7 and list(buffer.get_at(np.array([1, 2, 0]))) == ["ünïcode", "", "a"]
    buffer.close()


def test_a_reader_slice_past_its_length_refreshes(tmp_path):
    """Regression (review): a slice beyond a reader's known length was clipped instead of refreshed."""
    space = BoxSpace(NumpyComputeBackend, 0, 100, "int64", shape=())
    writer = HDF5Storage.create(space, capacity=None, cache_path=tmp_path / "x.hdf5")
    writer.extend_length(5)
    writer.set(slice(0, 5), np.arange(5))
    writer.flush()
    reader = HDF5Storage.load_from(tmp_path / "x.hdf5", space, read_only=True)
    writer.extend_length(5)
    writer.set(slice(5, 10), np.arange(5, 10))
    writer.flush()
    assert reader.get(slice(3, 10)).tolist() == [3, 4, 5, 6, 7, 8, 9]
    assert reader.get(slice(8, 12)).tolist() == [8, 9]  # then clipped, as a slice is on every storage
    with pytest.raises(IndexError, match="index 12 is out of range for length 10"):
        reader.get(12)
    reader.close()
    writer.close()
