"""Issue 16 §1 at the storage level: every path field of every sidecar stays inside its directory.

Each probe edits only files inside a storage directory (a name in a sidecar, a file or directory
replaced by a symlink), then tries what the issue's probes did: open read-write, rewrite the
slots, flush. ``UnsafePathError`` must be raised, and the victim outside must keep every byte.
Persisted state is read the same way on every backend: NumPy suffices.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from unibatch import BoxSpace, NumpyComputeBackend
from unibatch.errors import FormatVersionError, UnsafePathError
from unibatch.storages import SpaceStorage
from unibatch.storages._safe_paths import (
    check_relative,
    create_temporary,
    is_temporary,
    open_no_follow,
    resolve_inside,
)

NUMPY = NumpyComputeBackend
ROWS = 6
FRAME_SPACE = BoxSpace(NUMPY, 0, 255, "uint8", shape=(6, 8, 3))
ROW_SPACE = BoxSpace(NUMPY, -10.0, 10.0, "float32", shape=(3,))


def digest(path: Path) -> str:
    """SHA-256 and size of a file, or of every file under a directory (symlinks not followed)."""
    if path.is_file():
        data = path.read_bytes()
        return f"{hashlib.sha256(data).hexdigest()}:{len(data)}"
    return ";".join(f"{p.relative_to(path)}={digest(p)}" for p in sorted(path.rglob("*")) if p.is_file())


def frames(value: int) -> np.ndarray:
    return np.full((ROWS, 6, 8, 3), value, np.uint8)


def rows(value: float) -> np.ndarray:
    return np.full((ROWS, 3), value, np.float32)


def rewrite_and_flush(cls: type[SpaceStorage], path: Path, space: Any, values: np.ndarray) -> None:
    """The issue's probe: open read-write, rewrite every slot, flush (which deletes replaced files)."""
    storage = cls.load_from(path, space, read_only=False)
    try:
        storage.set(slice(0, ROWS), values)
        storage.flush()
    finally:
        storage.close()


def edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    payload = json.loads(path.read_text())
    edit(payload)
    path.write_text(json.dumps(payload))


# ---------------------------------------------------------------------- the helpers themselves
@pytest.mark.parametrize("relative", ["../x", "a/../../x", "/etc/passwd", "", ".", "a\0b", 7, None, ["a"]])
def test_check_relative_refuses_escapes_and_non_paths(relative) -> None:
    with pytest.raises(UnsafePathError, match="sidecar.json"):
        check_relative(relative, source="sidecar.json")


def test_resolve_inside_follows_symlinks_and_refuses_those_that_leave(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    (root / "inner").symlink_to(root / "real", target_is_directory=True)
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "real" / "deeper").symlink_to("../../outside", target_is_directory=True)
    assert resolve_inside(root, "inner/file", source="s") == root / "inner" / "file"
    assert resolve_inside(root, "not/yet/created", source="s") == root / "not" / "yet" / "created"
    for escaping in ("out", "out/file", "inner/deeper/file"):
        with pytest.raises(UnsafePathError, match="symlink"):
            resolve_inside(root, escaping, source="s")
    linked_root = tmp_path / "linked-root"
    linked_root.symlink_to(root, target_is_directory=True)  # the user's own root may be a link
    assert resolve_inside(linked_root, "inner/file", source="s") == linked_root / "inner" / "file"


def test_temporaries_are_exclusive_random_and_recognised(tmp_path: Path) -> None:
    target = tmp_path / "metadata.json"
    names = set()
    for _ in range(20):
        descriptor, path = create_temporary(target)
        os.close(descriptor)
        assert path.parent == tmp_path and is_temporary(path.name) and path.name.startswith(".metadata.json.")
        names.add(path.name)
    assert len(names) == 20
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePathError, match="symlink"):
        open_no_follow(tmp_path / "link", os.O_WRONLY | os.O_CREAT)
    assert not (tmp_path / "elsewhere").exists()


# ---------------------------------------------------------------------- video.json
def make_video(path: Path) -> None:
    from unibatch.storages import VideoStorage

    storage = VideoStorage.create(FRAME_SPACE, capacity=ROWS, cache_path=path)
    storage.set(slice(0, 3), frames(10)[:3])
    storage.flush()
    storage.set(slice(3, ROWS), frames(20)[3:])
    storage.flush()
    storage.close()


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_video_segment_outside_the_directory_is_never_deleted(tmp_path: Path, where: str) -> None:
    pytest.importorskip("av")
    from unibatch.storages import VideoStorage

    path = tmp_path / "buffer" / "storage"
    make_video(path)
    victim = tmp_path / "victim.mkv"
    shutil.copyfile(path / "seg-000000.mkv", victim)  # a valid video, so reads would succeed
    if where == "symlink":
        (path / "seg-000000.mkv").unlink()
        (path / "seg-000000.mkv").symlink_to(victim)
    else:
        name = "../../victim.mkv" if where == "parent" else str(victim)
        edit_json(path / "video.json", lambda sidecar: sidecar["segments"][0].__setitem__(2, name))
    before = digest(victim)
    with pytest.raises(UnsafePathError, match=r"video\.json"):
        rewrite_and_flush(VideoStorage, path, FRAME_SPACE, frames(30))
    with pytest.raises(UnsafePathError, match=r"video\.json"):
        VideoStorage.load_from(path, FRAME_SPACE)
    assert victim.exists() and digest(victim) == before


