"""Minari importer: datasets written by the test in Minari's HDF5 layout, read back as steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch import BinarySpace, BoxSpace, DictSpace, FrameStackedBatch, NumpyComputeBackend, TrajectoryReplayBuffer
from unibatch.errors import FormatVersionError, ReadOnlyError, SpaceMismatchError
from unibatch.integrations.minari import is_minari, open_minari, read_minari_metadata, space_from_minari

NP = NumpyComputeBackend
BOX_OBS = {"type": "Box", "dtype": "float32", "shape": [4], "low": [-5.0] * 4, "high": [5.0] * 4}
DISCRETE_ACTION = {"type": "Discrete", "dtype": "int64", "start": 0, "n": 3}
DICT_OBS = {
    "type": "Dict",
    "subspaces": {
        "position": {"type": "Box", "dtype": "float64", "shape": [2], "low": [-np.inf] * 2, "high": [np.inf] * 2},
        "camera": {
            "type": "Box",
            "dtype": "uint8",
            "shape": [4, 4, 3],
            "low": np.zeros((4, 4, 3)).tolist(),
            "high": np.full((4, 4, 3), 255).tolist(),
        },
    },
}
BOX_ACTION = {"type": "Box", "dtype": "float32", "shape": [2], "low": [-1.0, -1.0], "high": [1.0, 1.0]}


def exact(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    """Values exactly representable in float32 (JAX reads float64 as float32)."""
    return rng.normal(size=shape).astype(np.float32).astype(dtype)


def box_episode(rng: np.random.Generator, n: int) -> dict[str, Any]:
    return {
        "observations": exact(rng, (n + 1, 4)),
        "actions": rng.integers(0, 3, size=n, dtype=np.int64),
        "rewards": exact(rng, (n,), np.float64),
        "terminations": np.arange(n) == n - 1,
        "truncations": np.zeros(n, dtype=bool),
    }


def dict_episode(rng: np.random.Generator, n: int) -> dict[str, Any]:
    return {
        "observations": {
            "position": exact(rng, (n + 1, 2), np.float64),
            "camera": rng.integers(0, 256, size=(n + 1, 4, 4, 3), dtype=np.uint8),
        },
        "actions": exact(rng, (n, 2)),
        "rewards": exact(rng, (n,), np.float64),
        "terminations": np.zeros(n, dtype=bool),
        "truncations": np.arange(n) == n - 1,
    }


def write_group(group: h5py.Group, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict):
            write_group(group.create_group(key), value)
        else:
            group.create_dataset(key, data=value, chunks=True, maxshape=(None, *np.shape(value)[1:]))


def write_minari(
    root: Path, episodes: dict[int, dict[str, Any]], observation_space: Any, action_space: Any, **extra: Any
) -> Path:
    """A Minari dataset directory ``root`` (holding ``data/``) with ``episodes`` keyed by id."""
    data = root / "data"
    data.mkdir(parents=True)
    with h5py.File(data / "main_data.hdf5", "w", track_order=True) as file:
        for episode_id, values in episodes.items():
            group = file.create_group(f"episode_{episode_id}")
            group.attrs["id"] = episode_id
            group.attrs["total_steps"] = len(values["rewards"])
            group.attrs["seed"] = 100 + episode_id
            write_group(group, values)
            infos = group.create_group("infos")  # ignored by the importer
            infos["success"] = np.zeros(len(values["rewards"]) + 1, dtype=bool)
    metadata = {
        "dataset_id": "test/box-v0",
        "total_episodes": len(episodes),
        "total_steps": sum(len(values["rewards"]) for values in episodes.values()),
        "data_format": "hdf5",
        "minari_version": "0.5.3",
        **extra,
    }
    if observation_space is not None:
        metadata["observation_space"] = json.dumps(observation_space)
    if action_space is not None:
        metadata["action_space"] = json.dumps(action_space)
    (data / "metadata.json").write_text(json.dumps(metadata))
    return root


@pytest.fixture(scope="module")
def box_dataset(tmp_path_factory: pytest.TempPathFactory):
    """A Box-observation, Discrete-action dataset of episodes 0, 1, 2 with 4, 2, 5 steps."""
    rng = np.random.default_rng(0)
    episodes = {i: box_episode(rng, n) for i, n in enumerate([4, 2, 5])}
    root = write_minari(tmp_path_factory.mktemp("minari") / "box-v0", episodes, BOX_OBS, DISCRETE_ACTION)
    return root, episodes


@pytest.fixture(scope="module")
def dict_dataset(tmp_path_factory: pytest.TempPathFactory):
    """A Dict-observation (position + camera image), Box-action dataset of episodes 0 and 1."""
    rng = np.random.default_rng(1)
    episodes = {0: dict_episode(rng, 3), 1: dict_episode(rng, 2)}
    root = write_minari(tmp_path_factory.mktemp("minari") / "dict-v0", episodes, DICT_OBS, BOX_ACTION)
    return root, episodes


def steps(episodes: dict[int, dict[str, Any]], key: str, shift: int = 0, sub: str | None = None) -> np.ndarray:
    """The per-step values of every episode: observations ``t + shift`` or the dataset ``key``."""
    parts = []
    for values in episodes.values():
        value = values[key] if sub is None else values[key][sub]
        n = len(values["rewards"])
        parts.append(value[shift : shift + n])
    return np.concatenate(parts)


def test_sniff_and_metadata(box_dataset, tmp_path) -> None:
    root, _ = box_dataset
    assert is_minari(root) and is_minari(root / "data") and is_minari(root / "data" / "main_data.hdf5")
    assert not is_minari(tmp_path) and not is_minari(tmp_path / "missing")
    (tmp_path / "metadata.json").write_text("[1, 2]")
    assert not is_minari(tmp_path)
    metadata = read_minari_metadata(root)
    assert metadata["dataset_id"] == "test/box-v0" and metadata["total_steps"] == 11


def test_box_observations_read_back_exactly(box_dataset, backend) -> None:
    root, episodes = box_dataset
    dataset = open_minari(root, backend)
    assert len(dataset) == 11 and dataset.num_episodes == 3
    space = dataset.single_space
    assert sorted(space.keys()) == ["action", "next_obs", "obs", "reward", "terminated", "truncated"]
    assert space["obs"] == BoxSpace(backend, -5.0, 5.0, "float32", shape=(4,))
    assert space["action"] == BoxSpace(backend, 0, 2, "int64", shape=())
    assert space["terminated"] == BinarySpace(backend, ())
    rows = dataset.get_at(slice(None))
    np.testing.assert_array_equal(to_numpy(rows["obs"]), steps(episodes, "observations"))
    np.testing.assert_array_equal(to_numpy(rows["next_obs"]), steps(episodes, "observations", shift=1))
    for key, dataset_name in [("action", "actions"), ("reward", "rewards"), ("terminated", "terminations")]:
        np.testing.assert_array_equal(to_numpy(rows[key]), steps(episodes, dataset_name))

    index = np.array([10, 0, 4, 5, 3, 3])
    batch = dataset.get_at(backend.asarray(index))
    np.testing.assert_array_equal(to_numpy(batch["obs"]), steps(episodes, "observations")[index])
    np.testing.assert_array_equal(to_numpy(batch["next_obs"]), steps(episodes, "observations", shift=1)[index])
    last = dataset.get_at(-1)
    np.testing.assert_array_equal(to_numpy(last["next_obs"]), episodes[2]["observations"][-1])
    assert bool(to_numpy(last["terminated"]))
    dataset.close()


def test_dict_observations_read_back_exactly(dict_dataset, backend) -> None:
    root, episodes = dict_dataset
    dataset = open_minari(root / "data", backend)
    assert sorted(dataset.single_space["obs"].keys()) == ["camera", "position"]
    rows = dataset.get_at(slice(None))
    for sub in ("position", "camera"):
        np.testing.assert_array_equal(to_numpy(rows["obs"][sub]), steps(episodes, "observations", sub=sub))
        np.testing.assert_array_equal(to_numpy(rows["next_obs"][sub]), steps(episodes, "observations", 1, sub))
    np.testing.assert_array_equal(to_numpy(rows["action"]), steps(episodes, "actions"))
    np.testing.assert_array_equal(to_numpy(rows["truncated"]), [False, False, True, False, True])
    one = dataset.get_at(3)
    np.testing.assert_array_equal(to_numpy(one["next_obs"]["camera"]), episodes[1]["observations"]["camera"][1])
    dataset.close()


def test_episodes(box_dataset) -> None:
    root, episodes = box_dataset
    with open_minari(root, NP) as dataset:
        assert dataset.episode_lengths.tolist() == [4, 2, 5]
        assert dataset.episode_id_values.tolist() == [0, 1, 2]
        assert dataset.episode_info[1] == {"episode": "episode_1", "id": 1, "total_steps": 2, "seed": 101}
        episode = dataset.get_episode(1)
        np.testing.assert_array_equal(episode.get_at(slice(None))["obs"], episodes[1]["observations"][:2])
        assert dataset.get_at_with_metadata(slice(None))[1]["episode_ids"].tolist() == [0] * 4 + [1] * 2 + [2] * 5


def test_episode_ids_in_natural_order(tmp_path) -> None:
    rng = np.random.default_rng(2)
    episodes = {10: box_episode(rng, 2), 2: box_episode(rng, 3)}
    root = write_minari(tmp_path / "ids", episodes, BOX_OBS, DISCRETE_ACTION)
    with open_minari(root, NP) as dataset:
        assert dataset.episode_id_values.tolist() == [2, 10] and dataset.episode_lengths.tolist() == [3, 2]
        np.testing.assert_array_equal(dataset.get_at(0)["obs"], episodes[2]["observations"][0])


def test_spaces_inferred_without_metadata(tmp_path) -> None:
    rng = np.random.default_rng(3)
    root = write_minari(tmp_path / "bare", {0: dict_episode(rng, 2)}, None, None)
    with open_minari(root, NP) as dataset:
        space = dataset.single_space
        assert space["obs"]["camera"] == BoxSpace(NP, 0, 255, "uint8", shape=(4, 4, 3))
        assert space["obs"]["position"] == BoxSpace(NP, -np.inf, np.inf, "float64", shape=(2,))
        assert space["action"] == BoxSpace(NP, -np.inf, np.inf, "float32", shape=(2,))


def test_tuple_spaces_read_as_index_dicts(tmp_path) -> None:
    rng = np.random.default_rng(4)
    values = box_episode(rng, 2)
    values["observations"] = {"_index_0": values["observations"], "_index_1": np.arange(3, dtype=np.int64)}
    tuple_space = {"type": "Tuple", "subspaces": [BOX_OBS, {"type": "Discrete", "dtype": "int64", "start": 0, "n": 5}]}
    root = write_minari(tmp_path / "tuple", {0: values}, tuple_space, DISCRETE_ACTION)
    with open_minari(root, NP) as dataset:
        assert sorted(dataset.single_space["obs"].keys()) == ["_index_0", "_index_1"]
        assert dataset.get_at(1)["next_obs"]["_index_1"] == 2


def test_frame_stacking_with_episode_masks(box_dataset, backend) -> None:
    root, episodes = box_dataset
    dataset = open_minari(root, backend)
    mask = FrameStackedBatch.get_valid_mask_function_with_episodeid_key("episode_ids", is_in_metadata=True)
    windows = FrameStackedBatch(dataset, prefetch_horizon=1, postfetch_horizon=1, get_valid_mask_function=mask)
    batch, metadata = windows.get_at_with_metadata(backend.asarray(np.array([3, 4, 10])))
    np.testing.assert_array_equal(
        to_numpy(metadata["slice_valid_mask"]), [[True, True, False], [False, True, True], [True, True, False]]
    )
    observations = steps(episodes, "observations")
    np.testing.assert_array_equal(to_numpy(batch["obs"]), observations[[[2, 3, 3], [4, 4, 5], [9, 10, 10]]])
    dataset.close()


def test_episodes_into_a_trajectory_buffer(dict_dataset) -> None:
    root, episodes = dict_dataset
    with open_minari(root, NP) as dataset:
        buffer = TrajectoryReplayBuffer.create(dataset.single_space, None)
        for episode in range(dataset.num_episodes):
            buffer.extend(dataset.get_episode(episode).get_at(slice(None)))
            buffer.mark_episode_end()
        rows, metadata = buffer.get_at_with_metadata(slice(None))
        assert metadata["episode_ids"].tolist() == [0, 0, 0, 1, 1]
        np.testing.assert_array_equal(rows["step_data"]["obs"]["camera"], steps(episodes, "observations", sub="camera"))


def test_read_only_and_close(box_dataset) -> None:
    root, _ = box_dataset
    dataset = open_minari(root, NP)
    with pytest.raises(ReadOnlyError):
        dataset.set_at(0, dataset.get_at(1))
    dataset.close()
    with pytest.raises(Exception, match="closed"):
        dataset.get_at(0)


def test_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_minari(tmp_path / "missing", NP)
    with pytest.raises(FileNotFoundError, match="is not a Minari dataset: no metadata.json"):
        open_minari(tmp_path, NP)

    rng = np.random.default_rng(5)
    arrow = write_minari(tmp_path / "arrow", {0: box_episode(rng, 2)}, BOX_OBS, DISCRETE_ACTION, data_format="arrow")
    with pytest.raises(FormatVersionError, match="in the 'arrow' format; only 'hdf5' is read here"):
        open_minari(arrow, NP)

    short = box_episode(rng, 3)
    short["observations"] = short["observations"][:3]
    bad = write_minari(tmp_path / "short", {0: box_episode(rng, 2), 1: short}, BOX_OBS, DISCRETE_ACTION)
    with pytest.raises(FormatVersionError, match="episode_1 has 3 observations for 3 steps"):
        open_minari(bad, NP)

    totals = write_minari(tmp_path / "totals", {0: box_episode(rng, 2)}, BOX_OBS, DISCRETE_ACTION, total_steps=7)
    with pytest.raises(FormatVersionError, match="says total_steps = 7, but main_data.hdf5 holds 2"):
        open_minari(totals, NP)

    wide = box_episode(rng, 2)
    wide["observations"] = np.zeros((3, 5), dtype=np.float32)
    shapes = write_minari(tmp_path / "shapes", {0: box_episode(rng, 2), 1: wide}, BOX_OBS, DISCRETE_ACTION)
    with pytest.raises(SpaceMismatchError, match=r"dataset 'episode_1/observations' has shape \(3, 5\)"):
        open_minari(shapes, NP)


def test_space_from_minari() -> None:
    assert space_from_minari(BOX_OBS, NP) == BoxSpace(NP, -5.0, 5.0, "float32", shape=(4,))
    assert space_from_minari({"type": "MultiBinary", "n": 3}, NP) == BinarySpace(NP, (3,))
    multi = space_from_minari({"type": "MultiDiscrete", "nvec": [2, 3], "start": [0, 1]}, NP)
    assert multi == BoxSpace(NP, np.array([0, 1]), np.array([1, 3]), "int64", shape=(2,))
    assert isinstance(space_from_minari(DICT_OBS, NP), DictSpace)


def test_a_file_open_in_h5py_does_not_block_the_importer(box_dataset) -> None:
    """The notebook case: the data file is open in h5py's default mode in this process, before or after."""
    root, episodes = box_dataset
    data_file = root / "data" / "main_data.hdf5"
    with h5py.File(data_file) as notebook:
        dataset = open_minari(root, NP)
        assert len(dataset) == sum(len(e["actions"]) for e in episodes.values()) and "episode_0" in notebook
        dataset.get_at(0)
    dataset = open_minari(root, NP)
    try:
        with h5py.File(data_file) as notebook:
            assert "episode_0" in notebook
            dataset.get_at(len(dataset) - 1)
    finally:
        dataset.close()
