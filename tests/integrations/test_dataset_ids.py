"""Datasets named by id (Minari ids, LeRobot repo ids) and folders that hold datasets rather than being one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.integrations.test_lerobot import expected_arrays, write_v3
from tests.integrations.test_minari import BOX_OBS, DISCRETE_ACTION, box_episode, write_minari

from unibatch import NumpyComputeBackend
from unibatch.cli import main
from unibatch.integrations.dataset_ids import dataset_id_locations, looks_like_dataset_id, resolve_dataset_id
from unibatch.integrations.lerobot import open_lerobot
from unibatch.integrations.minari import open_minari

NP = NumpyComputeBackend
ID_VARIABLES = ("MINARI_DATASETS_PATH", "HF_LEROBOT_HOME", "HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME")


@pytest.fixture(scope="module")
def lerobot_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lerobot") / "pusht"
    write_v3(root, expected_arrays())
    return root


@pytest.fixture(scope="module")
def minari_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    episodes = {i: box_episode(rng, n) for i, n in enumerate([4, 2])}
    return write_minari(tmp_path_factory.mktemp("minari") / "human-v2", episodes, BOX_OBS, DISCRETE_ACTION)


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """A working directory where no id exists as a relative path, and no id variable set by the machine."""
    for name in ID_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def info(capsys, *arguments) -> tuple[int, str, str]:
    code = main(["info", *map(str, arguments)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_minari_id_is_found_where_minari_keeps_it(elsewhere, minari_dataset, monkeypatch, capsys) -> None:
    root = elsewhere / "minari-datasets"
    shutil.copytree(minari_dataset, root / "D4RL" / "door" / "human-v2")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    with open_minari("D4RL/door/human-v2", NP) as dataset:
        assert len(dataset) == 6
    code, out, err = info(capsys, "D4RL/door/human-v2")
    assert code == 0 and "length: 6" in out.splitlines(), err
    # Minari's default place, ~/.minari/datasets, when the variable is not set
    monkeypatch.delenv("MINARI_DATASETS_PATH")
    shutil.copytree(minari_dataset, elsewhere / "home" / ".minari" / "datasets" / "pointmaze" / "open-v2")
    with open_minari("pointmaze/open-v2", NP) as dataset:
        assert len(dataset) == 6


def test_a_lerobot_repo_id_is_found_in_the_lerobot_home_and_the_hub_cache(
    elsewhere, lerobot_dataset, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("HF_LEROBOT_HOME", str(elsewhere / "lerobot-home"))
    shutil.copytree(lerobot_dataset, elsewhere / "lerobot-home" / "lerobot" / "pusht")
    with open_lerobot("lerobot/pusht", NP) as dataset:
        expected = len(dataset)
    code, out, err = info(capsys, "lerobot/pusht")
    assert code == 0 and f"length: {expected}" in out.splitlines(), err
    # the Hugging Face hub cache: datasets--org--name/snapshots/<revision>, the one refs/main names
    monkeypatch.delenv("HF_LEROBOT_HOME")
    monkeypatch.setenv("HF_HOME", str(elsewhere / "hf"))
    repo = elsewhere / "hf" / "hub" / "datasets--lerobot--aloha_sim"
    shutil.copytree(lerobot_dataset, repo / "snapshots" / "0123abc")
    (repo / "snapshots" / "old").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc\n")
    assert resolve_dataset_id("lerobot/aloha_sim") == repo / "snapshots" / "0123abc"
    with open_lerobot("lerobot/aloha_sim", NP) as dataset:
        assert len(dataset) == expected


def test_an_unknown_id_names_the_places_and_variables(elsewhere, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(elsewhere / "m"))
    code, _, err = info(capsys, "lerobot/nothing")
    assert code == 2 and "lerobot/nothing does not exist" in err
    assert "MINARI_DATASETS_PATH" in err and "HF_LEROBOT_HOME" in err and str(elsewhere / "m") in err
    with pytest.raises(FileNotFoundError, match="HF_LEROBOT_HOME"):
        open_lerobot("lerobot/nothing", NP)
    with pytest.raises(FileNotFoundError, match="MINARI_DATASETS_PATH"):
        open_minari("D4RL/none-v0", NP)


def test_only_plain_relative_names_are_ids(elsewhere) -> None:
    assert looks_like_dataset_id("D4RL/door/human-v2") and looks_like_dataset_id("lerobot/pusht")
    for text in ("../x", "a/../../b", "/abs/path", "~/x", "./x", ""):
        assert not looks_like_dataset_id(text) and dataset_id_locations(text) == []


def test_a_folder_of_lerobot_datasets_lists_them(tmp_path, lerobot_dataset, capsys) -> None:
    for name in ("so100_pick", "so100_place"):
        shutil.copytree(lerobot_dataset, tmp_path / "downloads" / name)
    code, _, err = info(capsys, tmp_path / "downloads")
    assert code == 2 and "is a folder of 2 datasets, not a dataset" in err, err
    assert f"{tmp_path / 'downloads' / 'so100_pick'} (a LeRobot dataset)" in err
    assert f"{tmp_path / 'downloads' / 'so100_place'} (a LeRobot dataset)" in err
    assert "SpaceMismatchError" not in err


def test_a_minari_namespace_folder_lists_its_datasets(tmp_path, minari_dataset, capsys) -> None:
    namespace = tmp_path / "datasets" / "D4RL"
    shutil.copytree(minari_dataset, namespace / "door" / "human-v2")
    shutil.copytree(minari_dataset, namespace / "door" / "expert-v2")
    shutil.copytree(minari_dataset, namespace / "pen" / "human-v2")
    code, _, err = info(capsys, namespace)
    assert code == 2 and "is a folder of 3 datasets" in err, err
    for name in ("door/expert-v2", "door/human-v2", "pen/human-v2"):
        assert f"{namespace / name} (a Minari dataset)" in err
