"""``unibatch show``: an episode's camera as mp4/gif and a PNG plot of its low-dimensional keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from unibatch import BinarySpace, BoxSpace, DictSpace, NumpyComputeBackend, ReplayBuffer, TrajectoryReplayBuffer
from unibatch.cli import main

NP = NumpyComputeBackend
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LENGTHS = (5, 3, 4)


def camera_frames(n: int, height: int, width: int, offset: int) -> np.ndarray:
    """``uint8[n, height, width, 3]`` smooth frames that change over time (compress well, decode close)."""
    rows = np.linspace(0, 80, height, dtype=np.float32)[None, :, None, None]
    cols = np.linspace(0, 40, width, dtype=np.float32)[None, None, :, None]
    time = (np.arange(n, dtype=np.float32) * 5 + offset)[:, None, None, None]
    channels = np.array([0, 30, 60], dtype=np.float32)[None, None, None, :]
    return (rows + cols + time + channels).astype(np.uint8)


def record(path: Path, layout: str = "CHW", height: int = 16, width: int = 16) -> tuple[Path, list[np.ndarray]]:
    """Three episodes with an image key in ``layout`` and low-dimensional keys; returns the HWC frames per episode."""
    shape = {"CHW": (3, height, width), "HWC": (height, width, 3), "HW": (height, width)}[layout]
    space = DictSpace(
        NP,
        {
            "camera": BoxSpace(NP, 0, 255, "uint8", shape=shape),
            "state": BoxSpace(NP, -10, 10, "float32", shape=(3,)),
            "done": BinarySpace(NP, ()),
            "features": BoxSpace(NP, -1, 1, "float32", shape=(40,)),
        },
    )
    buffer = TrajectoryReplayBuffer.create(space, None, step_data_capacity=sum(LENGTHS), cache_path=path)
    episodes = []
    for number, length in enumerate(LENGTHS):
        frames = camera_frames(length, height, width, offset=20 * number)
        episodes.append(frames)
        stored = {"CHW": frames.transpose(0, 3, 1, 2), "HWC": frames, "HW": frames[..., 0]}[layout]
        buffer.extend(
            {
                "camera": np.ascontiguousarray(stored),
                "state": np.linspace(-1, 1, length * 3, dtype=np.float32).reshape(length, 3),
                "done": np.arange(length) == length - 1,
                "features": np.zeros((length, 40), np.float32),
            }
        )
        buffer.mark_episode_end()
    buffer.close()
    return path, episodes


def show(capsys, *arguments) -> tuple[int, str, str]:
    code = main(["show", *map(str, arguments)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def decode_mp4(path: Path) -> tuple[str, np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        return stream.codec_context.name, frames


def test_mp4_of_a_channel_first_camera_and_the_plot_next_to_it(tmp_path, capsys) -> None:
    path, episodes = record(tmp_path / "robot", "CHW")
    out = tmp_path / "videos" / "episode1.mp4"
    code, stdout, err = show(capsys, path, "--episode", 1, "--key", "camera", "--out", out)
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0] == f"wrote {out}: 3 frames of camera (16x16) from episode id 1 (position 1, 3 steps), 10 fps"
    assert lines[1] == (
        f"wrote {out.with_suffix('.png')}: 2 low-dimensional keys over 3 steps "
        "(not plotted, more than 32 elements: features)"
    )
    codec, frames = decode_mp4(out)
    assert codec in ("h264", "mpeg4") and frames.shape == (3, 16, 16, 3)
    assert np.abs(frames.astype(int) - episodes[1].astype(int)).mean() < 6  # lossy yuv420p
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_SIGNATURE


def test_gif_of_a_channel_last_camera(tmp_path, capsys) -> None:
    path, episodes = record(tmp_path / "robot", "HWC", height=12, width=20)
    out = tmp_path / "last.gif"
    code, stdout, err = show(
        capsys, path, "--position", -1, "--key", "step_data/camera", "--out", out, "--no-plot", "--fps", 5
    )
    assert code == 0, err
    assert stdout.splitlines() == [
        f"wrote {out}: 4 frames of step_data/camera (20x12) from episode id 2 (position 2, 4 steps), 5 fps"
    ]
    with Image.open(out) as image:
        assert image.n_frames == 4 and image.size == (20, 12) and image.info["duration"] == 200
        image.seek(2)
        frame = np.asarray(image.convert("RGB"))
    assert np.abs(frame.astype(int) - episodes[2][2].astype(int)).mean() < 6  # a 256-colour palette
    assert not out.with_suffix(".png").exists()


def test_gray_frames_with_odd_sides_are_padded_for_mp4(tmp_path, capsys) -> None:
    path, episodes = record(tmp_path / "robot", "HW", height=9, width=11)
    out = tmp_path / "gray.mp4"
    code, _, err = show(capsys, path, "--key", "camera", "--out", out, "--no-plot")
    assert code == 0, err
    _, frames = decode_mp4(out)
    assert frames.shape == (5, 10, 12, 3)
    gray = episodes[0][..., 0].astype(int)
    assert np.abs(frames[:, :9, :11, 1].astype(int) - gray).mean() < 6


def test_plot_alone(tmp_path, capsys) -> None:
    path, _ = record(tmp_path / "robot")
    code, stdout, err = show(capsys, path, "--episode", 2, "--plot", tmp_path / "plot.png")
    assert code == 0, err
    assert stdout.startswith(f"wrote {tmp_path / 'plot.png'}: 2 low-dimensional keys over 4 steps")
    with Image.open(tmp_path / "plot.png") as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_plot_is_skipped_with_a_message_without_matplotlib(tmp_path, capsys, monkeypatch) -> None:
    path, _ = record(tmp_path / "robot")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    out = tmp_path / "episode.gif"
    code, stdout, err = show(capsys, path, "--key", "camera", "--out", out)
    assert code == 0
    assert out.exists() and not out.with_suffix(".png").exists()
    assert "skipped the plot" in err and 'pip install "unibatch[plot]"' in err
    assert stdout.count("wrote ") == 1


def test_buffer_without_episodes_is_one_episode(tmp_path, capsys) -> None:
    space = DictSpace(NP, {"image": BoxSpace(NP, 0, 255, "uint8", shape=(8, 8, 3))})
    buffer = ReplayBuffer.create(None, space, cache_path=tmp_path / "plain", capacity=6)
    buffer.extend({"image": camera_frames(6, 8, 8, 0)})
    buffer.flush()
    buffer.close()
    code, stdout, err = show(capsys, tmp_path / "plain", "--key", "image", "--out", tmp_path / "all.gif")
    assert code == 0 and "6 frames of image (8x8) from all 6 rows" in stdout
    assert "no plot:" in err and "has no low-dimensional keys" in err
    code, _, err = show(capsys, tmp_path / "plain", "--episode", 1, "--key", "image", "--out", tmp_path / "x.gif")
    assert code == 2 and "has no episodes" in err


def test_errors_exit_2_and_say_what_is_wrong(tmp_path, capsys) -> None:
    path, _ = record(tmp_path / "robot")
    out = tmp_path / "x.mp4"
    code, _, err = show(capsys, path, "--key", "lidar", "--out", out)
    assert code == 2 and "no key 'lidar'" in err and "step_data/camera, step_data/done, step_data/features" in err
    code, _, err = show(capsys, path, "--episode", 3, "--key", "camera", "--out", out)
    assert code == 2 and "no episode has id 3" in err and "has 3 episodes with ids 0 to 2" in err
    code, _, err = show(capsys, path, "--position", 3, "--key", "camera", "--out", out)
    assert code == 2 and "position 3 is out of range" in err and "has 3 episodes (0 to 2)" in err
    code, _, err = show(capsys, path, "--position", 0, "--episode", 0, "--key", "camera", "--out", out)
    assert code == 2 and "not allowed with argument" in err
    code, _, err = show(capsys, path, "--key", "state", "--out", out)
    assert code == 2 and "key 'state' is not an image (float32, shape (3,))" in err
    code, _, err = show(capsys, path, "--key", "camera", "--out", tmp_path / "x.avi")
    assert code == 2 and "--out must end in .mp4 or .gif" in err
    code, _, err = show(capsys, path, "--key", "camera")
    assert code == 2 and "--key and --out go together" in err
    code, _, err = show(capsys, path)
    assert code == 2 and "nothing to write" in err
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_python_dash_m(tmp_path) -> None:
    path, _ = record(tmp_path / "robot")
    out = tmp_path / "episode.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "unibatch", "show", str(path), "--key", "camera", "--out", str(out), "--no-plot"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}: 5 frames") and decode_mp4(out)[1].shape == (5, 16, 16, 3)


def test_episode_means_the_id_and_position_the_place(tmp_path, capsys) -> None:
    """A robomimic file of demo_0, demo_2 and demo_10: ``--episode 10`` is demo_10 (at position 2)."""
    import h5py

    path = tmp_path / "demos.hdf5"
    lengths = {0: 3, 2: 4, 10: 5}
    with h5py.File(path, "w") as file:
        data = file.create_group("data")
        data.attrs["total"] = sum(lengths.values())
        for demo, n in lengths.items():
            group = data.create_group(f"demo_{demo}")
            group.attrs["num_samples"] = n
            group["actions"] = np.full((n, 2), demo, np.float64)
            group["obs/state"] = np.full((n, 3), demo, np.float64)
            group["obs/camera"] = camera_frames(n, 8, 8, demo)
            group["dones"] = (np.arange(n) == n - 1).astype(np.int64)
            group["rewards"] = np.zeros(n)
    out = tmp_path / "demo.gif"
    code, stdout, err = show(capsys, path, "--episode", 10, "--key", "obs/camera", "--out", out, "--no-plot")
    assert code == 0, err
    assert "5 frames of obs/camera (8x8) from episode id 10 (position 2, 5 steps)" in stdout
    code, stdout, err = show(capsys, path, "--position", 1, "--key", "obs/camera", "--out", out, "--no-plot")
    assert code == 0 and "from episode id 2 (position 1, 4 steps)" in stdout, err
    code, _, err = show(capsys, path, "--episode", 1, "--key", "obs/camera", "--out", out, "--no-plot")
    assert code == 2 and "no episode has id 1" in err and "ids 0, 2, 10" in err and "--position P" in err
