"""``unibatch verify``: 0 with a summary, 1 with a precise report for buffers corrupted on purpose, 2 unreadable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import optree
import pytest

from unibatch import BinarySpace, BoxSpace, DictSpace, NumpyComputeBackend, ReplayBuffer, TrajectoryReplayBuffer
from unibatch.cli import main
from unibatch.cli.demo import SimulatedArm, robot_step_space
from unibatch.cli.verify import outside_rows
from unibatch.spaces import json_to_space
from unibatch.storages import MemmapStorage

NP = NumpyComputeBackend
EPISODES, STEPS = 3, 4


def record(path: Path, backend=NP, image: int = 8) -> Path:
    """The demo's robot, 3 episodes of 4 steps, with a goal per episode."""
    goal_space = DictSpace(backend, {"goal": BoxSpace(backend, -1, 1, "float32", shape=(7,))})
    buffer = TrajectoryReplayBuffer.create(
        robot_step_space(backend, image),
        None,
        step_data_capacity=EPISODES * STEPS,
        episode_data_instance_space=goal_space,
        episode_data_capacity=EPISODES,
        cache_path=path,
    )
    arm = SimulatedArm(image, seed=0)
    for _ in range(EPISODES):
        arm.reset()
        buffer.set_current_episode_data({"goal": backend.from_numpy(arm.goal)})
        for t in range(STEPS):
            step = arm.step(last=t == STEPS - 1)
            buffer.append(optree.tree_map(lambda x: backend.from_numpy(np.asarray(x)), step))
        buffer.mark_episode_end()
    buffer.close()
    return path


