"""Buffers: ``create`` checks every argument first and leaves nothing behind when it fails;
writes after ``close()`` raise :class:`~unibatch.errors.ClosedError`; typed errors for values
no dtype holds (issue 17, §3)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from unibatch import BinarySpace, BoxSpace, DictSpace, ReplayBuffer, TrajectoryReplayBuffer
from unibatch.backends import backend_from_name
from unibatch.errors import ClosedError, MissingDependencyError, SpaceMismatchError
from unibatch.storages import DictStorage, MemmapStorage, MemoryStorage, storage_class

NP = backend_from_name("numpy")
STORAGES = [MemoryStorage, MemmapStorage, *(storage_class(name) for name in ("hdf5", "zarr", "parquet"))]


def step_space(backend):
    return DictSpace(
        backend,
        {
            "obs": BoxSpace(backend, -100, 100, "float32", shape=(2,)),
            "count": BoxSpace(backend, 0, 1000, "int32", shape=()),
            "done": BinarySpace(backend),
        },
    )


def step(backend, i):
    return {
        "obs": backend.asarray(np.array([i, -i], np.float32)),
        "count": backend.asarray(np.int32(i)),
        "done": backend.asarray(bool(i % 2)),
    }


def listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ---------------------------------------------------------------------------------------------- closed buffers
@pytest.mark.parametrize("storage_cls", STORAGES, ids=lambda cls: cls.__name__)
def test_replay_buffer_refuses_every_write_after_close(backend, tmp_path, storage_cls):
    cache_path = None if storage_cls is MemoryStorage else tmp_path / "b"
    buffer = ReplayBuffer.create(storage_cls, step_space(backend), cache_path=cache_path, capacity=4)
    buffer.append(step(backend, 1))
    buffer.close()
    flat = backend.asarray(np.zeros((1, 4), np.float32))
    writes = {
        "append": lambda: buffer.append(step(backend, 2)),
        "extend": lambda: buffer.extend({k: v[None] for k, v in step(backend, 2).items()}),
        "set_at": lambda: buffer.set_at(0, step(backend, 2)),
        "extend_flattened": lambda: buffer.extend_flattened(flat),
        "set_flattened_at": lambda: buffer.set_flattened_at(0, flat[0]),
        "clear": buffer.clear,
    }
    for name, write in writes.items():
        with pytest.raises(ClosedError, match=f"ReplayBuffer is closed; {name} is not allowed"):
            write()
    buffer.close()  # still idempotent


@pytest.mark.parametrize("storage_cls", [MemoryStorage, MemmapStorage], ids=lambda cls: cls.__name__)
def test_trajectory_buffer_refuses_writes_after_close(backend, tmp_path, storage_cls):
    cache_path = None if storage_cls is MemoryStorage else tmp_path / "t"
    episode_space = DictSpace(backend, {"task": BoxSpace(backend, 0, 9, "int32")})
    buffer = TrajectoryReplayBuffer.create(
        step_space(backend),
        storage_cls,
        step_data_capacity=6,
        episode_data_instance_space=episode_space,
        episode_data_capacity=2,
        cache_path=cache_path,
    )
    buffer.append(step(backend, 0))
    buffer.close()
    writes = {
        "append": lambda: buffer.append(step(backend, 1)),
        "extend": lambda: buffer.extend({k: v[None] for k, v in step(backend, 1).items()}),
        "mark_episode_end": buffer.mark_episode_end,
        "set_at": lambda: buffer.set_at(0, {"step_data": step(backend, 1)}),
    }
    for name, write in writes.items():
        with pytest.raises(ClosedError, match=f"TrajectoryReplayBuffer is closed; {name} is not allowed"):
            write()


# ---------------------------------------------------------------------------------------------- create
@pytest.mark.parametrize("storage_cls", ["memmap", "hdf5", "zarr", "parquet", "video", "image"])
@pytest.mark.parametrize("capacity", [True, 2.5, 0])
def test_replay_buffer_create_refuses_bad_capacity_before_touching_disk(tmp_path, storage_cls, capacity):
    space = BoxSpace(NP, 0, 255, "uint8", shape=(6, 8, 3))
    target = tmp_path / "deep" / "buffer"
    storage_cls = storage_class(storage_cls)
    with pytest.raises(ValueError, match="capacity must be a positive int or None"):
        ReplayBuffer.create(storage_cls, space, cache_path=target, capacity=capacity)
    assert listing(tmp_path) == []  # not even the parents
    ReplayBuffer.create(storage_cls, space, cache_path=target, capacity=2).close()  # the corrected retry


def test_replay_buffer_create_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=f"{tmp_path / 'b'} already exists and is not empty"):
        ReplayBuffer.create(MemmapStorage, step_space(NP), cache_path=tmp_path / "b", capacity=2)
    assert listing(tmp_path) == ["b", "b/notes.txt"]
    ReplayBuffer.create(MemmapStorage, step_space(NP), cache_path=tmp_path / "c", capacity=2).close()
    with pytest.raises(FileExistsError, match="already holds a buffer; use ReplayBuffer.load_from"):
        ReplayBuffer.create(MemmapStorage, step_space(NP), cache_path=tmp_path / "c", capacity=2)


def test_dict_storage_with_a_missing_extra_leaves_nothing(tmp_path, monkeypatch):
    """``video`` not installed: the memmap child made first is removed again, so the retry works."""
    space = DictSpace(
        NP,
        {
            "a_state": BoxSpace(NP, -1, 1, "float32", shape=(3,)),
            "z_image": BoxSpace(NP, 0, 255, "uint8", shape=(6, 8, 3)),
        },
    )
    classes = {"a_state": "memmap", "z_image": "video"}
    pytest.importorskip("av")
    monkeypatch.setitem(sys.modules, "av", None)  # what an environment without unibatch[video] has
    with pytest.raises(MissingDependencyError, match=r"unibatch\[video\]"):
        ReplayBuffer.create(DictStorage, space, classes, cache_path=tmp_path / "b", capacity=4)
    with pytest.raises(MissingDependencyError, match=r"unibatch\[video\]"):
        DictStorage.create(space, classes, capacity=4, cache_path=tmp_path / "d")
    assert listing(tmp_path) == []
    (tmp_path / "mine").mkdir()  # made by the user before the call: emptied again, never deleted
    with pytest.raises(MissingDependencyError, match=r"unibatch\[video\]"):
        DictStorage.create(space, classes, capacity=4, cache_path=tmp_path / "mine")
    assert listing(tmp_path) == ["mine"]
    (tmp_path / "mine").rmdir()
    monkeypatch.undo()  # av is back
    ReplayBuffer.create(DictStorage, space, classes, cache_path=tmp_path / "b", capacity=4).close()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"episode_data_capacity": 0}, "episode_data_capacity must be a positive int or None, got 0"),
        ({"episode_data_capacity": 1.5}, "episode_data_capacity must be a positive int or None"),
        ({"step_data_capacity": True}, "step_data_capacity must be a positive int or None"),
    ],
)
def test_trajectory_create_checks_capacities_before_touching_disk(tmp_path, arguments, message):
    episode_space = DictSpace(NP, {"task": BoxSpace(NP, 0, 9, "int32")})
    kwargs = {"step_data_capacity": 6, "episode_data_instance_space": episode_space, "episode_data_capacity": 2}
    with pytest.raises(ValueError, match=message):
        TrajectoryReplayBuffer.create(
            step_space(NP), MemmapStorage, cache_path=tmp_path / "t", **{**kwargs, **arguments}
        )
    assert listing(tmp_path) == []
    TrajectoryReplayBuffer.create(step_space(NP), MemmapStorage, cache_path=tmp_path / "t", **kwargs).close()


def test_trajectory_create_on_an_existing_buffer_names_its_own_load_from(tmp_path):
    TrajectoryReplayBuffer.create(
        step_space(NP), MemmapStorage, step_data_capacity=4, cache_path=tmp_path / "t"
    ).close()
    before = listing(tmp_path)
    with pytest.raises(FileExistsError, match=r"use TrajectoryReplayBuffer\.load_from"):
        TrajectoryReplayBuffer.create(step_space(NP), MemmapStorage, step_data_capacity=4, cache_path=tmp_path / "t")
    assert listing(tmp_path) == before


# ---------------------------------------------------------------------------------------------- typed value errors
@pytest.mark.parametrize("dtype", ["int64", "uint8", "float32"])
def test_python_int_no_dtype_holds_is_a_space_mismatch(backend, dtype):
    space = DictSpace(backend, {"a": BoxSpace(backend, 0, 100, dtype, shape=())})
    buffer = ReplayBuffer.create(None, space, capacity=3)
    buffer.append({"a": 1})
    for write in (lambda: buffer.append({"a": 2**70}), lambda: buffer.set_at(0, {"a": 2**70})):
        with pytest.raises(SpaceMismatchError, match="1180591620717411303424"):
            write()
    assert len(buffer) == 1 and int(np.asarray(backend.to_numpy(buffer.get_at(0)["a"]))) == 1
    assert not space["a"].contains(2**70)


def test_object_arrays_get_a_clear_message(backend):
    space = DictSpace(backend, {"obs": {"a": BoxSpace(backend, 0, 100, "int32", shape=(2,))}})
    buffer = ReplayBuffer.create(None, space, capacity=3)
    with pytest.raises(SpaceMismatchError, match="object arrays are not supported: got dtype object at key 'obs/a'"):
        buffer.append({"obs": {"a": np.array([1, 2], dtype=object)}})
    with pytest.raises(SpaceMismatchError, match="object arrays are not supported: got dtype object at key 'obs/a'"):
        buffer.extend({"obs": {"a": np.array([[1, 2]], dtype=object)}})
    assert len(buffer) == 0
