"""LeRobot importer: small LeRobot v3.0 / v2.1 datasets written by the test (pyarrow + PyAV), read back."""

from __future__ import annotations

import io
import json
import multiprocessing
import pickle
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from tests.conftest import to_numpy

from unibatch import FrameStackedBatch, NumpyComputeBackend, SliceStackedBatch
from unibatch.errors import FormatVersionError, ReadOnlyError, UnknownNameError, UnsafePathError
from unibatch.integrations.episodes import EpisodeDataset
from unibatch.integrations.lerobot import (
    DeltaTimestampsBatch,
    LeRobotError,
    delta_timestamps_to_offsets,
    is_lerobot,
    open_lerobot,
    read_lerobot_info,
)

FPS = 10
LENGTHS = [5, 7, 4]
TOTAL = sum(LENGTHS)
CAM = "observation.images.cam"
WRIST = "observation.images.wrist"
FRAME = (16, 16, 3)
WRIST_FRAME = (8, 8, 3)
DATA_FILES = [[0, 1], [2]]
"""Episodes per data file (v3): two packed in file-000, one in file-001."""
VIDEO_FILES = [[0], [1, 2]]
"""Episodes per video file (v3), packed differently from the data, so ep 2 starts at 0.7 s in its file."""
TASKS = ["pick the cube", "stack the cube"]
EPISODE_TASKS = [0, 1, 0]
EPISODE_META_FILES = [[0, 1], [2]]
MASK = FrameStackedBatch.get_valid_mask_function_with_episodeid_key("episode_ids", is_in_metadata=True)


# ---------------------------------------------------------------------- writing datasets
def expected_arrays() -> dict[str, np.ndarray]:
    """Every feature's rows in global index order (random frames: a lossless codec keeps them exact)."""
    rng = np.random.default_rng(0)
    episode = np.repeat(np.arange(len(LENGTHS)), LENGTHS)
    frame_index = np.concatenate([np.arange(n) for n in LENGTHS])
    return {
        "observation.state": rng.normal(size=(TOTAL, 6)).astype(np.float32),
        "action": rng.normal(size=(TOTAL, 6)).astype(np.float32),
        "timestamp": (frame_index / FPS).astype(np.float32),
        "frame_index": frame_index.astype(np.int64),
        "episode_index": episode.astype(np.int64),
        "index": np.arange(TOTAL, dtype=np.int64),
        "task_index": np.asarray(EPISODE_TASKS)[episode].astype(np.int64),
        CAM: rng.integers(0, 256, size=(TOTAL, *FRAME), dtype=np.uint8),
        WRIST: rng.integers(0, 256, size=(TOTAL, *WRIST_FRAME), dtype=np.uint8),
    }


def starts() -> list[int]:
    return np.concatenate([[0], np.cumsum(LENGTHS)[:-1]]).tolist()


def rows_of(episodes: list[int]) -> np.ndarray:
    return np.concatenate([np.arange(starts()[e], starts()[e] + LENGTHS[e]) for e in episodes])


