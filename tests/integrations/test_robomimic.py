"""robomimic importer: a robomimic-like HDF5 file written by the test, read back as episodes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch import FrameStackedBatch, NumpyComputeBackend, TrajectoryReplayBuffer
from unibatch.errors import FormatVersionError, ReadOnlyError, SpaceMismatchError, UnknownNameError
from unibatch.integrations.episodes import EpisodeDataset
from unibatch.integrations.robomimic import is_robomimic, open_robomimic, read_robomimic_info

DEMOS = {"demo_0": 5, "demo_2": 3, "demo_10": 4}
"""Demo name -> length; written in this order, read in natural order (demo_0, demo_2, demo_10)."""
ORDER = ["demo_0", "demo_2", "demo_10"]
IMAGE = (6, 8, 3)
ENV_ARGS = {"env_name": "Lift", "env_type": 1, "env_kwargs": {"control_freq": 20}}


def exact_floats(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float64 values exactly representable in float32 (JAX reads float64 as float32)."""
    return rng.normal(size=shape).astype(np.float32).astype(np.float64)


def demo_arrays(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "actions": exact_floats(rng, (n, 7)),
        "rewards": (np.arange(n) == n - 1).astype(np.float64),
        "dones": (np.arange(n) == n - 1).astype(np.int64),
        "states": exact_floats(rng, (n, 5)),
        "obs/robot0_eef_pos": exact_floats(rng, (n, 3)),
        "obs/agentview_image": rng.integers(0, 256, size=(n, *IMAGE), dtype=np.uint8),
        "next_obs/robot0_eef_pos": exact_floats(rng, (n, 3)),
        "next_obs/agentview_image": rng.integers(0, 256, size=(n, *IMAGE), dtype=np.uint8),
    }


@pytest.fixture(scope="module")
def robomimic_file(tmp_path_factory: pytest.TempPathFactory):
    """``(path, {demo: {dataset path: array}})`` of a 3-demo robomimic file with images and filter keys."""
    path = tmp_path_factory.mktemp("robomimic") / "image.hdf5"
    rng = np.random.default_rng(0)
    arrays = {demo: demo_arrays(rng, n) for demo, n in DEMOS.items()}
    with h5py.File(path, "w") as file:
        data = file.create_group("data")
        data.attrs["total"] = sum(DEMOS.values())
        data.attrs["env_args"] = json.dumps(ENV_ARGS)
        for demo, n in DEMOS.items():
            group = data.create_group(demo)
            group.attrs["num_samples"] = n
            group.attrs["model_file"] = "<mujoco/>"
            for name, value in arrays[demo].items():
                group[name] = value
        file["mask/train"] = np.array([b"demo_10", b"demo_0"])
        file["mask/valid"] = np.array([b"demo_2"])
    return path, arrays


def expected_rows(arrays: dict[str, dict[str, np.ndarray]], demos: list[str], name: str) -> np.ndarray:
    return np.concatenate([arrays[demo][name] for demo in demos])


def test_sniff_and_info(robomimic_file, tmp_path) -> None:
    path, _ = robomimic_file
    assert is_robomimic(path)
    info = read_robomimic_info(path)
    assert info.demos == tuple(ORDER)
    assert info.num_samples == DEMOS
    assert info.filter_keys == {"train": ("demo_10", "demo_0"), "valid": ("demo_2",)}
    assert info.total == 12 and info.env_args == ENV_ARGS

    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as file:
        file["data/trajectory_0/actions"] = np.zeros((3, 2))
    text = tmp_path / "notes.txt"
    text.write_text("not hdf5")
    assert not is_robomimic(other) and not is_robomimic(text) and not is_robomimic(tmp_path / "missing.hdf5")


def test_reads_back_exactly(robomimic_file, backend) -> None:
    path, arrays = robomimic_file
    dataset = open_robomimic(path, backend)
    assert isinstance(dataset, EpisodeDataset) and len(dataset) == 12
    assert sorted(dataset.single_space.keys()) == ["actions", "dones", "next_obs", "obs", "rewards", "states"]
    everything = dataset.get_at(slice(None))
    for name in ("actions", "rewards", "dones", "states"):
        np.testing.assert_array_equal(to_numpy(everything[name]), expected_rows(arrays, ORDER, name))
    for name in ("robot0_eef_pos", "agentview_image"):
        for group in ("obs", "next_obs"):
            got = to_numpy(everything[group][name])
            np.testing.assert_array_equal(got, expected_rows(arrays, ORDER, f"{group}/{name}"))
    assert to_numpy(everything["obs"]["agentview_image"]).dtype == np.uint8

    index = np.array([11, 0, 6, 5, 5, 9])
    batch, metadata = dataset.get_at_with_metadata(backend.asarray(index))
    np.testing.assert_array_equal(to_numpy(batch["actions"]), expected_rows(arrays, ORDER, "actions")[index])
    np.testing.assert_array_equal(to_numpy(metadata["episode_ids"]), [10, 0, 2, 2, 2, 10])
    single = dataset.get_at(-1)
    np.testing.assert_array_equal(
        to_numpy(single["obs"]["agentview_image"]), arrays["demo_10"]["obs/agentview_image"][-1]
    )
    dataset.close()


