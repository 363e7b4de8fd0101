"""``unibatch info``: every key path with dtype and shape, the length, episodes, storages, bytes on disk."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from unibatch import BoxSpace, DictSpace, NumpyComputeBackend, ReplayBuffer
from unibatch.cli import main
from unibatch.cli.demo import record_robot
from unibatch.integrations.episodes import EpisodeDataset
from unibatch.storages import DictStorage, storage_class

NP = NumpyComputeBackend


def record(path: Path, backend, episodes: int = 3, steps: int = 4, image: int = 8) -> Path:
    """A TrajectoryReplayBuffer of the demo's robot (image ``(3, image, image)``) with a goal per episode."""
    record_robot(path, episodes=episodes, steps=steps, image_size=image, backend=backend)
    return path


def info(capsys, *arguments: str) -> tuple[int, str, str]:
    code = main(["info", *map(str, arguments)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_info_lists_keys_length_episodes_and_storages(tmp_path, capsys, backend) -> None:
    path = record(tmp_path / "robot", backend)
    code, out, err = info(capsys, path)
    assert code == 0, err
    lines = out.splitlines()
    assert "length: 12" in lines and "capacity: 12" in lines and "offset: 0" in lines
    assert "format: TrajectoryReplayBuffer" in lines
    assert "episodes: 3" in lines
    assert "episode lengths: min 4, mean 4.0, max 4" in lines
    assert "first episodes (id:length): 0:4 1:4 2:4" in lines
    assert "current episode id: 3 (no steps yet)" in lines
    expected = {
        "step_data/action": r"float32\s+\(7,\)\s+\[-1, 1\]\s+memmap",
        "step_data/done": r"bool\s+\(\)\s+\{False, True\}\s+memmap",
        "step_data/obs/image": r"uint8\s+\(3, 8, 8\)\s+\[0, 255\]\s+memmap",
        "step_data/obs/joints": r"float32\s+\(7,\)\s+\[-3.14159, 3.14159\]\s+memmap",
        "step_data/reward": r"float32\s+\(\)\s+\[-inf, inf\]\s+memmap",
        "episode_data/goal": r"float32\s+\(7,\)\s+\[-1, 1\]\s+memmap",
    }
    for key, rest in expected.items():
        assert re.search(rf"^  {re.escape(key)}\s+{rest}$", out, re.M), (key, out)
    assert re.search(r"^  episode_ids\s+int(32|64)\s+\(\)", out, re.M)
    for part in ("step_data", "step_episode_ids", "episode_data"):
        assert re.search(rf"^  {part}\s+memmap\s+\d+ bytes\s+{re.escape(str(path / part))}", out, re.M), out
    total = int(re.search(r"^bytes on disk: (\d+) \(", out, re.M).group(1))
    assert total >= 12 * 3 * 8 * 8


def test_info_json_is_machine_readable(tmp_path, capsys) -> None:
    path = record(tmp_path / "robot", NP, episodes=2, steps=5)
    code, out, _ = info(capsys, path, "--json")
    assert code == 0
    description = json.loads(out)
    assert (
        description["length"] == 10
        and description["capacity"] == 10
        and description["format"] == "TrajectoryReplayBuffer"
    )
    assert description["episodes"]["count"] == 2 and description["episodes"]["lengths"] == [5, 5]
    assert description["episodes"]["ids"] == [0, 1] and description["current_episode_id"] == 2
    keys = {key["path"]: key for key in description["keys"]}
    assert keys["step_data/obs/image"]["shape"] == [3, 8, 8] and keys["step_data/obs/image"]["dtype"] == "uint8"
    assert [part["part"] for part in description["storages"]] == ["step_data", "step_episode_ids", "episode_data"]
    assert all(part["name"] == "memmap" and part["bytes"] > 0 for part in description["storages"])
    assert description["bytes_on_disk"] >= sum(part["bytes"] for part in description["storages"])


def test_ring_buffer_shows_offset_and_no_episodes(tmp_path, capsys) -> None:
    space = BoxSpace(NP, 0, 10, "int32", shape=(2,))
    buffer = ReplayBuffer.create(None, space, cache_path=tmp_path / "ring", capacity=5)
    buffer.extend(np.arange(8, dtype=np.int32).reshape(4, 2))
    buffer.extend(np.arange(8, dtype=np.int32).reshape(4, 2))
    buffer.flush()
    buffer.close()
    code, out, _ = info(capsys, tmp_path / "ring")
    assert code == 0
    lines = out.splitlines()
    assert "format: ReplayBuffer" in lines and "length: 5" in lines and "capacity: 5" in lines and "offset: 3" in lines
    assert "episodes: none (rows without episode boundaries)" in lines
    assert re.search(r"^  \(root\)\s+int32\s+\(2,\)\s+\[0, 10\]\s+memmap$", out, re.M), out


def test_growable_hdf5_buffer(tmp_path, capsys) -> None:
    space = DictSpace(NP, {"state": BoxSpace(NP, -1, 1, "float64", shape=(3,))})
    buffer = ReplayBuffer.create(storage_class("hdf5"), space, cache_path=tmp_path / "grow")
    buffer.extend({"state": np.zeros((4, 3))})
    buffer.flush()
    buffer.close()
    code, out, _ = info(capsys, tmp_path / "grow")
    assert code == 0
    assert "capacity: growable" in out.splitlines() and "length: 4" in out.splitlines()
    assert re.search(r"^  state\s+float64\s+\(3,\)\s+\[-1, 1\]\s+hdf5$", out, re.M)
    assert re.search(r"^  storage\s+hdf5\s+\d+ bytes\s+\S+storage\.hdf5$", out, re.M), out


def test_dict_storage_names_the_storage_of_every_key(tmp_path, capsys) -> None:
    space = DictSpace(
        NP,
        {
            "obs": {
                "image": BoxSpace(NP, 0, 255, "uint8", shape=(6, 8, 3)),
                "state": BoxSpace(NP, -1, 1, "float32", shape=(2,)),
            },
            "action": BoxSpace(NP, -1, 1, "float32", shape=(2,)),
        },
    )
    buffer = ReplayBuffer.create(
        DictStorage, space, {"obs/image": "image", "*": "memmap"}, cache_path=tmp_path / "dict", capacity=3
    )
    buffer.flush()
    buffer.close()
    code, out, _ = info(capsys, tmp_path / "dict")
    assert code == 0
    assert re.search(r"^  obs/image\s+uint8\s+\(6, 8, 3\)\s+\[0, 255\]\s+image$", out, re.M), out
    assert re.search(r"^  obs/state\s+float32\s+\(2,\)\s+\[-1, 1\]\s+memmap$", out, re.M)
    assert re.search(r"^  storage\s+dict\s+\d+ bytes", out, re.M)
    assert re.search(r"^    obs/image\s+image\s+\d+ bytes\s+\S+obs\.image$", out, re.M)
    assert re.search(r"^    \*\s+memmap\s+\d+ bytes\s+\S+_default$", out, re.M)


def test_unknown_path_exits_2_and_says_what_was_looked_for(tmp_path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    code, out, err = info(capsys, tmp_path)
    assert code == 2 and out == ""
    assert "not a dataset unibatch can open" in err and "metadata.json" in err and "robomimic" in err
    code, _, err = info(capsys, tmp_path / "missing")
    assert code == 2 and "does not exist" in err


def test_newer_format_exits_2(tmp_path, capsys) -> None:
    path = record(tmp_path / "robot", NP, episodes=1, steps=2)
    metadata = json.loads((path / "metadata.json").read_text())
    (path / "metadata.json").write_text(json.dumps({**metadata, "format_version": 99}))
    code, _, err = info(capsys, path)
    assert code == 2 and "format_version 99" in err


def test_robomimic_file(tmp_path, capsys) -> None:
    path = tmp_path / "demos.hdf5"
    with h5py.File(path, "w") as file:
        for number, length in ((10, 3), (2, 2)):
            file[f"data/demo_{number}/actions"] = np.zeros((length, 7), np.float32)
            file[f"data/demo_{number}/obs/agentview_image"] = np.zeros((length, 6, 8, 3), np.uint8)
    code, out, err = info(capsys, path)
    assert code == 0, err
    lines = out.splitlines()
    assert "format: robomimic" in lines and "length: 5" in lines and "episodes: 2" in lines
    assert "first episodes (id:length): 2:2 10:3" in lines
    assert re.search(r"^  obs/agentview_image\s+uint8\s+\(6, 8, 3\)", out, re.M)


def test_parquet_and_hdf5_files(tmp_path, capsys) -> None:
    pq.write_table(pa.table({"x": np.arange(6, dtype=np.float32), "y": np.arange(6)}), tmp_path / "t.parquet")
    code, out, _ = info(capsys, tmp_path / "t.parquet")
    assert code == 0
    assert "format: parquet" in out.splitlines() and "length: 6" in out.splitlines()
    assert re.search(r"^  x\s+float32\s+\(\)", out, re.M) and re.search(r"^  y\s+int64\s+\(\)", out, re.M)
    with h5py.File(tmp_path / "plain.h5", "w") as file:
        file["a"] = np.zeros((4, 2), np.float32)
    code, out, _ = info(capsys, tmp_path / "plain.h5")
    assert code == 0 and "format: hdf5" in out.splitlines() and "length: 4" in out.splitlines()


def test_dispatches_to_an_importer_by_module_and_name(tmp_path, capsys, monkeypatch) -> None:
    """``is_lerobot``/``open_lerobot`` are looked up in ``unibatch.integrations.lerobot`` when needed."""
    rows = ReplayBuffer.create(None, BoxSpace(NP, 0, 9, "int64", shape=()))
    rows.extend(np.arange(5))
    dataset_dir = tmp_path / "lerobot"
    (dataset_dir / "meta").mkdir(parents=True)
    fake = types.ModuleType("unibatch.integrations.lerobot")
    fake.is_lerobot = lambda path: Path(path) == dataset_dir
    fake.open_lerobot = lambda path, backend: EpisodeDataset(rows, [2, 3], episode_ids=[4, 8], fps=15.0)
    monkeypatch.setitem(sys.modules, "unibatch.integrations.lerobot", fake)
    code, out, err = info(capsys, dataset_dir)
    assert code == 0, err
    lines = out.splitlines()
    assert "format: lerobot" in lines and "fps: 15" in lines and "first episodes (id:length): 4:2 8:3" in lines
    assert re.search(r"^  episode_ids\s+int64\s+\(\)\s+\[0, int64 max\]\s+computed$", out, re.M), out


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_console_script(tmp_path) -> None:
    path = record(tmp_path / "robot", NP, episodes=2, steps=3)
    script = Path(sys.executable).with_name("unibatch")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "unibatch"]
    result = subprocess.run([*command, "info", str(path)], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "length: 6" in result.stdout.splitlines()
    assert re.search(r"^  step_data/obs/image\s+uint8\s+\(3, 8, 8\)", result.stdout, re.M)


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path) -> None:
    """``unibatch info --json PATH | head``: no BrokenPipeError traceback, SIGPIPE's exit status as Unix tools."""
    path = record(tmp_path / "robot", NP, episodes=2, steps=3)
    process = subprocess.Popen(
        [sys.executable, "-m", "unibatch", "info", "--json", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()  # the reader is gone before the command writes anything
    _, stderr = process.communicate(timeout=120)
    assert b"Traceback" not in stderr and b"BrokenPipeError" not in stderr, stderr.decode()
    assert process.returncode == 141