def write_mp4(path: Path, frames: np.ndarray) -> None:
    """Lossless H.264 (libx264rgb, qp 0) in mp4, a keyframe every 4 frames, frame i at i / FPS seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264rgb", rate=FPS, options={"qp": "0", "g": "4", "keyint_min": "4"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        for number, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = number, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def data_table(arrays: dict[str, np.ndarray], rows: np.ndarray, with_image: bool) -> pa.Table:
    """Data parquet rows as LeRobot writes them: fixed-size list state, plain list action, scalar bookkeeping."""
    columns = {
        "observation.state": pa.array(arrays["observation.state"][rows].tolist(), pa.list_(pa.float32(), 6)),
        "action": pa.array(arrays["action"][rows].tolist(), pa.list_(pa.float32())),
    }
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        columns[name] = pa.array(arrays[name][rows])
    if with_image:
        images = [{"bytes": png(arrays[WRIST][row]), "path": f"frame_{row:06d}.png"} for row in rows]
        columns[WRIST] = pa.array(images, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    return pa.table(columns)


def info_json(version: str, with_image: bool, with_video: bool = True) -> dict:
    features = {
        "observation.state": {"dtype": "float32", "shape": [6], "names": [f"joint_{i}" for i in range(6)]},
        "action": {"dtype": "float32", "shape": [6], "names": [f"joint_{i}" for i in range(6)]},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    if with_video:
        features[CAM] = {
            "dtype": "video",
            "shape": list(FRAME),
            "names": ["height", "width", "channels"],
            "info": {"video.fps": FPS, "video.height": 16, "video.width": 16, "video.codec": "h264", "video.g": 4},
        }
    if with_image:
        features[WRIST] = {"dtype": "image", "shape": list(WRIST_FRAME), "names": ["height", "width", "channel"]}
    if version == "v3.0":
        paths = {
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        }
    else:
        paths = {
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        }
    return {
        "codebase_version": version,
        "robot_type": "so100",
        "total_episodes": len(LENGTHS),
        "total_frames": TOTAL,
        "total_tasks": len(TASKS),
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": FPS,
        "splits": {"train": f"0:{len(LENGTHS)}"},
        **paths,
        "features": features,
    }


def write_v3(root: Path, arrays: dict[str, np.ndarray], *, with_image: bool = False) -> None:
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info_json("v3.0", with_image), indent=4))
    pq.write_table(pa.table({"task_index": [0, 1], "task": TASKS}), root / "meta/tasks.parquet")
    data_place, video_place, video_from = {}, {}, {}
    for file_index, episodes in enumerate(DATA_FILES):
        path = root / f"data/chunk-000/file-{file_index:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data_table(arrays, rows_of(episodes), with_image), path)
        data_place.update({episode: file_index for episode in episodes})
    for file_index, episodes in enumerate(VIDEO_FILES):
        write_mp4(root / f"videos/{CAM}/chunk-000/file-{file_index:03d}.mp4", arrays[CAM][rows_of(episodes)])
        before = 0
        for episode in episodes:
            video_place[episode], video_from[episode] = file_index, before / FPS
            before += LENGTHS[episode]
    for file_index, episodes in enumerate(EPISODE_META_FILES):
        table = pa.table(
            {
                "episode_index": episodes,
                "tasks": [[TASKS[EPISODE_TASKS[e]]] for e in episodes],
                "length": [LENGTHS[e] for e in episodes],
                "data/chunk_index": [0] * len(episodes),
                "data/file_index": [data_place[e] for e in episodes],
                "dataset_from_index": [starts()[e] for e in episodes],
                "dataset_to_index": [starts()[e] + LENGTHS[e] for e in episodes],
                f"videos/{CAM}/chunk_index": [0] * len(episodes),
                f"videos/{CAM}/file_index": [video_place[e] for e in episodes],
                f"videos/{CAM}/from_timestamp": [video_from[e] for e in episodes],
                f"videos/{CAM}/to_timestamp": [video_from[e] + LENGTHS[e] / FPS for e in episodes],
                "meta/episodes/chunk_index": [0] * len(episodes),
                "meta/episodes/file_index": [file_index] * len(episodes),
                "stats/action/mean": [arrays["action"][rows_of([e])].mean(0).tolist() for e in episodes],
            }
        )
        path = root / f"meta/episodes/chunk-000/file-{file_index:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)


def write_v21(root: Path, arrays: dict[str, np.ndarray]) -> None:
    """LeRobot v2.1: one data file and one mp4 per episode, episodes.jsonl and tasks.jsonl."""
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info_json("v2.1", with_image=False)))
    lines = [{"episode_index": e, "tasks": [TASKS[EPISODE_TASKS[e]]], "length": n} for e, n in enumerate(LENGTHS)]
    (root / "meta/episodes.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    tasks = [{"task_index": i, "task": task} for i, task in enumerate(TASKS)]
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps(line) + "\n" for line in tasks))
    for episode in range(len(LENGTHS)):
        path = root / f"data/chunk-000/episode_{episode:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data_table(arrays, rows_of([episode]), with_image=False), path)
        write_mp4(root / f"videos/chunk-000/{CAM}/episode_{episode:06d}.mp4", arrays[CAM][rows_of([episode])])


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return expected_arrays()


@pytest.fixture(scope="module")
def v3_root(tmp_path_factory: pytest.TempPathFactory, arrays) -> Path:
    root = tmp_path_factory.mktemp("lerobot") / "so100_pick"
    write_v3(root, arrays)
    return root


@pytest.fixture
def copy_of_v3(v3_root: Path, tmp_path: Path) -> Path:
    """A private copy of the v3 dataset that a test may break."""
    return Path(shutil.copytree(v3_root, tmp_path / "copy"))


def check_rows(batch: dict, arrays: dict[str, np.ndarray], rows: np.ndarray, keys=None) -> None:
    for key in keys or batch:
        np.testing.assert_array_equal(to_numpy(batch[key]), arrays[key][rows], err_msg=key)


# ---------------------------------------------------------------------- tests
def test_sniff_and_metadata(v3_root: Path, tmp_path: Path) -> None:
    assert is_lerobot(v3_root)
    assert not is_lerobot(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta/info.json").write_text(json.dumps({"fps": 10}))
    assert not is_lerobot(tmp_path)
    (tmp_path / "meta/info.json").write_text("{not json")
    assert not is_lerobot(tmp_path)

    info = read_lerobot_info(v3_root)
    assert info.codebase_version == "v3.0" and info.fps == FPS
    assert info.video_keys == [CAM] and info.image_keys == []
    assert info.tasks == {0: TASKS[0], 1: TASKS[1]}
    assert info.episodes.ids.tolist() == [0, 1, 2]
    assert info.episodes.starts.tolist() == [0, 5, 12]
    assert info.episodes.data_files == ["data/chunk-000/file-000.parquet"] * 2 + ["data/chunk-000/file-001.parquet"]
    assert info.episodes.videos[CAM].from_timestamps.tolist() == [0.0, 0.0, 0.7]
    assert info.features[CAM].frame_shape() == FRAME and info.features[CAM].gop_size == 4


def test_episodes_and_layout(v3_root: Path) -> None:
    with open_lerobot(v3_root, NumpyComputeBackend) as dataset:
        assert isinstance(dataset, EpisodeDataset)
        assert len(dataset) == TOTAL and dataset.num_episodes == 3 and dataset.fps == FPS
        assert dataset.episode_lengths.tolist() == LENGTHS
        assert dataset.episode_id_values.tolist() == [0, 1, 2]
        assert dataset.episode_info[1] == {
            "episode_index": 1,
            "length": 7,
            "tasks": [TASKS[1]],
            "dataset_from_index": 5,
            "dataset_to_index": 12,
        }
        space = dataset.single_space
        assert list(space.keys()) == sorted(info_json("v3.0", False)["features"])
        assert space[CAM].shape == FRAME and space["observation.state"].shape == (6,)
        assert space["timestamp"].shape == () and dataset.rows.has_expensive_reads
        assert dataset.is_mutable is False
        with pytest.raises(ReadOnlyError):
            dataset.set_at(0, dataset.get_at(0))


def test_random_batches_on_every_backend(v3_root: Path, arrays, backend) -> None:
    rng = np.random.default_rng(1)
    with open_lerobot(v3_root, backend) as dataset:
        for _ in range(3):
            rows = rng.integers(0, TOTAL, size=9)  # duplicates and every episode
            data, metadata = dataset.get_at_with_metadata(backend.asarray(rows))
            check_rows(data, arrays, rows)
            np.testing.assert_array_equal(to_numpy(metadata["episode_ids"]), arrays["episode_index"][rows])
        single = dataset.get_at(-1)
        check_rows({k: v[None] for k, v in single.items()}, arrays, np.array([TOTAL - 1]))
        check_rows(dataset.get_at(slice(3, 14)), arrays, np.arange(3, 14))
        assert type(dataset.get_at(np.array([0]))[CAM]) is type(backend.asarray([0]))


def test_get_episode_and_frame_stacking(v3_root: Path, arrays) -> None:
    with open_lerobot(v3_root, NumpyComputeBackend) as dataset:
        episode = dataset.get_episode(2)
        check_rows(episode.get_at(slice(None)), arrays, np.arange(12, 16))

        stacked = FrameStackedBatch(dataset, prefetch_horizon=2, get_valid_mask_function=MASK)
        data, metadata = stacked.get_at_with_metadata(np.array([5, 6, 12, 15]))
        assert metadata["slice_valid_mask"].tolist() == [
            [False, False, True],
            [False, True, True],
            [False, False, True],
            [True, True, True],
        ]
        filled = np.array([[5, 5, 5], [5, 5, 6], [12, 12, 12], [13, 14, 15]])
        for key in (CAM, "observation.state", "frame_index"):
            np.testing.assert_array_equal(data[key], arrays[key][filled], err_msg=key)


def test_delta_timestamps_offsets() -> None:
    offsets = delta_timestamps_to_offsets({"action": [0.0, 0.1, 0.2], CAM: [-0.1, 0.0]}, FPS)
    assert offsets == {"action": [0, 1, 2], CAM: [-1, 0]}
    assert delta_timestamps_to_offsets({"action": [-0.2, 0.10004]}, FPS) == {"action": [-2, 1]}
    with pytest.raises(LeRobotError, match=r"multiples of 1/fps = 0.1 s.*'action': \[0.05\]"):
        delta_timestamps_to_offsets({"action": [0.0, 0.05], CAM: [0.1]}, FPS)
    with pytest.raises(LeRobotError, match="non-empty"):
        delta_timestamps_to_offsets({"action": []}, FPS)
    with pytest.raises(LeRobotError, match="fps"):
        delta_timestamps_to_offsets({"action": [0.0]}, 0)


def test_delta_timestamps_as_slice_stacked_batch(v3_root: Path, arrays) -> None:
    offsets = delta_timestamps_to_offsets({"action": [0.0, 0.1, 0.2]}, FPS)
    with open_lerobot(v3_root, NumpyComputeBackend) as dataset:
        windows = SliceStackedBatch(dataset, offsets["action"], get_valid_mask_function=MASK)
        data, metadata = windows.get_at_with_metadata(np.array([3, 4, 10, 15]))
    assert metadata["slice_valid_mask"].tolist() == [
        [True, True, False],
        [True, False, False],
        [True, True, False],
        [True, False, False],
    ]
    filled = np.array([[3, 4, 4], [4, 4, 4], [10, 11, 11], [15, 15, 15]])  # the episode's last frame repeats
    np.testing.assert_array_equal(data["action"], arrays["action"][filled])


def test_delta_timestamps_batch(v3_root: Path, arrays, backend) -> None:
    delta = {"action": [0.0, 0.1, 0.2], CAM: [-0.1, 0.0], "observation.state": [-0.1, 0.0]}
    with open_lerobot(v3_root, backend) as dataset:
        windows = DeltaTimestampsBatch(dataset, delta)
        assert len(windows) == TOTAL
        assert windows.single_space["action"].shape == (3, 6) and windows.single_space[CAM].shape == (2, *FRAME)
        rows = np.array([4, 5, 11])
        data, metadata = windows.get_at_with_metadata(rows)
        action_rows = np.array([[4, 4, 4], [5, 6, 7], [11, 11, 11]])
        camera_rows = np.array([[3, 4], [5, 5], [10, 11]])
        np.testing.assert_array_equal(to_numpy(data["action"]), arrays["action"][action_rows])
        np.testing.assert_array_equal(to_numpy(data[CAM]), arrays[CAM][camera_rows])
        np.testing.assert_array_equal(to_numpy(data["observation.state"]), arrays["observation.state"][camera_rows])
        assert to_numpy(data["action_is_pad"]).tolist() == [[False, True, True], [False] * 3, [False, True, True]]
        assert to_numpy(data[CAM + "_is_pad"]).tolist() == [[False, False], [True, False], [False, False]]
        np.testing.assert_array_equal(to_numpy(data["frame_index"]), arrays["frame_index"][rows])
        np.testing.assert_array_equal(to_numpy(metadata["episode_ids"]), [0, 1, 1])
        one = windows.get_at(4)
        np.testing.assert_array_equal(to_numpy(one["action"]), arrays["action"][[4, 4, 4]])
        assert to_numpy(one["action_is_pad"]).tolist() == [False, True, True]
        with pytest.raises(UnknownNameError, match="nope"):
            DeltaTimestampsBatch(dataset, {"nope": [0.0]})


def test_decode_video_false_and_feature_selection(copy_of_v3: Path, arrays) -> None:
    shutil.rmtree(copy_of_v3 / "videos")  # not needed without video
    with open_lerobot(copy_of_v3, NumpyComputeBackend, decode_video=False) as dataset:
        assert CAM not in set(dataset.single_space.keys()) and not dataset.rows.has_expensive_reads
        check_rows(dataset.get_at(np.arange(TOTAL)), arrays, np.arange(TOTAL))
    include = ["action", "observation.state", "timestamp"]
    with open_lerobot(copy_of_v3, NumpyComputeBackend, include_features=include, exclude_features=["timestamp"]) as ds:
        assert list(ds.single_space.keys()) == ["action", "observation.state"]
        check_rows(ds.get_at(np.array([15, 0])), arrays, np.array([15, 0]))
    with pytest.raises(UnknownNameError, match=r"include_features names \['actions'\]"):
        open_lerobot(copy_of_v3, NumpyComputeBackend, include_features=["actions"])
    with pytest.raises(FileNotFoundError, match=r"video feature 'observation.images.cam'.*file-000.mp4"):
        open_lerobot(copy_of_v3, NumpyComputeBackend)


def test_missing_info_and_unsupported_version(copy_of_v3: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"empty does not exist"):
        open_lerobot(tmp_path / "empty", NumpyComputeBackend)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no meta/info.json"):
        open_lerobot(tmp_path / "empty", NumpyComputeBackend)
    info = json.loads((copy_of_v3 / "meta/info.json").read_text())
    info["codebase_version"] = "v1.6"
    (copy_of_v3 / "meta/info.json").write_text(json.dumps(info))
    assert is_lerobot(copy_of_v3)
    with pytest.raises(FormatVersionError, match=r"codebase_version 'v1.6' is not supported"):
        open_lerobot(copy_of_v3, NumpyComputeBackend)


def test_data_that_disagrees_with_the_episodes(copy_of_v3: Path, arrays) -> None:
    (copy_of_v3 / "data/chunk-000/file-001.parquet").unlink()
    with pytest.raises(LeRobotError, match=r"holds 12 rows, the episodes metadata 16"):
        open_lerobot(copy_of_v3, NumpyComputeBackend, decode_video=False)
    swapped = data_table(arrays, rows_of([2]), with_image=False)
    swapped = swapped.set_column(4, "episode_index", pa.array([1] * LENGTHS[2], pa.int64()))
    pq.write_table(swapped, copy_of_v3 / "data/chunk-000/file-001.parquet")
    with pytest.raises(
        LeRobotError, match=r"row 12 of .* belongs to episode 1, but the episodes metadata puts episode 2"
    ):
        open_lerobot(copy_of_v3, NumpyComputeBackend, decode_video=False)


@pytest.mark.parametrize("field", ["data_path", "video_path"])
@pytest.mark.parametrize("where", ["parent", "absolute"])
def test_paths_of_info_json_outside_the_dataset_are_refused(copy_of_v3: Path, tmp_path: Path, field, where) -> None:
    """Issue 16 §1: a downloaded info.json cannot make the importer read files outside the dataset."""
    top = field.split("_")[0] + "s" if field == "video_path" else "data"
    outside = tmp_path / "outside"
    shutil.copytree(copy_of_v3 / top, outside)  # readable files there: only the path check can refuse them
    info = json.loads((copy_of_v3 / "meta/info.json").read_text())
    prefix = "../outside" if where == "parent" else str(outside)
    info[field] = prefix + info[field].removeprefix(top)
    (copy_of_v3 / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(UnsafePathError, match=r"info\.json"):
        open_lerobot(copy_of_v3, NumpyComputeBackend)


def test_video_of_another_size_or_too_short(copy_of_v3: Path, arrays) -> None:
    small = np.zeros((4, 8, 8, 3), np.uint8)
    write_mp4(copy_of_v3 / f"videos/{CAM}/chunk-000/file-000.mp4", small)
    with pytest.raises(LeRobotError, match=r"holds 8x8 frames, info.json says 16x16"):
        open_lerobot(copy_of_v3, NumpyComputeBackend)
    write_mp4(copy_of_v3 / f"videos/{CAM}/chunk-000/file-000.mp4", arrays[CAM][:3])  # episode 0 has 5 frames
    with open_lerobot(copy_of_v3, NumpyComputeBackend) as dataset:
        np.testing.assert_array_equal(dataset.get_at(2)[CAM], arrays[CAM][2])
        with pytest.raises(OSError, match=r"video feature 'observation.images.cam'.*frame 4 is missing"):
            dataset.get_at(4)


def test_lerobot_v21_layout(tmp_path: Path, arrays, backend) -> None:
    root = tmp_path / "v21"
    write_v21(root, arrays)
    info = read_lerobot_info(root)
    assert info.codebase_version == "v2.1" and info.tasks == {0: TASKS[0], 1: TASKS[1]}
    assert info.episodes.data_files[2] == "data/chunk-000/episode_000002.parquet"
    with open_lerobot(root, backend) as dataset:
        assert dataset.episode_lengths.tolist() == LENGTHS and dataset.episode_info[2]["tasks"] == [TASKS[0]]
        rows = np.array([15, 0, 4, 5, 11, 12, 7])
        check_rows(dataset.get_at(rows), arrays, rows)


@pytest.mark.parametrize("version", ["v2.0", "v2.1"])
def test_v2_info_json_without_path_templates_uses_lerobot_v2_layout(tmp_path: Path, arrays, version) -> None:
    root = tmp_path / "old_writer"
    write_v21(root, arrays)
    info = json.loads((root / "meta/info.json").read_text())
    del info["data_path"], info["video_path"]  # as older v2.x writers leave them out
    (root / "meta/info.json").write_text(json.dumps({**info, "codebase_version": version}))
    assert read_lerobot_info(root).episodes.data_files[1] == "data/chunk-000/episode_000001.parquet"
    with open_lerobot(root, NumpyComputeBackend) as dataset:
        rows = np.array([15, 0, 4, 11])
        check_rows(dataset.get_at(rows), arrays, rows)  # the video frames too
    v3 = tmp_path / "v3_without_paths"
    write_v3(v3, arrays)
    info = json.loads((v3 / "meta/info.json").read_text())
    del info["data_path"]
    (v3 / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(LeRobotError, match="'data_path' must be a path template"):
        read_lerobot_info(v3)  # v3.0 always names its layout


def test_image_features(tmp_path: Path, arrays, backend) -> None:
    root = tmp_path / "images"
    write_v3(root, arrays, with_image=True)
    with open_lerobot(root, backend, exclude_features=[CAM]) as dataset:
        assert dataset.single_space[WRIST].shape == WRIST_FRAME
        rows = np.array([13, 2, 2, 6, 15, 0])
        check_rows(dataset.get_at(rows), arrays, rows, keys=[WRIST, "action"])
        np.testing.assert_array_equal(to_numpy(dataset.get_at(9)[WRIST]), arrays[WRIST][9])


def test_pickle_round_trip(v3_root: Path, arrays) -> None:
    with open_lerobot(v3_root, NumpyComputeBackend) as dataset:
        dataset.get_at(np.array([1, 8]))  # open files and fill caches first
        copy = pickle.loads(pickle.dumps(dataset))
    rows = np.array([14, 3, 9])
    check_rows(copy.get_at(rows), arrays, rows)
    copy.close()


_FORKED: dict = {}


def _read_in_child(queue: multiprocessing.Queue) -> None:
    data = _FORKED["dataset"].get_at(np.array([2, 13, 6]))
    queue.put({key: np.asarray(value) for key, value in data.items()})


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_reads_after_fork(v3_root: Path, arrays) -> None:
    context = multiprocessing.get_context("fork")
    with open_lerobot(v3_root, NumpyComputeBackend) as dataset:
        dataset.get_at(np.array([0, 7, 14]))  # the parent holds open decoders when it forks
        _FORKED["dataset"] = dataset
        queue = context.Queue()
        child = context.Process(target=_read_in_child, args=(queue,))
        child.start()
        result = queue.get(timeout=60)
        child.join(timeout=60)
        _FORKED.clear()
        assert child.exitcode == 0
        check_rows(result, arrays, np.array([2, 13, 6]))
        check_rows(dataset.get_at(np.array([15])), arrays, np.array([15]))


def test_unibatch_convert_turns_it_into_a_trajectory_buffer(v3_root: Path, arrays, tmp_path: Path, capsys) -> None:
    """``unibatch convert`` on a real LeRobot directory: camera frames into lossless video, the rest into memmap."""
    from unibatch.buffers import TrajectoryReplayBuffer
    from unibatch.cli import main

    target = tmp_path / "converted"
    code = main(["convert", str(v3_root), str(target), "--storage", "memmap", "--key-storage", f"{CAM}=video"])
    assert code == 0, capsys.readouterr().err
    with TrajectoryReplayBuffer.load_from(target, backend=NumpyComputeBackend, read_only=True) as buffer:
        data, metadata = buffer.get_at_with_metadata(np.arange(TOTAL))
        check_rows(data["step_data"], arrays, np.arange(TOTAL))
        assert np.unique(metadata["episode_ids"]).size == 3  # the three episodes stay apart
    assert list(target.rglob("*.mkv")), "camera frames went to the video storage"
