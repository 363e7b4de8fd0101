"""ParquetStorage: the storage conformance suite, its on-disk layout, commits, crashes, and foreign Parquet files."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from unibatch import BinarySpace, BoxSpace, DictSpace, TextSpace  # noqa: E402
from unibatch.buffers import ReplayBuffer  # noqa: E402
from unibatch.errors import (  # noqa: E402
    FormatVersionError,
    ReadOnlyError,
    SpaceMismatchError,
    UnsupportedOperationError,
    UnsupportedSpaceError,
)
from unibatch.integrations.foreign_files import open_parquet_as_replay_buffer  # noqa: E402
from unibatch.spaces import concatenate  # noqa: E402
from unibatch.storages import ParquetStorage, storage_class  # noqa: E402
from unibatch.storages.parquet import infer_parquet_space  # noqa: E402
from unibatch.testing.conformance import assert_tree_equal, stack_samples  # noqa: E402
from unibatch.testing.storage_conformance import StorageTests, storage_sample, storage_space  # noqa: E402


def codec_available(name: str) -> bool:
    """Whether the installed pyarrow can compress with ``name`` (an unknown name is not available)."""
    try:
        return bool(pa.Codec.is_available(name))
    except ValueError:
        return False


class TestParquetStorage(StorageTests):
    """Small part files (4 rows), zstd: every request spans several files."""

    def make_storage(self, backend, space, capacity, path):
        return ParquetStorage.create(space, capacity=capacity, cache_path=path, rows_per_file=4)

    def buffer_storage(self):
        return ParquetStorage, {"rows_per_file": 4}


class TestUncompressedParquetStorage(StorageTests):
    """One part file, no compression, ``/`` separator."""

    def make_storage(self, backend, space, capacity, path):
        return ParquetStorage.create(space, capacity=capacity, cache_path=path, compression=None, separator="/")

    def buffer_storage(self):
        return ParquetStorage, {"compression": None, "separator": "/"}


def files(path):
    return sorted(p.name for p in path.glob("part-*.parquet"))


def sidecar(path):
    return json.loads((path / "parquet.json").read_text())


def fill(storage, backend, start, stop):
    samples = [storage_sample(backend, i) for i in range(start, stop)]
    storage.set(slice(start, stop), concatenate(storage.single_instance_space, samples))
    return samples


# ---------------------------------------------------------------------- layout
def test_registered_and_layout(backend, tmp_path):
    assert storage_class("parquet") is ParquetStorage
    space = storage_space(backend)
    storage = ParquetStorage.create(space, capacity=None, cache_path=tmp_path / "s", rows_per_file=4)
    storage.extend_length(6)
    samples = fill(storage, backend, 0, 6)
    assert files(tmp_path / "s") == []  # nothing is written before a flush
    storage.flush()
    meta = sidecar(tmp_path / "s")
    assert meta["format_version"] == 1 and meta["length"] == 6 and meta["compression"]["obs.image"] == "zstd"
    assert [leaf["column"] for leaf in meta["leaves"]] == ["action", "done", "note", "obs.image", "obs.state"]
    assert [(p["start"], p["stop"]) for p in meta["parts"]] == [(0, 4), (4, 6)]
    table = pq.read_table(tmp_path / "s" / meta["parts"][1]["file"])  # a plain reader sees typed columns
    assert table.schema.field("obs.image").type == pa.fixed_shape_tensor(pa.uint8(), (3, 4, 4))
    assert table.schema.field("done").type == pa.bool_() and table.schema.field("note").type == pa.string()
    image = table.column("obs.image").chunk(0).to_numpy_ndarray()
    np.testing.assert_array_equal(
        image, np.stack([np.asarray(backend.to_numpy(s["obs"]["image"])) for s in samples[4:]])
    )
    assert table.column("note").to_pylist() == [s["note"] for s in samples[4:]]
    storage.close()


def test_bare_leaf_is_column_data_and_bool_tensors_are_nested_lists(backend, tmp_path):
    box = BoxSpace(backend, 0, 1, "float32", shape=(2, 3))
    storage = ParquetStorage.create(box, capacity=2, cache_path=tmp_path / "box")
    storage.set(1, backend.asarray(np.ones((2, 3), np.float32)))
    storage.flush()
    assert pq.read_table(tmp_path / "box" / files(tmp_path / "box")[0]).column_names == ["data"]
    masks = DictSpace(backend, {"mask": BinarySpace(backend, (2, 2))})
    storage = ParquetStorage.create(masks, capacity=None, cache_path=tmp_path / "mask")
    storage.extend_length(1)
    value = np.array([[True, False], [False, True]])
    storage.set(0, {"mask": backend.asarray(value)})
    storage.flush()
    column = pq.read_table(tmp_path / "mask" / files(tmp_path / "mask")[0]).column("mask")
    assert column.type == pa.list_(pa.list_(pa.bool_(), 2), 2) and column.to_pylist() == [value.tolist()]
    reopened = ParquetStorage.load_from(tmp_path / "mask", masks)
    np.testing.assert_array_equal(np.asarray(backend.to_numpy(reopened.get(0)["mask"])), value)


def test_compression_per_column(backend, tmp_path):
    space = storage_space(backend)
    storage = ParquetStorage.create(
        space, capacity=3, cache_path=tmp_path / "s", compression={"obs.image": None, "note": "snappy"}
    )
    fill(storage, backend, 0, 3)
    storage.flush()
    metadata = pq.ParquetFile(tmp_path / "s" / files(tmp_path / "s")[0]).metadata.row_group(0)
    codecs = {metadata.column(i).path_in_schema.split(".list")[0]: metadata.column(i).compression for i in range(5)}
    assert codecs == {
        "action": "ZSTD",
        "done": "ZSTD",
        "note": "SNAPPY",
        "obs.image": "UNCOMPRESSED",
        "obs.state": "ZSTD",
    }
    with pytest.raises(ValueError, match=r"unknown columns \['obs.depth'\]"):
        ParquetStorage.create(space, capacity=3, cache_path=tmp_path / "t", compression={"obs.depth": None})
    # The rule: a codec is accepted exactly when the installed pyarrow has it (LZMA is missing from its wheels,
    # and some releases do not know the name at all).
    if codec_available("lzma"):
        ParquetStorage.create(space, capacity=3, cache_path=tmp_path / "lzma", compression="lzma").close()
    else:
        with pytest.raises(ValueError, match="'lzma' of column 'action' is not available"):
            ParquetStorage.create(space, capacity=3, cache_path=tmp_path / "t", compression="lzma")


# ---------------------------------------------------------------------- writes and commits
def test_fixed_capacity_writes_only_touched_cells(backend, tmp_path):
    space = storage_space(backend)
    storage = ParquetStorage.create(space, capacity=10, cache_path=tmp_path / "s", rows_per_file=4)
    zero = storage.get(0)
    storage.set(5, storage_sample(backend, 5))
    storage.flush()
    assert [(p["start"], p["stop"]) for p in sidecar(tmp_path / "s")["parts"]] == [(4, 8)]
    reopened = ParquetStorage.load_from(tmp_path / "s", space, capacity=10)
    assert_tree_equal(reopened.get(5), storage_sample(backend, 5))
    for row in (0, 4, 9):
        assert_tree_equal(reopened.get(row), zero)
    assert zero["note"] == "" and not np.any(np.asarray(backend.to_numpy(zero["obs"]["image"])))


def test_overwrite_rewrites_only_the_touched_file(backend, tmp_path):
    space = storage_space(backend)
    storage = ParquetStorage.create(space, capacity=None, cache_path=tmp_path / "s", rows_per_file=4)
    storage.extend_length(12)
    fill(storage, backend, 0, 12)
    storage.flush()
    before = {(p["start"], p["file"]) for p in sidecar(tmp_path / "s")["parts"]}
    storage.set(5, storage_sample(backend, 40))
    assert_tree_equal(storage.get(5), storage_sample(backend, 40))  # readable before the flush
    storage.flush()
    after = {(p["start"], p["file"]) for p in sidecar(tmp_path / "s")["parts"]}
    assert {start for start, _ in before - after} == {4} and len(after - before) == 1
    assert files(tmp_path / "s") == sorted(name for _, name in after)  # the replaced file is gone
    reopened = ParquetStorage.load_from(tmp_path / "s", space)
    assert_tree_equal(reopened.get(5), storage_sample(backend, 40))
    assert_tree_equal(reopened.get(6), storage_sample(backend, 6))


def test_small_flushes_keep_few_files_and_never_rewrite_full_ones(backend, tmp_path):
    space = storage_space(backend, text=False)
    storage = ParquetStorage.create(space, capacity=None, cache_path=tmp_path / "s", rows_per_file=16)
    full_files = {}
    for i in range(70):
        storage.extend_length(1)
        storage.set(i, storage_sample(backend, i, text=False))
        storage.flush()
        parts = sidecar(tmp_path / "s")["parts"]
        assert len(parts) <= (i + 1) // 16 + 4  # full files + at most log2(16) partial ones
        for part in parts:
            if part["stop"] - part["start"] == 16:
                assert full_files.setdefault(part["start"], part["file"]) == part["file"]
    assert sorted(full_files) == [0, 16, 32, 48]
    reopened = ParquetStorage.load_from(tmp_path / "s", space)
    assert_tree_equal(reopened.get(slice(0, 70)), stack_samples([storage_sample(backend, i, False) for i in range(70)]))


def test_growable_appends_across_files_shrink_and_reopen(backend, tmp_path):
    space = storage_space(backend)
    storage = ParquetStorage.create(space, capacity=None, cache_path=tmp_path / "s", rows_per_file=4)
    storage.extend_length(11)
    samples = fill(storage, backend, 0, 11)
    storage.flush()
    storage.shrink_length(6)  # to 5 rows: cuts into the file of rows 4..7
    storage.extend_length(2)
    storage.set(slice(5, 7), concatenate(space, [storage_sample(backend, 20), storage_sample(backend, 21)]))
    storage.flush()
    assert sidecar(tmp_path / "s")["length"] == 7
    reopened = ParquetStorage.load_from(tmp_path / "s", space, read_only=False)
    expected = samples[:5] + [storage_sample(backend, 20), storage_sample(backend, 21)]
    assert len(reopened) == 7
    assert_tree_equal(reopened.get(slice(0, 7)), stack_samples(expected))
    order = backend.asarray([6, 0, 4, 6, 3], dtype=backend.default_index_dtype)
    assert_tree_equal(reopened.get(order), stack_samples([expected[i] for i in (6, 0, 4, 6, 3)]))
    reopened.clear()
    reopened.flush()
    assert len(ParquetStorage.load_from(tmp_path / "s", space)) == 0 and files(tmp_path / "s") == []


def test_unflushed_rows_spill_to_files(backend, tmp_path):
    space = storage_space(backend, text=False)
    storage = ParquetStorage.create(space, capacity=None, cache_path=tmp_path / "s", rows_per_file=2)
    for i in range(9):
        storage.extend_length(1)
        storage.set(i, storage_sample(backend, i, text=False))
    assert sidecar(tmp_path / "s")["length"] == 8  # 4 files' worth of rows were written on their own
    assert_tree_equal(storage.get(8), storage_sample(backend, 8, text=False))


def test_bad_values_leave_the_store_unchanged(backend, tmp_path):
    space = storage_space(backend)
    storage = ParquetStorage.create(space, capacity=4, cache_path=tmp_path / "s", rows_per_file=2)
    samples = fill(storage, backend, 0, 4)
    storage.flush()
    before = files(tmp_path / "s")
    wrong_shape = storage_sample(backend, 9)
    wrong_shape["obs"]["state"] = backend.asarray(np.zeros(4, np.float32))
    wrong_dtype = storage_sample(backend, 9)
    wrong_dtype["action"] = backend.asarray(np.zeros(2, np.float32))
    too_long = storage_sample(backend, 9)
    too_long["note"] = "abcdefabc"
    cases = ((wrong_shape, r"'obs.state': expected shape \(1, 5\) or \(5,\), got \(4,\)"),)
    cases += ((wrong_dtype, "'action': expected dtype int32, got float32"), (too_long, "at most 6 characters"))
    for value, message in cases:
        with pytest.raises(SpaceMismatchError, match=message):
            storage.set(0, value)
    batch = concatenate(space, [storage_sample(backend, 9), storage_sample(backend, 9)])
    batch["obs"]["image"] = backend.asarray(np.zeros((3, 3, 4, 4), np.uint8))
    with pytest.raises(SpaceMismatchError, match="'obs.image'"):
        storage.set(slice(1, 3), batch)
    storage.flush()
    assert files(tmp_path / "s") == before
    assert_tree_equal(storage.get(slice(0, 4)), stack_samples(samples))


def test_unsupported_spaces_and_options(backend, tmp_path):
    empty = DictSpace(backend, {"a": BoxSpace(backend, 0, 1, "float32", shape=(2, 0))})
    with pytest.raises(UnsupportedSpaceError, match=r"column 'a': Parquet stores non-empty leaves, got shape \(2, 0\)"):
        ParquetStorage.create(empty, capacity=2, cache_path=tmp_path / "a")
    clash = DictSpace(backend, {"a.b": BinarySpace(backend, ()), "a": {"b": BinarySpace(backend, ())}})
    with pytest.raises(UnsupportedSpaceError, match=r"share the Parquet column names \['a.b'\]"):
        ParquetStorage.create(clash, capacity=2, cache_path=tmp_path / "b")
    ParquetStorage.create(clash, capacity=2, cache_path=tmp_path / "c", separator="__").close()
    space = storage_space(backend)
    with pytest.raises(TypeError, match="unexpected arguments"):
        ParquetStorage.create(space, capacity=2, cache_path=tmp_path / "d", row_per_file=3)
    with pytest.raises(UnsupportedOperationError, match="share read-only copies"):
        ParquetStorage.create(space, capacity=2, cache_path=tmp_path / "d", multiprocessing=True)
    with pytest.raises(UnsupportedOperationError, match="needs a cache_path"):
        ParquetStorage.create(space, capacity=2)
    with pytest.raises(FileExistsError, match="not empty"):
        ParquetStorage.create(space, capacity=2, cache_path=tmp_path / "c")


def test_load_errors(backend, tmp_path):
    space = storage_space(backend)
    ParquetStorage.create(space, capacity=3, cache_path=tmp_path / "s").close()
    with pytest.raises(SpaceMismatchError, match="stores columns .*'note'.* but the space has"):
        ParquetStorage.load_from(tmp_path / "s", storage_space(backend, text=False))
    with pytest.raises(SpaceMismatchError, match="holds capacity 3, expected 4"):
        ParquetStorage.load_from(tmp_path / "s", space, capacity=4)
    with pytest.raises(FileNotFoundError, match="parquet.json is missing"):
        ParquetStorage.load_from(tmp_path / "nothing", space)
    meta = sidecar(tmp_path / "s")
    meta["format_version"] = 99
    (tmp_path / "s" / "parquet.json").write_text(json.dumps(meta))
    with pytest.raises(FormatVersionError, match="format_version 99"):
        ParquetStorage.load_from(tmp_path / "s", space)


# ---------------------------------------------------------------------- sharing and copies
def test_dumps_copy_is_independent(backend, tmp_path):
    space = storage_space(backend)
    storage = ParquetStorage.create(space, capacity=None, cache_path=tmp_path / "s", rows_per_file=4)
    storage.extend_length(6)
    samples = fill(storage, backend, 0, 6)
    storage.dumps(tmp_path / "copy")
    storage.set(1, storage_sample(backend, 30))
    storage.shrink_length(2)
    storage.flush()
    copy = ParquetStorage.load_from(tmp_path / "copy", space)
    assert len(copy) == 6
    assert_tree_equal(copy.get(slice(0, 6)), stack_samples(samples))


def test_reader_follows_commits_and_replaced_files(backend, tmp_path):
    space = storage_space(backend)
    writer = ParquetStorage.create(space, capacity=None, cache_path=tmp_path / "s", rows_per_file=4)
    writer.extend_length(3)
    fill(writer, backend, 0, 3)
    writer.flush()
    reader = pickle.loads(pickle.dumps(ParquetStorage.load_from(tmp_path / "s", space)))
    assert reader.is_multiprocessing_safe and len(reader) == 3
    writer.extend_length(3)
    fill(writer, backend, 3, 6)
    writer.flush()  # rows 0..2 move to a new file, the old one is deleted
    assert_tree_equal(reader.get(5), storage_sample(backend, 5))  # beyond its length: re-reads parquet.json
    writer.set(0, storage_sample(backend, 9))
    writer.flush()
    stale = ParquetStorage.load_from(tmp_path / "s", space)
    writer.set(1, storage_sample(backend, 8))
    writer.flush()  # the file stale lists is gone now
    assert_tree_equal(stale.get(1), storage_sample(backend, 8))
    with pytest.raises(ReadOnlyError):
        stale.set(0, storage_sample(backend, 0))
    with pytest.raises(UnsupportedOperationError, match="flush it and pickle a read-only one"):
        pickle.dumps(writer)


def test_column_view_reads_and_writes_one_leaf(backend, tmp_path):
    space = storage_space(backend)
    storage = ParquetStorage.create(space, capacity=4, cache_path=tmp_path / "s", rows_per_file=2)
    samples = fill(storage, backend, 0, 4)
    storage.flush()
    column = storage.get_column(["obs", "state"])
    index = backend.asarray([3, 1], dtype=backend.default_index_dtype)
    assert_tree_equal(column.get(index), stack_samples([samples[3]["obs"]["state"], samples[1]["obs"]["state"]]))
    column.set(2, samples[0]["obs"]["state"])
    assert_tree_equal(storage.get(2)["obs"]["state"], samples[0]["obs"]["state"])
    assert_tree_equal(storage.get(2)["obs"]["image"], samples[2]["obs"]["image"])


def test_writable_open_deletes_unlisted_files(backend, tmp_path):
    space = storage_space(backend)
    storage = ParquetStorage.create(space, capacity=2, cache_path=tmp_path / "s")
    fill(storage, backend, 0, 2)
    storage.flush()
    listed = files(tmp_path / "s")
    (tmp_path / "s" / "part-000099.parquet").write_bytes(b"left by a killed writer")
    ParquetStorage.load_from(tmp_path / "s", space).close()
    assert len(files(tmp_path / "s")) == 2  # readers never delete
    ParquetStorage.load_from(tmp_path / "s", space, read_only=False).close()
    assert files(tmp_path / "s") == listed


# ---------------------------------------------------------------------- a writer killed at any point
WRITER = """
import sys
import numpy as np
from unibatch import BoxSpace, DictSpace
from unibatch.backends import backend_from_name
from unibatch.buffers import ReplayBuffer
from unibatch.storages import ParquetStorage