# ---------------------------------------------------------------------- parquet.json
@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_parquet_part_outside_the_directory_is_never_deleted(tmp_path: Path, where: str) -> None:
    pytest.importorskip("pyarrow")
    from unibatch.storages import ParquetStorage

    path = tmp_path / "buffer" / "storage"
    storage = ParquetStorage.create(ROW_SPACE, capacity=ROWS, cache_path=path, rows_per_file=3)
    storage.set(slice(0, ROWS), rows(1.0))
    storage.flush()
    storage.close()
    first = json.loads((path / "parquet.json").read_text())["parts"][0]["file"]
    victim = tmp_path / "victim.parquet"
    shutil.copyfile(path / first, victim)
    if where == "symlink":
        (path / first).unlink()
        (path / first).symlink_to(victim)
    else:
        name = "../../victim.parquet" if where == "parent" else str(victim)
        edit_json(path / "parquet.json", lambda sidecar: sidecar["parts"][0].update(file=name))
    before = digest(victim)
    with pytest.raises(UnsafePathError, match=r"parquet\.json"):
        rewrite_and_flush(ParquetStorage, path, ROW_SPACE, rows(2.0))
    assert victim.exists() and digest(victim) == before


def test_parquet_symlink_planted_at_the_next_part_name_is_not_written_through(tmp_path: Path) -> None:
    """Part files are written at a predictable name: a writable open first removes what parquet.json does not list."""
    pytest.importorskip("pyarrow")
    from unibatch.storages import ParquetStorage

    path = tmp_path / "s"
    storage = ParquetStorage.create(ROW_SPACE, capacity=ROWS, cache_path=path, rows_per_file=3)
    storage.set(slice(0, ROWS), rows(1.0))
    storage.flush()
    storage.close()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    serial = json.loads((path / "parquet.json").read_text())["next_serial"]
    for number in range(serial, serial + 4):
        (path / f"part-{number:06d}.parquet").symlink_to(victim)
    rewrite_and_flush(ParquetStorage, path, ROW_SPACE, rows(2.0))
    assert victim.read_text() == "precious"
    reader = ParquetStorage.load_from(path, ROW_SPACE)
    np.testing.assert_array_equal(np.asarray(reader.get(slice(0, ROWS))), rows(2.0))
    reader.close()


