"""Issue 16 §1 at the buffer level: a buffer directory edited by a stranger never reaches outside itself.

Each probe edits only files inside one buffer directory (its ``metadata.json``, or a file replaced
by a symlink), then checks that opening, writing and flushing it raise ``UnsafePathError`` or stay
inside, and that the files outside (another buffer, a victim file) keep every byte. The checks
read persisted state only, which no backend touches: NumPy suffices.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from unibatch import BoxSpace, NumpyComputeBackend
from unibatch.buffers import ReplayBuffer, TrajectoryReplayBuffer
from unibatch.cli import main
from unibatch.errors import UnsafePathError

NUMPY = NumpyComputeBackend
SPACE = BoxSpace(NUMPY, -10.0, 10.0, "float32", shape=(3,))


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (symlinks not followed) by relative path: its SHA-256 and size."""
    digests = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            data = path.read_bytes()
            digests[str(path.relative_to(root))] = f"{hashlib.sha256(data).hexdigest()}:{len(data)}"
    return digests


def make_buffer(path: Path, value: float, capacity: int | None = 8) -> None:
    with ReplayBuffer.create(None, SPACE, capacity=capacity, cache_path=path) as buffer:
        buffer.extend(np.full((5, 3), value, np.float32))
        buffer.flush()


def edit_json(path: Path, edit) -> None:
    payload = json.loads(path.read_text())
    edit(payload)
    path.write_text(json.dumps(payload))


def append_and_flush(path: Path) -> None:
    with ReplayBuffer.load_from(path, backend=NUMPY, read_only=False) as buffer:
        buffer.extend(np.full((6, 3), 9.0, np.float32))
        buffer.flush()


@pytest.fixture
def victim_and_attacker(tmp_path: Path) -> tuple[Path, Path]:
    make_buffer(tmp_path / "victim", 1.0)
    make_buffer(tmp_path / "attacker", 2.0)
    return tmp_path / "victim", tmp_path / "attacker"


@pytest.mark.parametrize("where", ["parent", "absolute", "symlinked directory"])
@pytest.mark.parametrize("read_only", [False, True])
def test_storage_path_outside_the_buffer_is_refused(victim_and_attacker, where, read_only, capsys) -> None:
    victim, attacker = victim_and_attacker
    if where == "symlinked directory":  # the storage directory itself replaced by a link to the victim's
        (attacker / "storage").rename(attacker / "old")
        (attacker / "storage").symlink_to(victim / "storage", target_is_directory=True)
    else:
        path = "../victim/storage" if where == "parent" else str(victim / "storage")
        edit_json(attacker / "metadata.json", lambda payload: payload["storage"].update(path=path))
    before = tree_digest(victim)
    with pytest.raises(UnsafePathError, match=r"metadata\.json") as caught:
        append_and_flush(attacker) if not read_only else ReplayBuffer.load_from(attacker, backend=NUMPY)
    assert "victim" in str(caught.value)  # names the offending path
    assert tree_digest(victim) == before
    assert main(["verify", str(attacker)]) == 1
    assert "PROBLEM" in capsys.readouterr().out
    assert tree_digest(victim) == before


def test_a_storage_path_inside_through_a_symlink_still_opens(tmp_path: Path) -> None:
    """A symlink that stays inside the directory is no escape."""
    make_buffer(tmp_path / "buffer", 3.0)
    (tmp_path / "buffer" / "storage").rename(tmp_path / "buffer" / "real")
    (tmp_path / "buffer" / "storage").symlink_to("real", target_is_directory=True)
    with ReplayBuffer.load_from(tmp_path / "buffer", backend=NUMPY) as buffer:
        np.testing.assert_array_equal(np.asarray(buffer.get_at(slice(0, 5))), np.full((5, 3), 3.0, np.float32))


def make_trajectory(path: Path, value: float) -> None:
    with TrajectoryReplayBuffer.create(SPACE, None, step_data_capacity=8, cache_path=path) as buffer:
        for _ in range(4):
            buffer.append(np.full(3, value, np.float32))
        buffer.mark_episode_end()
        buffer.flush()