backend = backend_from_name("numpy")
space = DictSpace(backend, {"i": BoxSpace(backend, 0, 10**9, "int64", shape=()),
                            "x": BoxSpace(backend, -1e9, 1e9, "float32", shape=(3,))})
capacity = None if sys.argv[2] == "none" else int(sys.argv[2])
buffer = ReplayBuffer.create(ParquetStorage, space, cache_path=sys.argv[1], capacity=capacity, rows_per_file=8)
i = 0
while True:
    buffer.append({"i": i, "x": np.full(3, i, np.float32)})
    i += 1
    if i % 5 == 0:
        buffer.flush()
        print(i, flush=True)
"""


@pytest.mark.parametrize("capacity", [None, 16], ids=["growable", "ring"])
def test_sigkilled_writer_leaves_a_committed_prefix(tmp_path, capacity):
    from unibatch.backends import backend_from_name

    path = tmp_path / "buffer"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(capacity).lower()], stdout=subprocess.PIPE, text=True
    )
    try:
        flushed = 0
        while flushed < 60:
            flushed = int(writer.stdout.readline())
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    backend = backend_from_name("numpy")
    with ReplayBuffer.load_from(path, backend=backend) as buffer:
        ids = np.asarray(buffer.get_at(slice(0, len(buffer)))["i"])
        x = np.asarray(buffer.get_at(slice(0, len(buffer)))["x"])
    assert len(ids) >= (flushed if capacity is None else capacity - 1)
    assert ids[-1] >= flushed - 1 and np.array_equal(np.diff(ids), np.ones(len(ids) - 1))
    np.testing.assert_array_equal(x, np.repeat(ids[:, None], 3, axis=1).astype(np.float32))
    with ReplayBuffer.load_from(path, backend=backend, read_only=False) as buffer:  # the writer's leftovers go
        buffer.append({"i": ids[-1] + 1, "x": np.full(3, ids[-1] + 1, np.float32)})
        buffer.flush()
        assert int(buffer.get_at(-1)["i"]) == ids[-1] + 1


# ---------------------------------------------------------------------- Parquet written by other tools
def write_lerobot_like(path, episode, frames, variable_action=False):
    state = np.arange(frames * 6, dtype=np.float32).reshape(frames, 6) + 1000 * episode
    action = -state
    action_type = pa.list_(pa.float32()) if variable_action else pa.list_(pa.float32(), 6)
    table = pa.table(
        {
            "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), 6),
            "action": pa.array(list(action), type=action_type),
            "timestamp": pa.array(np.arange(frames, dtype=np.float32) / 30),
            "episode_index": pa.array(np.full(frames, episode, np.int64)),
            "frame_index": pa.array(np.arange(frames, dtype=np.int64)),
            "index": pa.array(np.arange(frames, dtype=np.int64) + 100 * episode),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=4)
    return state


def test_open_foreign_parquet_as_replay_buffer(backend, tmp_path):
    root = tmp_path / "data"
    first = write_lerobot_like(root / "chunk-000" / "episode_000000.parquet", 0, 10)
    second = write_lerobot_like(root / "chunk-000" / "episode_000001.parquet", 1, 7, variable_action=True)
    space = infer_parquet_space(root, backend)
    assert sorted(space.keys()) == ["action", "episode_index", "frame_index", "index", "observation.state", "timestamp"]
    assert space["observation.state"].shape == (6,) and space["action"].shape == (6,)
    assert space["index"].shape == () and space["timestamp"].dtype == backend.as_dtype("float32")
    buffer = open_parquet_as_replay_buffer(root, backend)
    assert len(buffer) == 17 and not buffer.is_mutable
    index = backend.asarray([12, 0, 16, 9, 12], dtype=backend.default_index_dtype)
    batch = buffer.get_at(index)
    states = np.concatenate([first, second])
    np.testing.assert_array_equal(np.asarray(backend.to_numpy(batch["observation.state"])), states[[12, 0, 16, 9, 12]])
    np.testing.assert_array_equal(np.asarray(backend.to_numpy(batch["action"])), -states[[12, 0, 16, 9, 12]])
    assert np.asarray(backend.to_numpy(batch["episode_index"])).tolist() == [1, 0, 1, 0, 1]
    assert int(buffer.get_at(10)["index"]) == 100
    clone = pickle.loads(pickle.dumps(buffer.storage))
    np.testing.assert_array_equal(np.asarray(backend.to_numpy(clone.get(16)["observation.state"])), states[16])
    buffer.storage.dumps(tmp_path / "copy")  # a unibatch copy of foreign files
    copy = ParquetStorage.load_from(tmp_path / "copy", space)
    np.testing.assert_array_equal(np.asarray(backend.to_numpy(copy.get(slice(0, 17))["action"])), -states)


def test_foreign_columns_with_strings_and_unsupported_types(backend, tmp_path):
    path = tmp_path / "file.parquet"
    table = pa.table(
        {
            "task": pa.array(["pick", "place the cube", ""]),
            "done": pa.array([False, False, True]),
            "stamp": pa.array([1, 2, 3], type=pa.timestamp("ms")),
        }
    )
    pq.write_table(table, path)
    with pytest.raises(UnsupportedSpaceError, match="column 'stamp' has Arrow type timestamp"):
        infer_parquet_space(path, backend)
    buffer = open_parquet_as_replay_buffer(path, backend, columns=["task", "done"])
    assert isinstance(buffer.single_space["task"], TextSpace) and buffer.single_space["task"].max_length == 14
    assert isinstance(buffer.single_space["done"], BinarySpace)
    assert buffer.get_at(1)["task"] == "place the cube" and bool(buffer.get_at(2)["done"])
    ragged = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"a": pa.array([[1.0], [1.0, 2.0]])}), ragged)
    with pytest.raises(SpaceMismatchError, match="rows hold lists of 1 to 2 items"):
        infer_parquet_space(ragged, backend)
