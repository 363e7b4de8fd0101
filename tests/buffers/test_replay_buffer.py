"""Unit tests of ``ReplayBuffer`` on every backend, over memory, shared-memory and memmap storages.

The oracle is always a plain list of sample numbers: ``storage_sample(backend, i)`` is row ``i``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from unibatch.backends import backend_from_name
from unibatch.batches import BatchBase
from unibatch.buffers import ReplayBuffer
from unibatch.errors import (
    FormatVersionError,
    IndexOutOfRangeError,
    ReadOnlyError,
    SpaceMismatchError,
    UnsupportedOperationError,
)
from unibatch.spaces import batch_space, concatenate, flatten_data
from unibatch.storages import MemmapStorage, MemoryStorage
from unibatch.testing.conformance import BatchCase, BatchTests, assert_tree_equal, host, positions, stack_samples
from unibatch.testing.storage_conformance import storage_sample, storage_space

NUMPY = backend_from_name("numpy")
KINDS = ("memory", "shared", "memmap")
"""``memory``: MemoryStorage; ``shared``: MemoryStorage(multiprocessing=True), a memmap in /dev/shm;
``memmap``: a persistent buffer with a cache_path."""


# ---------------------------------------------------------------------------------------------- helpers


def make_buffer(kind: str, backend, capacity: int | None, tmp_path: Path, text: bool = True) -> ReplayBuffer:
    space = storage_space(backend, text)
    if kind == "memory":  # (few distinct array sizes: each costs a JAX compilation)
        return ReplayBuffer.create(MemoryStorage, space, capacity=capacity, initial_rows=8)
    if kind == "shared":
        return ReplayBuffer.create(MemoryStorage, space, capacity=capacity, multiprocessing=True, initial_rows=2)
    assert kind == "memmap"
    return ReplayBuffer.create(None, space, cache_path=tmp_path / "rb", capacity=capacity, initial_rows=2)


def close_buffer(buffer: ReplayBuffer) -> None:
    """Close the buffer, and remove any /dev/shm directory a shared storage leaves behind."""
    shared_dir = getattr(buffer.storage, "cache_filename", None) if buffer.storage.is_multiprocessing_safe else None
    buffer.close()
    if shared_dir is not None and str(shared_dir).startswith("/dev/shm/unibatch-"):
        shutil.rmtree(Path(shared_dir).parent, ignore_errors=True)


@pytest.fixture
def buffers():
    """Collects buffers made by a test and closes them afterwards."""
    made: list[ReplayBuffer] = []
    yield made
    for buffer in made:
        close_buffer(buffer)


def sample(backend, i: int, text: bool = True) -> dict[str, Any]:
    return storage_sample(backend, i, text)


def batch_of(backend, ids, text: bool = True) -> Any:
    return concatenate(storage_space(backend, text), [sample(backend, i, text) for i in ids])


def expected_rows(backend, ids, text: bool = True) -> Any:
    return stack_samples([sample(backend, i, text) for i in ids])


def assert_holds(buffer: ReplayBuffer, backend, ids: list[int], text: bool = True) -> None:
    """``buffer`` holds exactly rows ``ids`` in logical order."""
    assert len(buffer) == buffer.count == len(ids)
    if ids:
        assert_tree_equal(buffer.get_at(slice(None)), expected_rows(backend, ids, text))
        assert_tree_equal(buffer.get_at(0), sample(backend, ids[0], text))
        assert_tree_equal(buffer.get_at(-1), sample(backend, ids[-1], text))


def fill_wrapped(buffer: ReplayBuffer, backend, text: bool = True) -> list[int]:
    """Extend 3, append 1, extend 4, append 1 (rows 0..8): a capacity-5 ring wraps with offset 4."""
    buffer.extend(batch_of(backend, range(3), text))
    buffer.append(sample(backend, 3, text))
    buffer.extend(batch_of(backend, range(4, 8), text))
    buffer.append(sample(backend, 8, text))
    ids = list(range(9))
    return ids if buffer.capacity is None else ids[-buffer.capacity :]


def file_bytes(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def physical_snapshot(buffer: ReplayBuffer) -> Any:
    """Every physical slot of the storage (also the ones outside the logical range)."""
    return host(buffer.storage.get(slice(0, len(buffer.storage))))


def metadata(path: Path) -> dict[str, Any]:
    return json.loads((path / "metadata.json").read_text())


# ---------------------------------------------------------------------------------------------- conformance


class _WrappedBufferTests(BatchTests):
    """The BatchBase conformance suite on a buffer whose ring has wrapped (offset != 0)."""

    kind = "memory"
    capacity: int | None = 5
    text = False

    @pytest.fixture
    def case(self, backend, tmp_path):
        buffer = make_buffer(self.kind, backend, self.capacity, tmp_path, self.text)
        ids = fill_wrapped(buffer, backend, self.text)
        if self.capacity is not None:
            assert buffer.offset == 4
        yield BatchCase(buffer, [sample(backend, i, self.text) for i in ids], new_sample=sample(backend, 77, self.text))
        close_buffer(buffer)


class TestWrappedMemory(_WrappedBufferTests):
    kind = "memory"


class TestWrappedShared(_WrappedBufferTests):
    kind = "shared"


class TestWrappedMemmapText(_WrappedBufferTests):
    kind, text = "memmap", True


class TestGrowableMemory(_WrappedBufferTests):
    kind, capacity = "memory", None


class TestGrowableMemmap(_WrappedBufferTests):
    kind, capacity = "memmap", None


class TestLoadedReadOnlyMemmap(_WrappedBufferTests):
    """A wrapped buffer flushed and reopened read-only (writes must raise ReadOnlyError)."""

    @pytest.fixture
    def case(self, backend, tmp_path):
        buffer = make_buffer("memmap", backend, 5, tmp_path, text=False)
        ids = fill_wrapped(buffer, backend, text=False)
        buffer.flush()
        buffer.close()
        loaded = ReplayBuffer.load_from(tmp_path / "rb", backend=backend)
        assert not loaded.is_mutable and loaded.offset == 4
        yield BatchCase(loaded, [sample(backend, i, False) for i in ids], new_sample=sample(backend, 77, False))
        loaded.close()


# ---------------------------------------------------------------------------------------------- ring semantics

parametrize_kinds = pytest.mark.parametrize("kind", KINDS)


@parametrize_kinds
def test_worked_examples_of_the_spec(kind, backend, tmp_path, buffers):
    c = 6
    buffer = make_buffer(kind, backend, c, tmp_path)
    buffers.append(buffer)
    buffer.extend(batch_of(backend, range(c - 1)))
    buffer.extend(batch_of(backend, [100]))
    assert (buffer.count, buffer.offset) == (c, 0)
    assert_holds(buffer, backend, [*range(c - 1), 100])

    buffer.clear()
    assert (buffer.count, buffer.offset) == (0, 0)
    buffer.extend(batch_of(backend, range(10, 10 + c - 2)))
    buffer.extend(batch_of(backend, range(50, 55)))
    assert (buffer.count, buffer.offset) == (c, 3)
    assert_holds(buffer, backend, [*range(10, 10 + c - 2), *range(50, 55)][-c:])

    for n in (c, c + 1, 3 * c + 2):
        buffer.extend(batch_of(backend, range(200, 200 + n)))
        assert (buffer.count, buffer.offset) == (c, 0)
        assert_holds(buffer, backend, list(range(200 + n - c, 200 + n)))


@parametrize_kinds
@pytest.mark.parametrize("capacity", [5, None])
def test_extend_larger_than_capacity_keeps_the_last_rows(kind, capacity, backend, tmp_path, buffers):
    buffer = make_buffer(kind, backend, capacity, tmp_path)
    buffers.append(buffer)
    buffer.extend(batch_of(backend, range(3)))
    buffer.extend(batch_of(backend, range(10, 18)))
    expected = [0, 1, 2, *range(10, 18)]
    assert_holds(buffer, backend, expected if capacity is None else expected[-capacity:])
    if capacity is not None:
        assert buffer.offset == 0
        buffer.append(sample(backend, 30))  # then wraps normally
        assert buffer.offset == 1
        assert_holds(buffer, backend, [14, 15, 16, 17, 30])


@parametrize_kinds
@pytest.mark.parametrize("capacity", [5, 1, None])
def test_append_fast_path_equals_extend_of_one(kind, capacity, backend, tmp_path, buffers):
    by_append = make_buffer(kind, backend, capacity, tmp_path / "a")
    by_extend = make_buffer(kind, backend, capacity, tmp_path / "b")
    buffers += [by_append, by_extend]
    for i in range(13):
        by_append.append(sample(backend, i))
        by_extend.extend(batch_of(backend, [i]))
        assert (by_append.count, by_append.offset) == (by_extend.count, by_extend.offset)
        if i in (0, 4, 5, 12):
            assert_tree_equal(physical_snapshot(by_append), physical_snapshot(by_extend))
    expected = list(range(13)) if capacity is None else list(range(13))[-capacity:]
    assert_holds(by_append, backend, expected)
    assert_holds(by_extend, backend, expected)
    if kind == "memmap":
        by_append.flush()
        by_extend.flush()
        assert metadata(tmp_path / "a" / "rb") == metadata(tmp_path / "b" / "rb")


@parametrize_kinds
def test_flattened_reads_and_writes_honour_the_ring(kind, backend, tmp_path, buffers):
    """Decision 6: get_flattened_at maps the index through the ring exactly as get_at does."""
    buffer = make_buffer(kind, backend, 5, tmp_path, text=False)
    buffers.append(buffer)
    ids = fill_wrapped(buffer, backend, text=False)
    space = buffer.single_space
    batched = batch_space(space, 1)
    for index in (
        0,
        2,
        -1,
        slice(None),
        slice(1, 4),
        slice(None, None, -2),
        ...,
        [4, 0, 2],
        np.array([True, False] * 2 + [True]),
    ):
        flat = buffer.get_flattened_at(index)
        data = buffer.get_at(index)
        if isinstance(index, int):
            assert_tree_equal(flat, flatten_data(space, data))
            assert_tree_equal(flat, flatten_data(space, sample(backend, ids[index], False)))
        else:
            assert_tree_equal(flat, flatten_data(batched, data, start_dim=1))
            chosen, _ = positions(index, 5)
            model = flatten_data(batched, batch_of(backend, [ids[p] for p in chosen], False), start_dim=1)
            assert_tree_equal(flat, model)
    assert tuple(buffer.get_flattened_at(...).shape)[0] == 5  # only the count rows, in logical order

    # Flattened writes go through the same mapping.
    new = flatten_data(space, sample(backend, 60, False))
    buffer.set_flattened_at(1, new)
    ids[1] = 60
    buffer.append_flattened(flatten_data(space, sample(backend, 61, False)))
    ids = [*ids[1:], 61]
    buffer.extend_flattened(flatten_data(batched, batch_of(backend, [62, 63], False), start_dim=1))
    ids = [*ids[2:], 62, 63]
    assert_holds(buffer, backend, ids, text=False)
    two = flatten_data(batched, batch_of(backend, [70, 71], False), start_dim=1)
    buffer.set_flattened_at([0, -1], two)
    ids[0], ids[-1] = 70, 71
    assert_holds(buffer, backend, ids, text=False)


@parametrize_kinds
def test_set_at_after_wraparound(kind, backend, tmp_path, buffers):
    buffer = make_buffer(kind, backend, 5, tmp_path)
    buffers.append(buffer)
    ids = fill_wrapped(buffer, backend)
    buffer.set_at(0, sample(backend, 40))
    buffer.set_at(-1, sample(backend, 41))
    buffer.set_at(slice(1, 3), batch_of(backend, [42, 43]))
    buffer.set_at(backend.asarray([3], dtype=backend.default_index_dtype), batch_of(backend, [44]))
    assert ids != [40, 42, 43, 44, 41]
    assert_holds(buffer, backend, [40, 42, 43, 44, 41])
    # Nothing moved: the oldest row is still the one at the ring offset.
    assert buffer.offset == 4
    assert_tree_equal(buffer.storage.get(4), sample(backend, 40))


@parametrize_kinds
@pytest.mark.parametrize("capacity", [5, None])
def test_clear_resets_count_and_offset(kind, capacity, backend, tmp_path, buffers):
    buffer = make_buffer(kind, backend, capacity, tmp_path)
    buffers.append(buffer)
    fill_wrapped(buffer, backend)
    buffer.clear()
    assert (len(buffer), buffer.count, buffer.offset) == (0, 0, 0)
    with pytest.raises(IndexOutOfRangeError, match="length 0"):
        buffer.get_at(0)
    empty = buffer.get_at(slice(None))
    assert all(np.shape(leaf)[0] == 0 for leaf in _leaves(empty))
    buffer.clear()  # clearing an empty buffer is fine
    buffer.extend(batch_of(backend, [20, 21]))
    assert buffer.offset == 0
    assert_holds(buffer, backend, [20, 21])
    if kind == "memmap":
        buffer.clear()
        loaded = ReplayBuffer.load_from(tmp_path / "rb", backend=backend)  # clear commits
        assert len(loaded) == 0 and loaded.offset == 0
        loaded.close()


def _leaves(tree: Any) -> list[Any]:
    import optree

    return optree.tree_leaves(host(tree))


@parametrize_kinds
def test_get_column_follows_the_ring_and_later_writes(kind, backend, tmp_path, buffers):
    buffer = make_buffer(kind, backend, 5, tmp_path)
    buffers.append(buffer)
    ids = fill_wrapped(buffer, backend)
    column = buffer.get_column(["obs", "state"])
    assert isinstance(column, BatchBase)
    assert len(column) == 5
    expected = np.stack([host(sample(backend, i)["obs"]["state"]) for i in ids])
    assert_tree_equal(column.get_at(slice(None)), expected)
    assert_tree_equal(column.get_at(-1), expected[-1])
    buffer.append(sample(backend, 30))  # the view is live
    assert_tree_equal(column.get_at(-1), host(sample(backend, 30)["obs"]["state"]))
    assert_tree_equal(column.get_at(0), expected[1])
    note = buffer.get_column(["note"])
    assert note.get_at(-1) == sample(backend, 30)["note"]
    with pytest.raises(SpaceMismatchError, match="does not exist"):
        buffer.get_column(["obs", "nope"])


def test_empty_extend_is_a_no_op(backend, tmp_path, buffers):
    buffer = make_buffer("memmap", backend, 3, tmp_path)
    buffers.append(buffer)
    fill_wrapped(buffer, backend)
    before = (buffer.count, buffer.offset, file_bytes(tmp_path / "rb"))
    buffer.extend(batch_of(backend, []))
    assert (buffer.count, buffer.offset, file_bytes(tmp_path / "rb")) == before


def test_remove_is_unsupported(backend, tmp_path, buffers):
    buffer = make_buffer("memory", backend, 3, tmp_path)
    buffers.append(buffer)
    buffer.append(sample(backend, 0))
    with pytest.raises(UnsupportedOperationError, match="remove_at"):
        buffer.remove_at(0)
    assert_holds(buffer, backend, [0])


# ---------------------------------------------------------------------------------------------- persistence


@parametrize_kinds
@pytest.mark.parametrize("capacity", [5, None])
def test_dumps_to_another_directory_and_load_from(kind, capacity, backend, tmp_path, buffers):
    buffer = make_buffer(kind, backend, capacity, tmp_path)
    buffers.append(buffer)
    ids = fill_wrapped(buffer, backend)
    target = tmp_path / "copy"
    buffer.dumps(target)
    meta = metadata(target)
    assert meta["format_version"] == 1 and meta["type"] == "ReplayBuffer"
    assert (meta["count"], meta["offset"], meta["capacity"]) == (len(ids), buffer.offset, capacity)
    assert meta["storage"]["name"] == ("memory" if kind == "memory" else "memmap")
    assert "." not in meta["storage"]["name"]  # a registered name, never an import path

    loaded = ReplayBuffer.load_from(target, backend=backend)
    buffers.append(loaded)
    assert not loaded.is_mutable
    assert (loaded.count, loaded.offset, loaded.capacity) == (buffer.count, buffer.offset, capacity)
    assert loaded.single_space == buffer.single_space
    assert loaded.cache_path == target
    assert_holds(loaded, backend, ids)

    # The copy is independent of the source.
    buffer.append(sample(backend, 50))
    assert_holds(loaded, backend, ids)

    writable = ReplayBuffer.load_from(target, backend=backend, read_only=False)
    buffers.append(writable)
    writable.append(sample(backend, 60))
    expected = [*ids, 60] if capacity is None else [*ids, 60][-capacity:]
    assert_holds(writable, backend, expected)


@pytest.mark.parametrize("capacity", [5, None])
def test_flush_and_load_from_own_cache_path(capacity, backend, tmp_path, buffers):
    buffer = make_buffer("memmap", backend, capacity, tmp_path)
    buffers.append(buffer)
    ids = fill_wrapped(buffer, backend)
    buffer.flush()
    loaded = ReplayBuffer.load_from(tmp_path / "rb", backend=backend)
    buffers.append(loaded)
    assert (loaded.count, loaded.offset) == (buffer.count, buffer.offset)
    assert_holds(loaded, backend, ids)
    # dumps to its own path is a flush.
    buffer.append(sample(backend, 70))
    buffer.dumps(tmp_path / "rb")
    again = ReplayBuffer.load_from(tmp_path / "rb", backend=backend)
    buffers.append(again)
    expected = [*ids, 70] if capacity is None else [*ids, 70][-capacity:]
    assert_holds(again, backend, expected)


def test_extra_metadata_is_committed_with_the_rows(tmp_path, buffers):
    buffer = make_buffer("memmap", NUMPY, 4, tmp_path)
    buffers.append(buffer)
    buffer.extend(batch_of(NUMPY, range(3)))
    buffer.extra_metadata["applied"] = {"producer": 7}
    assert ReplayBuffer.load_from(tmp_path / "rb", backend=NUMPY).extra_metadata == {}  # not committed yet
    buffer.flush()
    loaded = ReplayBuffer.load_from(tmp_path / "rb", backend=NUMPY)
    buffers.append(loaded)
    assert loaded.extra_metadata == {"applied": {"producer": 7}} and len(loaded) == 3
    buffer.dumps(tmp_path / "copy")
    assert ReplayBuffer.load_from(tmp_path / "copy", backend=NUMPY).extra_metadata == {"applied": {"producer": 7}}


def test_unflushed_rows_of_a_growable_buffer_are_not_committed(backend, tmp_path, buffers):
    buffer = make_buffer("memmap", backend, None, tmp_path)
    buffers.append(buffer)
    buffer.extend(batch_of(backend, range(4)))
    buffer.flush()
    buffer.extend(batch_of(backend, range(4, 11)))  # grows the files past the committed rows
    read_only = ReplayBuffer.load_from(tmp_path / "rb", backend=backend)
    buffers.append(read_only)
    assert_holds(read_only, backend, [0, 1, 2, 3])
    buffer.close()
    writable = ReplayBuffer.load_from(tmp_path / "rb", backend=backend, read_only=False)
    buffers.append(writable)
    assert_holds(writable, backend, [0, 1, 2, 3])
    assert len(writable.storage) == 4  # rows past the committed count are dropped
    writable.extend(batch_of(backend, [20, 21]))
    writable.flush()
    assert_holds(ReplayBuffer.load_from(tmp_path / "rb", backend=backend), backend, [0, 1, 2, 3, 20, 21])


@pytest.mark.parametrize("kind", ["memory", "memmap"])
def test_growable_buffers_reload(kind, backend, tmp_path, buffers):
    buffer = make_buffer(kind, backend, None, tmp_path)
    buffers.append(buffer)
    for n in (0, 1, 12):
        target = tmp_path / f"dump{n}"
        buffer.extend(batch_of(backend, range(n))) if n else None
        buffer.dumps(target)
        assert ReplayBuffer.get_capacity_from_path(target) is None
        loaded = ReplayBuffer.load_from(target, backend=backend)
        buffers.append(loaded)
        assert loaded.capacity is None
        assert len(loaded) == len(buffer)
        if len(buffer):
            assert_tree_equal(loaded.get_at(slice(None)), buffer.get_at(slice(None)))
        grown = ReplayBuffer.load_from(target, backend=backend, read_only=False)
        buffers.append(grown)
        grown.extend(batch_of(backend, range(100, 103)))
        assert len(grown) == len(buffer) + 3
        assert_tree_equal(grown.get_at(-1), sample(backend, 102))


def test_load_from_with_single_instance_space(backend, tmp_path, buffers):
    buffer = make_buffer("memmap", backend, 5, tmp_path)
    buffers.append(buffer)
    ids = fill_wrapped(buffer, backend)
    buffer.flush()
    space = storage_space(backend)
    loaded = ReplayBuffer.load_from(tmp_path / "rb", backend=backend, single_instance_space=space)
    buffers.append(loaded)
    assert loaded.single_space is space  # reused, not rebuilt
    assert loaded.storage.single_instance_space is space
    assert_holds(loaded, backend, ids)
    with pytest.raises(SpaceMismatchError, match="stores"):
        ReplayBuffer.load_from(
            tmp_path / "rb", backend=backend, single_instance_space=storage_space(backend, text=False)
        )


def test_create_refuses_a_directory_that_holds_a_buffer(backend, tmp_path, buffers):
    buffers.append(make_buffer("memmap", backend, 3, tmp_path))
    with pytest.raises(FileExistsError, match="load_from"):
        make_buffer("memmap", backend, 3, tmp_path)


def test_path_helpers(backend, tmp_path, buffers):
    for capacity in (5, None):
        buffer = make_buffer("memmap", backend, capacity, tmp_path / str(capacity))
        buffers.append(buffer)
        fill_wrapped(buffer, backend)
        path = tmp_path / str(capacity) / "rb"
        # The count is what was committed: 0 at creation until flush.
        assert ReplayBuffer.is_loadable_from(path)
        assert ReplayBuffer.get_length_from_path(path) == 0
        buffer.flush()
        assert ReplayBuffer.get_length_from_path(path) == len(buffer)
        assert ReplayBuffer.get_capacity_from_path(path) == capacity
        assert ReplayBuffer.get_space_from_path(path, backend=backend) == storage_space(backend)

    # Missing directory, directory without metadata, foreign metadata: None (False).
    empty = tmp_path / "empty"
    empty.mkdir()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "metadata.json").write_text(
        json.dumps({"format_version": 1, "type": "TrajectoryReplayBuffer", "count": 3})
    )
    for path in (tmp_path / "missing", empty, foreign):
        assert ReplayBuffer.is_loadable_from(path) is False
        assert ReplayBuffer.get_length_from_path(path) is None
        assert ReplayBuffer.get_capacity_from_path(path) is None
        assert ReplayBuffer.get_space_from_path(path, backend=backend) is None
    with pytest.raises(FileNotFoundError, match="metadata.json is missing"):
        ReplayBuffer.load_from(empty, backend=backend)
    with pytest.raises(SpaceMismatchError, match="TrajectoryReplayBuffer"):
        ReplayBuffer.load_from(foreign, backend=backend)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("newer", "format_version 2"),
        ("no-version", "no integer format_version"),
        ("not-json", "not valid JSON"),
        ("list", "JSON object"),
    ],
)
def test_newer_or_corrupt_metadata_raises_format_version_error(content, match, backend, tmp_path, buffers):
    buffer = make_buffer("memmap", backend, 5, tmp_path)
    buffers.append(buffer)
    fill_wrapped(buffer, backend)
    buffer.flush()
    path = tmp_path / "rb"
    meta = metadata(path)
    if content == "newer":
        meta["format_version"] = 2
        text = json.dumps(meta)
    elif content == "no-version":
        del meta["format_version"]
        text = json.dumps(meta)
    elif content == "not-json":
        text = json.dumps(meta)[:-7]
    else:
        text = "[1, 2]"
    (path / "metadata.json").write_text(text)
    with pytest.raises(FormatVersionError, match=match):
        ReplayBuffer.load_from(path, backend=backend)
    with pytest.raises(FormatVersionError, match=match):
        ReplayBuffer.load_from(path, backend=backend, read_only=False)
    # The helpers never answer as if there were no buffer: the error is named.
    with pytest.raises(FormatVersionError):
        ReplayBuffer.get_length_from_path(path)


def test_newer_storage_sidecar_raises_format_version_error(backend, tmp_path, buffers):
    buffer = make_buffer("memmap", backend, 5, tmp_path)
    buffers.append(buffer)
    buffer.flush()
    sidecar = tmp_path / "rb" / "storage" / "memmap.json"
    data = json.loads(sidecar.read_text())
    data["format_version"] = 99
    sidecar.write_text(json.dumps(data))
    with pytest.raises(FormatVersionError, match="format_version 99"):
        ReplayBuffer.load_from(tmp_path / "rb", backend=backend)


# ---------------------------------------------------------------------------------------------- validation


def bad_samples(backend) -> dict[str, Any]:
    good = sample(backend, 5)
    return {
        "unknown-key": {**good, "bogus": backend.asarray(np.zeros(2, np.float32))},
        "missing-key": {k: v for k, v in good.items() if k != "done"},
        "shape": {**good, "obs": {**good["obs"], "state": backend.asarray(np.zeros(4, np.float32))}},
        "dtype": {**good, "action": backend.asarray(np.zeros(2, np.float32))},
        "bool-dtype": {**good, "done": backend.asarray(np.float32(1.0))},
        "text": {**good, "note": "abcdefa"},
        "batched": batch_of(backend, [5]),
    }


def bad_batches(backend) -> dict[str, Any]:
    good = batch_of(backend, [5, 6, 7])
    return {
        "unknown-key": {**good, "bogus": backend.asarray(np.zeros((3, 2), np.float32))},
        "missing-key": {k: v for k, v in good.items() if k != "action"},
        "shape": {**good, "obs": {**good["obs"], "image": backend.asarray(np.zeros((3, 3, 4, 5), np.uint8))}},
        "dtype": {**good, "action": backend.asarray(np.zeros((3, 2), np.float64))},
        "batch-sizes": {**good, "done": backend.asarray(np.zeros(2, bool))},
        "unbatched": sample(backend, 5),
        "text": {**good, "note": np.array(["ab", "xyz", "c"], dtype=object)},
        # larger than the capacity: the last rows would be the only ones written
        "large": {
            **batch_of(backend, range(12)),
            "obs": {**batch_of(backend, range(12))["obs"], "state": backend.asarray(np.zeros((12, 6), np.float32))},
        },
    }


def state_of(buffer: ReplayBuffer, tmp_path: Path) -> Any:
    files = {}
    if buffer.cache_path is not None:
        files = file_bytes(buffer.cache_path)
    elif buffer.storage.is_multiprocessing_safe:
        files = file_bytes(buffer.storage.cache_filename)
    return (buffer.count, buffer.offset, len(buffer.storage), physical_snapshot(buffer), files)


def assert_same_state(before: Any, after: Any, attempt: str = "") -> None:
    assert before[:3] == after[:3], f"count, offset or length changed by {attempt}"
    assert_tree_equal(after[3], before[3])
    assert before[4].keys() == after[4].keys(), f"files added or removed by {attempt}"
    for name, content in before[4].items():
        assert after[4][name] == content, f"{name} changed by {attempt}"


@parametrize_kinds
@pytest.mark.parametrize("capacity", [5, None])
def test_bad_writes_raise_and_change_nothing(kind, capacity, backend, tmp_path, buffers):
    buffer = make_buffer(kind, backend, capacity, tmp_path)
    buffers.append(buffer)
    ids = fill_wrapped(buffer, backend)
    if kind == "memmap":
        buffer.flush()  # a committed full ring: a write would first move the committed range
    before = state_of(buffer, tmp_path)
    attempts = []
    for name, value in bad_samples(backend).items():
        attempts.append((f"append {name}", lambda v=value: buffer.append(v)))
        attempts.append((f"set_at {name}", lambda v=value: buffer.set_at(0, v)))
    for name, value in bad_batches(backend).items():
        attempts.append((f"extend {name}", lambda v=value: buffer.extend(v)))
        attempts.append((f"set_at[slice] {name}", lambda v=value: buffer.set_at(slice(0, 3), v)))
    attempts.append(("set_at wrong length", lambda: buffer.set_at(slice(0, 2), batch_of(backend, [1, 2, 3]))))
    for name, attempt in attempts:
        with pytest.raises(SpaceMismatchError):
            attempt()
        assert_same_state(before, state_of(buffer, tmp_path), name)
    assert_holds(buffer, backend, ids)


@pytest.mark.parametrize("kind", ["memory", "memmap"])
def test_bad_flat_writes_raise_and_change_nothing(kind, backend, tmp_path, buffers):
    buffer = make_buffer(kind, backend, 5, tmp_path, text=False)
    buffers.append(buffer)
    ids = fill_wrapped(buffer, backend, text=False)
    width = int(buffer.get_flattened_at(0).shape[0])
    before = state_of(buffer, tmp_path)
    attempts = [
        lambda: buffer.append_flattened(backend.asarray(np.zeros(width + 1, np.float32))),
        lambda: buffer.append_flattened(backend.asarray(np.zeros((1, width), np.float32))),
        lambda: buffer.extend_flattened(backend.asarray(np.zeros((3, width - 1), np.float32))),
        lambda: buffer.extend_flattened(backend.asarray(np.zeros(width, np.float32))),
        lambda: buffer.set_flattened_at(slice(0, 2), backend.asarray(np.zeros((3, width), np.float32))),
        lambda: buffer.set_flattened_at(
            0, np.zeros(width, np.float32) if backend.simplified_name != "numpy" else [0.0] * width
        ),
    ]
    for attempt in attempts:
        with pytest.raises(SpaceMismatchError):
            attempt()
        assert_same_state(before, state_of(buffer, tmp_path))
    assert_holds(buffer, backend, ids, text=False)


@pytest.mark.parametrize("kind", ["memory", "memmap"])
@pytest.mark.parametrize("capacity", [5, None])
def test_writes_to_a_read_only_buffer_raise(kind, capacity, backend, tmp_path, buffers):
    buffer = make_buffer(kind, backend, capacity, tmp_path, text=False)
    buffers.append(buffer)
    ids = fill_wrapped(buffer, backend, text=False)
    buffer.dumps(tmp_path / "copy")
    loaded = ReplayBuffer.load_from(tmp_path / "copy", backend=backend)
    buffers.append(loaded)
    assert not loaded.is_mutable
    before = file_bytes(tmp_path / "copy")
    flat = loaded.get_flattened_at(0)
    writes = {
        "append": lambda: loaded.append(sample(backend, 1, False)),
        "extend": lambda: loaded.extend(batch_of(backend, [1, 2], False)),
        "set_at": lambda: loaded.set_at(0, sample(backend, 1, False)),
        "set_at[slice]": lambda: loaded.set_at(slice(0, 2), batch_of(backend, [1, 2], False)),
        "append_flattened": lambda: loaded.append_flattened(flat),
        "extend_flattened": lambda: loaded.extend_flattened(loaded.get_flattened_at(slice(0, 2))),
        "set_flattened_at": lambda: loaded.set_flattened_at(1, flat),
        "clear": loaded.clear,
        "remove_at": lambda: loaded.remove_at(0),
    }
    for name, write in writes.items():
        with pytest.raises(ReadOnlyError, match="read-only"):
            write()
        assert loaded.count == len(ids), name
        assert_holds(loaded, backend, ids, text=False)
    loaded.flush()  # a no-op, not an error
    loaded.dumps(tmp_path / "copy")
    assert file_bytes(tmp_path / "copy") == before


# ---------------------------------------------------------------------------------------------- bugs


def test_persistent_full_ring_commit_keeps_rows_that_are_not_overwritten(backend, tmp_path, buffers):
    """In a full committed ring each write drops exactly the slots it overwrites (capacity < 32)."""
    buffer = make_buffer("memmap", backend, 8, tmp_path)
    buffers.append(buffer)
    buffer.extend(batch_of(backend, range(8)))
    buffer.flush()
    buffer.extend(batch_of(backend, [8, 9, 10]))
    # What a writer killed now would leave behind: rows 3..7 (0..2 are being overwritten).
    crashed = ReplayBuffer.load_from(tmp_path / "rb", backend=backend)
    buffers.append(crashed)
    assert_holds(crashed, backend, [3, 4, 5, 6, 7])
    buffer.append(sample(backend, 11))
    crashed = ReplayBuffer.load_from(tmp_path / "rb", backend=backend)
    buffers.append(crashed)
    assert_holds(crashed, backend, [4, 5, 6, 7])


@pytest.mark.parametrize("case", ["first-wrap", "after-reload", "steady-state-after-reserve"])
def test_a_write_wrapping_into_a_partial_committed_range_drops_only_overwritten_rows(case, tmp_path, buffers):
    backend = NUMPY
    buffer = make_buffer("memmap", backend, 32 if case == "steady-state-after-reserve" else 10, tmp_path)
    buffers.append(buffer)
    if case == "first-wrap":
        buffer.extend(batch_of(backend, range(6)))
        buffer.flush()  # committed: rows 0..5
        buffer.extend(batch_of(backend, range(6, 12)))  # overwrites rows 0 and 1 only
        survivors = [2, 3, 4, 5]
    elif case == "after-reload":
        buffer.extend(batch_of(backend, range(10)))
        buffer.flush()
        buffer.extend(batch_of(backend, [10, 11, 12]))  # committed: rows 3..9 (count 7, offset 3)
        buffer.close()
        buffer = ReplayBuffer.load_from(tmp_path / "rb", backend=backend, read_only=False)
        buffers.append(buffer)
        buffer.extend(batch_of(backend, range(20, 25)))  # slots 0..4: overwrites rows 3 and 4 only
        survivors = [5, 6, 7, 8, 9]
    else:
        buffer.extend(batch_of(backend, range(32)))
        buffer.flush()
        buffer.append(sample(backend, 32))  # overwrites row 0; commits rows 3..31 (1 + a reserve of 32 // 16)
        buffer.extend(batch_of(backend, [33, 34, 35]))  # slots 1..3: row 3 leaves the range with 2 more
        survivors = list(range(6, 32))  # every row not overwritten nor in the reserve ahead of the writes
    crashed = ReplayBuffer.load_from(tmp_path / "rb", backend=backend)  # what a SIGKILL now leaves
    buffers.append(crashed)
    held = [int(host(crashed.get_at(i))["obs"]["image"].flat[0]) for i in range(len(crashed))]
    assert set(survivors) <= set(held), f"committed rows {survivors} not overwritten, but reload holds {held}"


def test_flush_of_a_memory_backed_persistent_buffer_persists_its_rows(tmp_path, buffers):
    backend = NUMPY
    buffer = make_buffer("memory", backend, 4, tmp_path)
    buffers.append(buffer)
    buffer.extend(batch_of(backend, range(3)))
    buffer.dumps(tmp_path / "copy")
    writable = ReplayBuffer.load_from(tmp_path / "copy", backend=backend, read_only=False)
    buffers.append(writable)
    writable.extend(batch_of(backend, [3, 4, 5]))
    writable.flush()
    assert_holds(writable, backend, [2, 3, 4, 5])
    reloaded = ReplayBuffer.load_from(tmp_path / "copy", backend=backend)
    buffers.append(reloaded)
    assert_holds(reloaded, backend, [2, 3, 4, 5])  # actually holds rows 2, 0(zeros), 0(zeros), 1


def test_closing_a_shared_memory_buffer_removes_its_temporary_directory():
    backend = NUMPY
    buffer = ReplayBuffer.create(MemoryStorage, storage_space(backend), capacity=2, multiprocessing=True)
    directory = Path(buffer.storage.cache_filename)
    assert isinstance(buffer.storage, MemmapStorage)
    try:
        buffer.close()
        assert not directory.exists()
        assert not directory.parent.exists()
    finally:
        shutil.rmtree(directory.parent, ignore_errors=True)


@pytest.mark.parametrize("operation", ["append", "extend", "clear"])
def test_structural_writes_through_a_column_view_leave_the_parent_intact(operation, tmp_path, buffers):
    backend = NUMPY
    buffer = make_buffer("memory", backend, 3, tmp_path)
    buffers.append(buffer)
    buffer.extend(batch_of(backend, range(3)))
    column = buffer.get_column(["obs", "state"])
    state = backend.asarray(np.full(5, 9.0, np.float32))
    write = {
        "append": lambda: column.append(state),
        "extend": lambda: column.extend(state[None]),
        "clear": column.clear,
    }
    with pytest.raises((ReadOnlyError, UnsupportedOperationError)):
        write[operation]()
    assert_holds(buffer, backend, [0, 1, 2])