@pytest.mark.parametrize("where", ["parent", "absolute", "symlinked part"])
def test_trajectory_storage_paths_outside_the_buffer_are_refused(tmp_path: Path, where, capsys) -> None:
    victim, attacker = tmp_path / "victim", tmp_path / "attacker"
    make_trajectory(victim, 1.0)
    make_trajectory(attacker, 2.0)
    if where == "symlinked part":
        (attacker / "step_data").rename(attacker / "old")
        (attacker / "step_data").symlink_to(victim / "step_data", target_is_directory=True)
    else:
        path = "../../victim/step_data/storage" if where == "parent" else str(victim / "step_data" / "storage")
        edit_json(attacker / "metadata.json", lambda payload: payload["storage_paths"].update(step_data=path))
    before = tree_digest(victim)
    with (
        pytest.raises(UnsafePathError, match=r"metadata\.json"),
        TrajectoryReplayBuffer.load_from(attacker, backend=NUMPY, read_only=False) as buffer,
    ):
        buffer.append(np.full(3, 9.0, np.float32))
        buffer.flush()
    assert tree_digest(victim) == before
    assert main(["verify", str(attacker)]) == 1
    capsys.readouterr()
    assert tree_digest(victim) == before


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("capacity", [8, None], ids=["ring", "growable"])
def test_memmap_data_file_replaced_by_a_symlink_is_never_written_through(tmp_path: Path, capacity, read_only) -> None:
    make_buffer(tmp_path / "buffer", 4.0, capacity)
    storage = tmp_path / "buffer" / "storage"
    (data_file,) = [p for p in storage.iterdir() if p.suffix == ".bin"]
    target = tmp_path / "precious.bin"
    target.write_bytes(b"do not touch" * 10)
    data_file.unlink()
    data_file.symlink_to(target)
    with pytest.raises(UnsafePathError, match="symlink"):
        if read_only:
            ReplayBuffer.load_from(tmp_path / "buffer", backend=NUMPY)
        else:
            append_and_flush(tmp_path / "buffer")
    assert target.read_bytes() == b"do not touch" * 10


def test_memmap_data_file_symlinked_after_opening_is_not_extended(tmp_path: Path) -> None:
    """A growable buffer maps its files again when it grows: that open does not follow a symlink either."""
    make_buffer(tmp_path / "buffer", 4.0, None)
    target = tmp_path / "precious.bin"
    target.write_bytes(b"do not touch")
    with ReplayBuffer.load_from(tmp_path / "buffer", backend=NUMPY, read_only=False) as buffer:
        (data_file,) = [p for p in (tmp_path / "buffer" / "storage").iterdir() if p.suffix == ".bin"]
        data_file.unlink()
        data_file.symlink_to(target)
        with pytest.raises(UnsafePathError, match="symlink"):
            buffer.extend(np.zeros((5000, 3), np.float32))  # past the allocated rows: files are extended
    assert target.read_bytes() == b"do not touch"


def plausible_temporary_names(name: str) -> list[str]:
    """The temporary names an attacker could guess: the old ``.<name>.<pid>.tmp`` for pids around ours, and more."""
    pids = range(max(os.getpid() - 50, 1), os.getpid() + 50)
    return [
        *(f".{name}.{pid}.tmp" for pid in pids),
        f".{name}.tmp",
        f"{name}.tmp",
        f".{name}.swp",
        f"{name}.new",
        f".{name}",
    ]


@pytest.mark.parametrize("file", ["metadata.json", "storage/memmap.json"])
def test_symlinks_planted_at_temporary_names_are_never_written_through(tmp_path: Path, file: str) -> None:
    make_buffer(tmp_path / "buffer", 5.0, None)
    target = tmp_path / "precious.json"
    target.write_text("do not touch")
    committed = tmp_path / "buffer" / file
    for name in plausible_temporary_names(committed.name):
        (committed.parent / name).symlink_to(target)
    append_and_flush(tmp_path / "buffer")  # grows the storage: both files are replaced
    assert target.read_text() == "do not touch"
    assert committed.is_file() and not committed.is_symlink()
    with ReplayBuffer.load_from(tmp_path / "buffer", backend=NUMPY) as buffer:
        assert len(buffer) == 11


def test_symlinked_metadata_file_is_refused(victim_and_attacker) -> None:
    """``metadata.json`` itself a link to another buffer's: not read (its storage path would be trusted)."""
    victim, attacker = victim_and_attacker
    (attacker / "metadata.json").unlink()
    (attacker / "metadata.json").symlink_to(victim / "metadata.json")
    with pytest.raises(UnsafePathError, match="symlink"):
        ReplayBuffer.load_from(attacker, backend=NUMPY)


def test_snapshot_directory_planted_as_a_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    """A memory-backed buffer writes its next snapshot to ``storage.1``: a link planted there is not written through."""
    from unibatch.storages import MemoryStorage

    victim = tmp_path / "victim"
    victim.mkdir()  # empty: the snapshot would be written into it
    with ReplayBuffer.create(MemoryStorage, SPACE, capacity=8, cache_path=tmp_path / "buffer") as buffer:
        buffer.extend(np.full((3, 3), 1.0, np.float32))
        buffer.flush()
        snapshot = tmp_path / "buffer" / ("storage.1" if buffer.storage_path_relative == "storage" else "storage")
        snapshot.symlink_to(victim, target_is_directory=True)
        buffer.extend(np.full((2, 3), 2.0, np.float32))
        buffer.flush()
    assert list(victim.iterdir()) == []
    assert not snapshot.is_symlink()
    with ReplayBuffer.load_from(tmp_path / "buffer", backend=NUMPY) as reopened:
        assert len(reopened) == 5
