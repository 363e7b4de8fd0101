"""``unibatch convert``: round trips between storages (every row compared), episodes kept, imports, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import optree
import pytest

from unibatch import BoxSpace, DictSpace, NumpyComputeBackend, ReplayBuffer, TrajectoryReplayBuffer
from unibatch.cli import main
from unibatch.cli.demo import record_robot
from unibatch.integrations.episodes import EpisodeDataset
from unibatch.storages import DictStorage

NP = NumpyComputeBackend


def record(path: Path, backend=NP, episodes: int = 3, steps: int = 4, image: int = 8, capacity: int | None = None):
    """The demo's robot with a goal per episode; with a small ``capacity`` the ring drops the first steps."""
    record_robot(path, episodes=episodes, steps=steps, image_size=image, backend=backend, capacity=capacity)
    return path


def convert(capsys, source: Path, target: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["convert", str(source), str(target), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def everything(path: Path) -> tuple[list[np.ndarray], dict]:
    """Every row of a buffer (with metadata) as NumPy leaves, and its episode bookkeeping."""
    if TrajectoryReplayBuffer.is_loadable_from(path):
        buffer = TrajectoryReplayBuffer.load_from(path, backend=NP, read_only=True)
        table = buffer.episode_id_to_index_map
        slots = np.asarray([table[episode] for episode in sorted(table)])
        state = {
            "current": buffer.current_episode_id,
            "episodes": sorted(table),
            "goals": np.asarray(buffer.episode_data_buffer.get_at(slots)["goal"]),
        }
    else:
        buffer = ReplayBuffer.load_from(path, backend=NP)
        state = {"capacity": buffer.capacity}
    rows = buffer.get_at_with_metadata(slice(None))
    leaves = [np.asarray(leaf) for leaf in optree.tree_leaves(rows)]
    buffer.close()
    return leaves, state


def assert_same(first: Path, second: Path) -> None:
    (rows_a, state_a), (rows_b, state_b) = everything(first), everything(second)
    assert len(rows_a) == len(rows_b)
    for a, b in zip(rows_a, rows_b, strict=True):
        np.testing.assert_array_equal(a, b)
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        np.testing.assert_array_equal(state_a[key], state_b[key])


def storage_names(path: Path) -> dict[str, str]:
    return {
        part: json.loads((path / part / "metadata.json").read_text())["storage"]["name"]
        for part in ("step_data", "step_episode_ids", "episode_data")
    }


def test_round_trip_through_every_storage(tmp_path, capsys, backend) -> None:
    source = record(tmp_path / "memmap", backend)
    previous = source
    for name in ("hdf5", "zarr", "parquet", "memmap"):
        target = tmp_path / f"after-{name}"
        code, out, err = convert(capsys, previous, target, "--storage", name, "--chunk", "5")
        assert code == 0, err
        assert out.startswith(
            f"converted 12 rows in 3 episodes from {previous} (TrajectoryReplayBuffer) to {target} ({name})"
        )
        assert storage_names(target) == {"step_data": name, "step_episode_ids": name, "episode_data": name}
        assert_same(source, target)
        previous = target
    assert main(["verify", str(previous)]) == 0
    assert not list(tmp_path.glob(".*converting*"))


def test_video_and_image_keys_through_a_dict_storage(tmp_path, capsys) -> None:
    source = record(tmp_path / "robot")
    for name in ("video", "image"):
        target = tmp_path / name
        code, out, err = convert(
            capsys, source, target, "--key-storage", f"step_data/obs/image={name}", "--no-progress"
        )
        assert code == 0, err
        assert f"({'dict: obs/image=' + name}, *=memmap)" in out and err == ""
        sidecar = json.loads((target / "step_data" / "storage" / "dict.json").read_text())
        assert {key: child["name"] for key, child in sidecar["children"].items()} == {"*": "memmap", "obs/image": name}
        assert storage_names(target)["step_episode_ids"] == "memmap"
        assert_same(source, target)  # ffv1 video and PNG images are lossless


def test_ring_buffer_keeps_logical_order_and_capacity(tmp_path, capsys) -> None:
    space = DictSpace(NP, {"x": BoxSpace(NP, 0, 100, "int32", shape=(2,))})
    buffer = ReplayBuffer.create(None, space, cache_path=tmp_path / "ring", capacity=6)
    for start in (0, 8):
        buffer.extend({"x": np.arange(start, start + 8, dtype=np.int32).reshape(4, 2)})
    buffer.flush()
    buffer.close()
    code, out, _ = convert(capsys, tmp_path / "ring", tmp_path / "copy", "--storage", "hdf5", "--chunk", "4")
    assert code == 0 and out.startswith("converted 6 rows from ")  # no episodes: a plain ReplayBuffer
    assert_same(tmp_path / "ring", tmp_path / "copy")
    copy = ReplayBuffer.load_from(tmp_path / "copy", backend=NP)
    assert copy.offset == 0 and copy.capacity == 6 and copy.get_at(0)["x"].tolist() == [4, 5]
    copy.close()
    code, _, _ = convert(capsys, tmp_path / "ring", tmp_path / "grow", "--capacity", "growable")
    assert code == 0 and ReplayBuffer.get_capacity_from_path(tmp_path / "grow") is None


def test_partly_overwritten_trajectory_ring_keeps_ids_and_episode_data(tmp_path, capsys) -> None:
    source = record(tmp_path / "ring", episodes=4, steps=3, capacity=8)  # episode 0 and a step of 1 are gone
    code, out, err = convert(capsys, source, tmp_path / "copy", "--storage", "zarr")
    assert code == 0, err
    assert "converted 8 rows in 3 episodes" in out
    assert_same(source, tmp_path / "copy")
    copy = TrajectoryReplayBuffer.load_from(tmp_path / "copy", backend=NP, read_only=True)
    ids = copy.step_episode_id_buffer.get_at(slice(None)).tolist()
    assert ids == [1, 1, 2, 2, 2, 3, 3, 3] and copy.current_episode_id == 4 and copy.capacity == 8
    copy.close()


def test_existing_target_is_refused_unless_overwrite(tmp_path, capsys) -> None:
    source = record(tmp_path / "robot")
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    code, out, err = convert(capsys, source, target)
    assert code == 2 and out == "" and "exists and is not empty; pass --overwrite" in err
    assert (target / "keep.txt").read_text() == "precious"
    code, _, err = convert(capsys, source, target, "--overwrite")
    assert code == 0, err
    assert not (target / "keep.txt").exists() and TrajectoryReplayBuffer.is_loadable_from(target)
    code, _, err = convert(capsys, source, source, "--overwrite")
    assert code == 2 and "holds the source" in err
    code, _, err = convert(capsys, source, source / "inside")
    assert code == 2 and "inside the source" in err and not (source / "inside").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert convert(capsys, source, empty)[0] == 0  # an empty directory is fine


def test_usage_errors_exit_2_and_leave_nothing_behind(tmp_path, capsys) -> None:
    source = record(tmp_path / "robot")
    code, _, err = convert(capsys, source, tmp_path / "a", "--storage", "tape")
    assert code == 2 and "unknown storage 'tape'" in err and "memmap" in err
    code, _, err = convert(capsys, source, tmp_path / "a", "--key-storage", "obs/image")
    assert code == 2 and "KEY=NAME" in err
    code, _, err = convert(capsys, source, tmp_path / "a", "--key-storage", "obs/camera=video")
    assert code == 2 and "no key 'obs/camera'" in err and "step_data/obs/image" in err
    code, _, err = convert(capsys, source, tmp_path / "a", "--key-storage", "obs/joints=video")
    assert code == 2 and "cannot create the new buffer" in err and "VideoStorage" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["robot"]
    code, _, err = convert(capsys, tmp_path / "missing", tmp_path / "a")
    assert code == 2 and "does not exist" in err


def test_progress_bar_and_final_line(tmp_path, capsys) -> None:
    source = record(tmp_path / "robot")
    code, out, err = convert(capsys, source, tmp_path / "copy", "--chunk", "5")
    assert code == 0
    assert "convert: 100%" in err and "rows/s" in err  # tqdm on stderr
    assert out.count("\n") == 1 and out.rstrip().endswith(" rows/s)") and " s (" in out


def write_robomimic(path: Path) -> dict[str, np.ndarray]:
    """Two demos numbered 3 and 11, with a camera image."""
    rng = np.random.default_rng(0)
    arrays = {}
    with h5py.File(path, "w") as file:
        for number, length in ((11, 3), (3, 4)):
            arrays[number] = {
                "actions": rng.normal(size=(length, 2)).astype(np.float32),
                "obs/eef_pos": rng.normal(size=(length, 3)).astype(np.float32),
                "obs/agentview_image": rng.integers(0, 256, size=(length, 6, 8, 3), dtype=np.uint8),
            }
            for name, value in arrays[number].items():
                file[f"data/demo_{number}/{name}"] = value
    return arrays


def test_robomimic_file_becomes_a_trajectory_buffer(tmp_path, capsys) -> None:
    arrays = write_robomimic(tmp_path / "demos.hdf5")
    code, out, err = convert(
        capsys,
        tmp_path / "demos.hdf5",
        tmp_path / "copy",
        "--storage",
        "hdf5",
        "--key-storage",
        "obs/agentview_image=video",
    )
    assert code == 0, err
    assert "converted 7 rows in 2 episodes from" in out and "(robomimic)" in out
    copy = TrajectoryReplayBuffer.load_from(tmp_path / "copy", backend=NP, read_only=True)
    steps = copy.step_data_buffer.get_at(slice(None))
    assert copy.step_episode_id_buffer.get_at(slice(None)).tolist() == [3] * 4 + [11] * 3  # demo numbers kept
    assert copy.current_episode_id == 12 and copy.episode_data_buffer is None
    for name in ("actions", "obs/eef_pos", "obs/agentview_image"):
        value = steps
        for key in name.split("/"):
            value = value[key]
        np.testing.assert_array_equal(value, np.concatenate([arrays[3][name], arrays[11][name]]))
    copy.close()
    assert main(["verify", str(tmp_path / "copy")]) == 0


def test_minari_dataset_becomes_a_trajectory_buffer(tmp_path, capsys) -> None:
    data = tmp_path / "minari" / "data"
    data.mkdir(parents=True)
    lengths = {0: 3, 1: 2}
    with h5py.File(data / "main_data.hdf5", "w") as file:
        for episode, n in lengths.items():
            group = file.create_group(f"episode_{episode}")
            group.attrs["id"], group.attrs["total_steps"] = episode, n
            group["observations"] = np.arange((n + 1) * 2, dtype=np.float32).reshape(n + 1, 2) + 10 * episode
            group["actions"] = np.full((n, 1), episode, dtype=np.float32)
            group["rewards"] = np.ones(n)
            group["terminations"] = np.arange(n) == n - 1
            group["truncations"] = np.zeros(n, dtype=bool)
    metadata = {"dataset_id": "test/tiny-v0", "total_episodes": 2, "total_steps": 5, "data_format": "hdf5"}
    (data / "metadata.json").write_text(json.dumps(metadata))
    code, out, err = convert(capsys, tmp_path / "minari", tmp_path / "copy", "--storage", "parquet")
    assert code == 0, err
    assert "converted 5 rows in 2 episodes" in out and "(minari)" in out
    copy = TrajectoryReplayBuffer.load_from(tmp_path / "copy", backend=NP, read_only=True)
    rows = copy.step_data_buffer.get_at(slice(None))
    assert rows["action"][:, 0].tolist() == [0, 0, 0, 1, 1]
    assert rows["next_obs"][:, 0].tolist() == [2, 4, 6, 12, 14]
    copy.close()


def test_dataset_ids_that_do_not_increase_are_renumbered(tmp_path, capsys, monkeypatch) -> None:
    rows = ReplayBuffer.create(None, DictSpace(NP, {"image": BoxSpace(NP, 0, 255, "uint8", shape=(4, 6))}))
    rows.extend({"image": np.arange(5 * 24, dtype=np.uint8).reshape(5, 4, 6)})
    directory = tmp_path / "lerobot"
    (directory / "meta").mkdir(parents=True)
    fake = types.ModuleType("unibatch.integrations.lerobot")
    fake.is_lerobot = lambda path: Path(path) == directory
    fake.open_lerobot = lambda path, backend: EpisodeDataset(rows, [3, 2], episode_ids=[9, 4], fps=25.0)
    monkeypatch.setitem(sys.modules, "unibatch.integrations.lerobot", fake)
    code, out, err = convert(capsys, directory, tmp_path / "copy", "--key-storage", "image=video")
    assert code == 0, err
    assert "note: episode ids renumbered 0 to 1: the source's ids do not increase" in out
    copy = TrajectoryReplayBuffer.load_from(tmp_path / "copy", backend=NP, read_only=True)
    assert copy.step_episode_id_buffer.get_at(slice(None)).tolist() == [0, 0, 0, 1, 1]
    np.testing.assert_array_equal(copy.step_data_buffer.get_at(slice(None))["image"], rows.get_at(slice(None))["image"])
    storage = copy.step_data_buffer.storage
    assert isinstance(storage, DictStorage)
    video = json.loads((Path(storage.children["image"].cache_filename) / "video.json").read_text())
    assert video["fps"] == 25  # the dataset's frame rate goes into the video files
    copy.close()


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_console_script(tmp_path) -> None:
    source = record(tmp_path / "robot", episodes=2, steps=3)
    script = Path(sys.executable).with_name("unibatch")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "unibatch"]
    result = subprocess.run(
        [*command, "convert", str(source), str(tmp_path / "copy"), "--storage", "hdf5"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "converted 6 rows in 2 episodes" in result.stdout and "rows/s" in result.stderr
    assert_same(source, tmp_path / "copy")


def test_overwrite_keeps_the_old_target_until_the_new_one_is_in_place(tmp_path, monkeypatch) -> None:
    """Regression (review): --overwrite deleted DST before the staged result was renamed into place."""
    import unibatch.cli.convert as convert_module

    target = tmp_path / "dst"
    target.mkdir()
    (target / "old").write_text("previous conversion")
    real_replace = os.replace

    def fail_on_staging(source, destination):
        if ".converting-" in str(source):
            raise SystemExit("killed before the staged result was renamed")
        real_replace(source, destination)

    monkeypatch.setattr(convert_module.os, "replace", fail_on_staging)
    with pytest.raises(SystemExit), convert_module._staging(target, overwrite=True) as staging:
        (staging / "new").write_text("staged conversion")  # _staging yields a new, empty directory
    kept = [path for path in tmp_path.iterdir() if (path / "old").exists()]
    assert kept, "the previous DST must survive, possibly renamed aside"