def test_episode_boundaries(robomimic_file) -> None:
    path, arrays = robomimic_file
    with open_robomimic(path, NumpyComputeBackend) as dataset:
        assert dataset.num_episodes == 3
        assert dataset.episode_lengths.tolist() == [5, 3, 4]
        assert dataset.episode_starts.tolist() == [0, 5, 8]
        assert dataset.episode_id_values.tolist() == [0, 2, 10]
        assert dataset.episode_info == [{"demo": "demo_0"}, {"demo": "demo_2"}, {"demo": "demo_10"}]
        episode = dataset.get_episode(2)
        assert len(episode) == 4
        np.testing.assert_array_equal(episode.get_at(slice(None))["states"], arrays["demo_10"]["states"])
        ids = dataset.get_at_with_metadata(slice(None))[1]["episode_ids"]
        assert ids.tolist() == [0] * 5 + [2] * 3 + [10] * 4


def test_filter_keys(robomimic_file) -> None:
    path, arrays = robomimic_file
    with open_robomimic(path, NumpyComputeBackend, filter_key="train") as train:
        assert train.episode_id_values.tolist() == [0, 10]  # natural order, not the mask's order
        np.testing.assert_array_equal(
            train.get_at(slice(None))["actions"], expected_rows(arrays, ["demo_0", "demo_10"], "actions")
        )
    with open_robomimic(path, NumpyComputeBackend, filter_key="valid") as valid:
        assert valid.episode_lengths.tolist() == [3] and valid.episode_info == [{"demo": "demo_2"}]
    with pytest.raises(UnknownNameError, match=r"no filter key 'test' under 'mask'; it has \['train', 'valid'\]"):
        open_robomimic(path, NumpyComputeBackend, filter_key="test")


def test_keys_select_leaves(robomimic_file) -> None:
    path, arrays = robomimic_file
    with open_robomimic(path, NumpyComputeBackend, keys=["actions", "obs/agentview_image"]) as dataset:
        assert list(dataset.single_space.keys()) == ["actions", "obs"]
        assert list(dataset.single_space["obs"].keys()) == ["agentview_image"]
        row = dataset.get_at(5)
        np.testing.assert_array_equal(row["obs"]["agentview_image"], arrays["demo_2"]["obs/agentview_image"][0])
    with open_robomimic(path, NumpyComputeBackend, keys=["obs"]) as dataset:
        assert list(dataset.single_space.keys()) == ["obs"]
        assert sorted(dataset.single_space["obs"].keys()) == ["agentview_image", "robot0_eef_pos"]
    with pytest.raises(UnknownNameError, match="no dataset or group 'obs/wrist_image'; its datasets are"):
        open_robomimic(path, NumpyComputeBackend, keys=["obs/wrist_image"])


def test_frame_stacking_with_episode_masks(robomimic_file, backend) -> None:
    path, arrays = robomimic_file
    dataset = open_robomimic(path, backend, keys=["actions", "obs/robot0_eef_pos"])
    mask = FrameStackedBatch.get_valid_mask_function_with_episodeid_key("episode_ids", is_in_metadata=True)
    windows = FrameStackedBatch(dataset, prefetch_horizon=2, get_valid_mask_function=mask)
    index = np.array([5, 6, 4, 8, 11])  # first/second row of demo_2, last of demo_0, first and last of demo_10
    batch, metadata = windows.get_at_with_metadata(backend.asarray(index))
    np.testing.assert_array_equal(
        to_numpy(metadata["slice_valid_mask"]),
        [[False, False, True], [False, True, True], [True, True, True], [False, False, True], [True, True, True]],
    )
    actions = expected_rows(arrays, ORDER, "actions")
    frames = np.array([[5, 5, 5], [5, 5, 6], [2, 3, 4], [8, 8, 8], [9, 10, 11]])  # edge replication inside episodes
    np.testing.assert_array_equal(to_numpy(batch["actions"]), actions[frames])
    np.testing.assert_array_equal(to_numpy(metadata["episode_ids"]), [2, 2, 0, 10, 10])
    dataset.close()