def verify(capsys, path: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["verify", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def leaf_file(storage: Path, name: str) -> Path:
    """The raw file holding the memmap leaf ``name``: its own ``leaf_NNN.bin`` or the shared ``packed.bin``."""
    sidecar = json.loads((storage / "memmap.json").read_text())
    position = next(i for i, leaf in enumerate(sidecar["leaves"]) if leaf["name"] == name)
    packed = sidecar.get("packed") or {"leaves": []}
    return storage / ("packed.bin" if position in packed["leaves"] else f"leaf_{position:03d}.bin")


def poke(storage: Path, name: str, row: int, element: tuple[int, ...], value) -> None:
    """Write ``value`` straight into the memmap files of leaf ``name``, bypassing every check."""
    space = json_to_space(json.loads((storage.parent / "metadata.json").read_text())["single_instance_space"], NP)
    with MemmapStorage(space, storage, read_only=False) as raw:
        position = [leaf.name for leaf in raw._leaves].index(name)
        raw._open()[position][(row, *element)] = value
        raw.flush()


def edit_metadata(path: Path, change) -> None:
    metadata = json.loads((path / "metadata.json").read_text())
    change(metadata)
    (path / "metadata.json").write_text(json.dumps(metadata))


def test_consistent_buffer_passes(tmp_path, capsys, backend) -> None:
    path = record(tmp_path / "robot", backend)
    code, out, _ = verify(capsys, path, "--chunk", "5")
    assert code == 0, out
    assert out.startswith(f"OK: {path} (TrajectoryReplayBuffer) is consistent: 12 rows in 3 episodes")
    assert "(27 rows read)" in out  # 12 steps + 12 episode ids + 3 episode data rows
    assert len(out.splitlines()) == 1


def test_out_of_bounds_values_name_key_row_episode_and_bounds(tmp_path, capsys) -> None:
    path = record(tmp_path / "robot")
    storage = path / "step_data" / "storage"
    poke(storage, "obs/joints", 5, (2,), 9.0)
    poke(storage, "obs/joints", 9, (0,), -7.5)
    poke(storage, "reward", 7, (), np.nan)
    code, out, _ = verify(capsys, path, "--chunk", "4")
    assert code == 1
    lines = out.splitlines()
    assert (
        "PROBLEM step_data/obs/joints: 2 of 12 rows outside the space; first: row 5 (episode 1, step 1): "
        "element [2] = 9.0, expected within [-3.1415927, 3.1415927]"
    ) in lines
    assert (
        "PROBLEM step_data/reward: 1 of 12 rows outside the space; first: row 7 (episode 1, step 3): "
        "value nan, expected within [-inf, inf]"
    ) in lines
    assert lines[-1].startswith(f"FAILED: 2 problems in {path} (TrajectoryReplayBuffer;")


def test_booleans_stored_as_other_bytes_are_reported() -> None:
    """A storage that hands out raw bytes (memmap reads them back as 0/1) still gets checked."""
    values = np.array([0, 1, 4, 1], dtype=np.uint8).view(np.bool_)
    rows, detail = outside_rows(BinarySpace(NP, ()), values)
    assert rows.tolist() == [2] and detail == "byte 4 is not a boolean (0 or 1)"
    assert outside_rows(BinarySpace(NP, ()), np.array([True, False])) is None


def test_count_beyond_capacity_and_bad_offset(tmp_path, capsys) -> None:
    path = record(tmp_path / "robot")

    def corrupt(metadata: dict) -> None:
        metadata["steps"]["count"] = 20
        metadata["steps"]["offset"] = 12

    edit_metadata(path, corrupt)
    code, out, _ = verify(capsys, path)
    assert code == 1
    lines = out.splitlines()
    assert "PROBLEM metadata.json steps: count 20 exceeds the capacity 12 of step_data" in lines
    assert "PROBLEM metadata.json steps: offset 12 is outside the slots [0, 12) of step_data" in lines
    assert "NOTE rows not read: the metadata above must be repaired first" in lines
    assert lines[-1].startswith("FAILED: 2 problems")


def test_newer_format_version_and_unknown_storage(tmp_path, capsys) -> None:
    path = record(tmp_path / "robot")
    edit_metadata(path, lambda metadata: metadata.update(format_version=7))
    edit_metadata(path / "episode_data", lambda metadata: metadata["storage"].update(name="tape"))
    code, out, _ = verify(capsys, path)
    assert code == 1
    assert "PROBLEM metadata.json: format_version: expected 1 to 1 (what this unibatch reads), got 7" in out
    assert "PROBLEM episode_data/metadata.json: storage: unknown storage 'tape'" in out


def test_deleted_leaf_file(tmp_path, capsys) -> None:
    path = record(tmp_path / "robot")
    file = leaf_file(path / "step_data" / "storage", "obs/image")
    file.unlink()
    code, out, _ = verify(capsys, path)
    assert code == 1
    assert "PROBLEM open: " in out and f"{file} is missing" in out


def test_deleted_storage_directory(tmp_path, capsys) -> None:
    path = record(tmp_path / "robot")
    for child in (path / "episode_data" / "storage").iterdir():
        child.unlink()
    (path / "episode_data" / "storage").rmdir()
    code, out, _ = verify(capsys, path)
    assert code == 1
    assert (
        f"PROBLEM episode_data/metadata.json: storage files missing: expected {path / 'episode_data' / 'storage'}"
        in out
    )


def test_episode_ids_out_of_order_and_table_mismatch(tmp_path, capsys) -> None:
    path = record(tmp_path / "robot")
    poke(path / "step_episode_ids" / "storage", "", 6, (), 0)  # a step of episode 1 now says episode 0
    edit_metadata(path, lambda metadata: metadata["episode_id_to_index_map"].pop("2"))
    code, out, _ = verify(capsys, path)
    assert code == 1
    lines = out.splitlines()
    assert (
        "PROBLEM episode_ids: 1 decrease(s) in logical order; first at row 6: episode 0 after episode 1 "
        "(expected non-decreasing ids)"
    ) in lines
    assert "PROBLEM episode_id_to_index_map: no episode-data slot for episodes [2] (1) that have steps" in lines


def test_ids_after_the_current_episode_and_shared_slots(tmp_path, capsys) -> None:
    path = record(tmp_path / "robot")

    def corrupt(metadata: dict) -> None:
        metadata["current_episode_id"] = 1
        metadata["episode_id_to_index_map"]["1"] = 0

    edit_metadata(path, corrupt)
    code, out, _ = verify(capsys, path)
    assert code == 1
    assert (
        "PROBLEM episode_ids: 4 rows belong to episodes after the current episode 1; first: row 8 has episode id 2"
        in out
    )
    assert (
        "PROBLEM episode_id_to_index_map: slots [0] (1) are shared by several episodes; expected one slot per episode"
        in out
    )
    assert "PROBLEM episode_id_to_index_map: episodes [2] (1) are after the current episode 1" in out


def test_plain_replay_buffer_ring(tmp_path, capsys) -> None:
    space = DictSpace(NP, {"x": BoxSpace(NP, 0, 100, "int32", shape=(2,))})
    buffer = ReplayBuffer.create(None, space, cache_path=tmp_path / "ring", capacity=6)
    buffer.extend({"x": np.arange(8, dtype=np.int32).reshape(4, 2)})
    buffer.extend({"x": np.arange(8, dtype=np.int32).reshape(4, 2)})
    buffer.flush()
    buffer.close()
    code, out, _ = verify(capsys, tmp_path / "ring")
    assert code == 0 and "is consistent: 6 rows, every value inside the space" in out
    poke(tmp_path / "ring" / "storage", "x", 0, (1,), 500)  # physical slot 0 is logical row 4 (offset 2)
    code, out, _ = verify(capsys, tmp_path / "ring")
    assert code == 1
    assert "PROBLEM x: 1 of 6 rows outside the space; first: row 4: element [1] = 500, expected within [0, 100]" in out


def test_invalid_metadata_json(tmp_path, capsys) -> None:
    path = record(tmp_path / "robot")
    (path / "metadata.json").write_text("{not json")
    code, out, _ = verify(capsys, path)
    assert code == 1 and "PROBLEM metadata.json: is not valid JSON" in out


def test_robomimic_dataset(tmp_path, capsys) -> None:
    path = tmp_path / "demos.hdf5"
    with h5py.File(path, "w") as file:
        for number, length in ((0, 3), (1, 2)):
            file[f"data/demo_{number}/actions"] = np.zeros((length, 7), np.float32)
            file[f"data/demo_{number}/obs/eef_pos"] = np.ones((length, 3))
    code, out, _ = verify(capsys, path)
    assert code == 0 and out.startswith(f"OK: {path} (robomimic) is consistent: 5 rows in 2 episodes")


def test_unreadable_path_exits_2(tmp_path, capsys) -> None:
    code, out, err = verify(capsys, tmp_path)
    assert code == 2 and out == "" and "looked for" in err


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_python_dash_m(tmp_path) -> None:
    path = record(tmp_path / "robot")
    poke(path / "step_data" / "storage", "action", 3, (0,), 2.0)
    result = subprocess.run(
        [sys.executable, "-m", "unibatch", "verify", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "PROBLEM step_data/action: 1 of 12 rows outside the space; first: row 3 (episode 0, step 3)" in result.stdout