def test_parquet_parts_that_are_not_objects_are_a_format_error(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    from unibatch.storages import ParquetStorage

    path = tmp_path / "s"
    ParquetStorage.create(ROW_SPACE, capacity=ROWS, cache_path=path).close()
    edit_json(path / "parquet.json", lambda sidecar: sidecar.update(parts=["part-000000.parquet"]))
    with pytest.raises(FormatVersionError, match="parts"):
        ParquetStorage.load_from(path, ROW_SPACE)


# ---------------------------------------------------------------------- dict.json (and every composition)
def test_dict_child_directory_symlinked_outside_is_refused(tmp_path: Path) -> None:
    from unibatch.spaces import DictSpace
    from unibatch.storages import DictStorage, MemmapStorage

    space = DictSpace(NUMPY, {"a": ROW_SPACE, "b": ROW_SPACE})

    def make(path: Path, value: float) -> None:
        storage = DictStorage.create(space, {"a": MemmapStorage, "*": MemmapStorage}, capacity=ROWS, cache_path=path)
        storage.set(slice(0, ROWS), {"a": rows(value), "b": rows(value)})
        storage.flush()
        storage.close()

    make(tmp_path / "victim", 1.0)
    make(tmp_path / "attacker", 2.0)
    child = json.loads((tmp_path / "attacker" / "dict.json").read_text())["children"]["a"]["path"]
    shutil.rmtree(tmp_path / "attacker" / child)
    (tmp_path / "attacker" / child).symlink_to(tmp_path / "victim" / child, target_is_directory=True)
    before = digest(tmp_path / "victim")
    with pytest.raises(UnsafePathError, match=r"dict\.json"):
        rewrite_and_flush(DictStorage, tmp_path / "attacker", space, {"a": rows(9.0), "b": rows(9.0)})
    assert digest(tmp_path / "victim") == before


# ---------------------------------------------------------------------- HDF5: data kept in other files
def hdf5_with_foreign_data(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """An HDF5Storage file whose leaf dataset is replaced by one whose bytes live in the victim file."""
    h5py = pytest.importorskip("h5py")
    from unibatch.storages import HDF5Storage

    path = tmp_path / "buffer" / "storage.hdf5"
    HDF5Storage.create(ROW_SPACE, capacity=ROWS, cache_path=path).close()
    victim = tmp_path / ("victim.bin" if kind == "external storage" else "victim.hdf5")
    if kind == "external storage":
        victim.write_bytes(rows(1.0).tobytes())
    else:
        with h5py.File(victim, "w") as file:
            file["data"] = rows(1.0)
    with h5py.File(path, "r+", locking=False) as file:
        name = json.loads(file.attrs["unibatch"])["leaves"][0]["dataset"]
        del file[name]
        if kind == "external link":
            file[name] = h5py.ExternalLink(str(victim), "data")
        elif kind == "external storage":
            file.create_dataset(name, (ROWS, 3), "float32", external=[(str(victim), 0, victim.stat().st_size)])
        else:
            layout = h5py.VirtualLayout((ROWS, 3), "float32")
            layout[:] = h5py.VirtualSource(str(victim), "data", (ROWS, 3))
            file.create_virtual_dataset(name, layout)
    return path, victim


@pytest.mark.parametrize("kind", ["external link", "external storage", "virtual dataset"])
def test_hdf5_dataset_stored_in_another_file_is_refused(tmp_path: Path, kind: str) -> None:
    path, victim = hdf5_with_foreign_data(tmp_path, kind)
    from unibatch.storages import HDF5Storage

    before = digest(victim)
    with pytest.raises(UnsafePathError, match=str(victim.name)):
        rewrite_and_flush(HDF5Storage, path, ROW_SPACE, rows(9.0))
    with pytest.raises(UnsafePathError):
        HDF5Storage.load_from(path, ROW_SPACE)
    assert digest(victim) == before


# ---------------------------------------------------------------------- image shards
@pytest.mark.parametrize("where", ["shard", "tmp"])
def test_image_directories_symlinked_outside_are_refused(tmp_path: Path, where: str) -> None:
    pytest.importorskip("PIL")
    from unibatch.storages import ImageStorage

    path = tmp_path / "s"
    storage = ImageStorage.create(FRAME_SPACE, capacity=ROWS, cache_path=path)
    storage.set(slice(0, ROWS), frames(10))
    storage.flush()
    storage.close()
    victim = tmp_path / "victim"
    name = "00000" if where == "shard" else "tmp"
    shutil.copytree(path / name, victim)
    (victim / "keep.txt").write_text("precious")
    shutil.rmtree(path / name)
    (path / name).symlink_to(victim, target_is_directory=True)
    before = digest(victim)
    with pytest.raises(UnsafePathError, match="symlink"):
        rewrite_and_flush(ImageStorage, path, FRAME_SPACE, frames(30))
    assert digest(victim) == before


def test_image_file_symlinked_outside_is_not_read(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    from unibatch.storages import ImageStorage

    path = tmp_path / "s"
    storage = ImageStorage.create(FRAME_SPACE, capacity=ROWS, cache_path=path)
    storage.set(slice(0, ROWS), frames(10))
    storage.flush()
    storage.close()
    outside = tmp_path / "outside.png"
    (path / "00000" / "000000001.png").rename(outside)
    (path / "00000" / "000000001.png").symlink_to(outside)
    reader = ImageStorage.load_from(path, FRAME_SPACE)
    with pytest.raises(UnsafePathError, match="symlink"):
        reader.get(1)
    np.testing.assert_array_equal(np.asarray(reader.get(0)), frames(10)[0])
    reader.close()


# ---------------------------------------------------------------------- Zarr arrays and chunks
@pytest.mark.parametrize("where", ["array", "chunks"])
def test_zarr_directories_symlinked_outside_are_never_written(tmp_path: Path, where: str) -> None:
    pytest.importorskip("zarr")
    from unibatch.storages import ZarrStorage

    path = tmp_path / "s"
    storage = ZarrStorage.create(ROW_SPACE, capacity=ROWS, cache_path=path, chunk_rows=2)
    storage.set(slice(0, ROWS), rows(1.0))
    storage.flush()
    storage.close()
    moved = path / "data" if where == "array" else path / "data" / "c"
    victim = tmp_path / "victim"
    shutil.copytree(moved, victim)
    shutil.rmtree(moved)
    moved.symlink_to(victim, target_is_directory=True)
    before = digest(victim)
    with pytest.raises(UnsafePathError, match="symlink"):
        rewrite_and_flush(ZarrStorage, path, ROW_SPACE, rows(9.0))
    assert digest(victim) == before


def test_zarr_chunk_directory_symlinked_after_opening_is_not_written(tmp_path: Path) -> None:
    """Chunk keys are checked as they are written, not only when the storage opens."""
    pytest.importorskip("zarr")
    from unibatch.storages import ZarrStorage

    path = tmp_path / "s"
    storage = ZarrStorage.create(ROW_SPACE, capacity=ROWS, cache_path=path, chunk_rows=2)
    storage.set(slice(0, ROWS), rows(1.0))
    storage.flush()
    victim = tmp_path / "victim"
    (path / "data" / "c").rename(victim)
    (path / "data" / "c").symlink_to(victim, target_is_directory=True)
    before = digest(victim)
    with pytest.raises(UnsafePathError, match="symlink"):
        storage.set(slice(0, 2), rows(9.0)[:2])
        storage.flush()
    storage.close()
    assert digest(victim) == before