def test_episodes_into_a_trajectory_buffer(robomimic_file, tmp_path) -> None:
    path, arrays = robomimic_file
    with open_robomimic(path, NumpyComputeBackend, keys=["actions", "dones", "obs"]) as dataset:
        buffer = TrajectoryReplayBuffer.create(dataset.single_space, None, cache_path=tmp_path / "converted")
        for episode in range(dataset.num_episodes):
            buffer.extend(dataset.get_episode(episode).get_at(slice(None)))
            buffer.mark_episode_end()
        buffer.close()
    reopened = TrajectoryReplayBuffer.load_from(tmp_path / "converted", backend=NumpyComputeBackend, read_only=True)
    rows, metadata = reopened.get_at_with_metadata(slice(None))
    assert metadata["episode_ids"].tolist() == [0] * 5 + [1] * 3 + [2] * 4
    np.testing.assert_array_equal(
        rows["step_data"]["obs"]["agentview_image"], expected_rows(arrays, ORDER, "obs/agentview_image")
    )
    reopened.close()


def test_read_only(robomimic_file) -> None:
    path, _ = robomimic_file
    with open_robomimic(path, NumpyComputeBackend, keys=["rewards"]) as dataset:
        with pytest.raises(ReadOnlyError):
            dataset.set_at(0, {"rewards": np.float64(1.0)})
        with pytest.raises(ReadOnlyError):
            dataset.extend({"rewards": np.zeros(2)})


def test_close_closes_every_demo(robomimic_file) -> None:
    path, _ = robomimic_file
    dataset = open_robomimic(path, NumpyComputeBackend)
    dataset.close()
    with pytest.raises(Exception, match="closed"):
        dataset.get_at(0)
    dataset.close()  # idempotent


def test_not_robomimic_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_robomimic(tmp_path / "missing.hdf5", NumpyComputeBackend)
    text = tmp_path / "notes.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(FormatVersionError, match="is not an HDF5 file"):
        open_robomimic(text, NumpyComputeBackend)
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as file:
        file["observations"] = np.zeros((3, 2))
    with pytest.raises(FormatVersionError, match=r"no 'data' group \(found \['observations'\]\)"):
        open_robomimic(other, NumpyComputeBackend)
    with h5py.File(other, "a") as file:
        file["data/episode_0/actions"] = np.zeros((3, 2))
    with pytest.raises(FormatVersionError, match=r"'data' holds \['episode_0'\], which are not demo_<n> groups"):
        open_robomimic(other, NumpyComputeBackend)


def test_demos_with_different_datasets(tmp_path) -> None:
    shapes = tmp_path / "shapes.hdf5"
    with h5py.File(shapes, "w") as file:
        file["data/demo_0/actions"] = np.zeros((3, 7))
        file["data/demo_0/obs/eef_pos"] = np.zeros((3, 3))
        file["data/demo_1/actions"] = np.zeros((2, 7))
        file["data/demo_1/obs/eef_pos"] = np.zeros((2, 4))
    with pytest.raises(SpaceMismatchError, match=r"demo_1/obs/eef_pos is BoxSpace\(.*\(4,\).*but demo_0/obs/eef_pos"):
        open_robomimic(shapes, NumpyComputeBackend)

    missing = tmp_path / "missing.hdf5"
    with h5py.File(missing, "w") as file:
        file["data/demo_0/actions"] = np.zeros((3, 7))
        file["data/demo_0/obs/eef_pos"] = np.zeros((3, 3))
        file["data/demo_2/actions"] = np.zeros((2, 7))
    with pytest.raises(SpaceMismatchError, match="demo_2 has no dataset 'obs/eef_pos' .*, but demo_0 has"):
        open_robomimic(missing, NumpyComputeBackend)
    with pytest.raises(UnknownNameError, match="data/demo_2 has no dataset or group 'obs'"):
        open_robomimic(missing, NumpyComputeBackend, keys=["obs"])
    with open_robomimic(missing, NumpyComputeBackend, keys=["actions"]) as dataset:  # the common part works
        assert dataset.episode_lengths.tolist() == [3, 2]


def test_num_samples_must_match(tmp_path) -> None:
    path = tmp_path / "wrong.hdf5"
    with h5py.File(path, "w") as file:
        file["data/demo_0/actions"] = np.zeros((3, 7))
        file["data/demo_0"].attrs["num_samples"] = 4
    with pytest.raises(FormatVersionError, match="data/demo_0 has num_samples 4, but its datasets hold 3 rows"):
        open_robomimic(path, NumpyComputeBackend)


def test_a_file_open_in_h5py_does_not_block_the_importer(robomimic_file) -> None:
    """The notebook case: the file is open in h5py's default mode in this process, before or after the import."""
    path, _ = robomimic_file
    with h5py.File(path) as notebook:
        assert is_robomimic(path) and read_robomimic_info(path).demos
        dataset = open_robomimic(path, NumpyComputeBackend)
        assert len(dataset) > 0 and notebook["data"].attrs["total"] == len(dataset)
        dataset.get_at(0)
    dataset = open_robomimic(path, NumpyComputeBackend)
    try:
        with h5py.File(path) as notebook:
            assert notebook["data"].attrs["total"] == len(dataset)
            dataset.get_at(len(dataset) - 1)
    finally:
        dataset.close()
