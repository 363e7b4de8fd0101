"""Minari datasets (HDF5 format) as a read-only :class:`EpisodeDataset`, without the minari package.

A Minari dataset directory (``~/.minari/datasets/<namespace>/<name>-v<n>/``, Minari 0.4 and later)
holds ``data/metadata.json`` and ``data/main_data.hdf5``::

    metadata.json           {"dataset_id", "total_episodes", "total_steps", "data_format": "hdf5",
                             "observation_space": "<JSON>", "action_space": "<JSON>", "env_spec", ...}
    main_data.hdf5
      episode_0/            attributes: id, total_steps (N), seed, options/...
        observations        (N + 1, ...): the reset observation, then one per step
        actions             (N, ...)
        rewards             (N,) float
        terminations        (N,) bool
        truncations         (N,) bool
        infos/              per-key datasets (older files), or serialized dicts (newer ones)
      episode_1/ ...

A ``Dict`` space is a group with one member per key (nested the same way), a ``Tuple`` space a group
with members ``_index_0``, ``_index_1``, ...

**Mapping.** Step ``t`` of an episode becomes one row, so an episode of ``N`` actions gives ``N``
rows::

    {"obs": observations[t], "action": actions[t], "reward": rewards[t],
     "terminated": terminations[t], "truncated": truncations[t], "next_obs": observations[t + 1]}

(the keys :func:`unibatch.integrations.gym.record_rollouts` writes, Gymnasium's names). The
observation and action spaces come from ``metadata.json`` (``Box``, ``Discrete``, ``Dict``, ``Text``,
``MultiBinary``, ``MultiDiscrete``, so bounds are kept); when the metadata has none, or one of another
type (``Tuple``), they are inferred from the first episode's datasets, a ``Tuple`` then reading as a
dict keyed ``_index_<i>``. ``infos`` are not read. Episode ids are the ``episode_<id>`` numbers; each
episode's ``episode_info`` holds its group name and attributes (``seed``, ``total_steps``, ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optree

from unibatch._optional import require
from unibatch._typing import Device
from unibatch.backends import ComputeBackend
from unibatch.batches import BatchBase
from unibatch.batches._base import Metadata
from unibatch.batches._indexing import NormalizedIndex, is_single
from unibatch.errors import FormatVersionError, SpaceMismatchError, UnsupportedSpaceError
from unibatch.integrations.dataset_ids import existing_path_or_id
from unibatch.integrations.episodes import EpisodeDataset
from unibatch.spaces import BinarySpace, BoxSpace, DictSpace, Space, TextSpace
from unibatch.storages._base import PathLike

METADATA_FILE = "metadata.json"
DATA_FILE = "main_data.hdf5"
EPISODE_NAME = re.compile(r"episode_(\d+)")
STEP_DATASETS = {"action": "actions", "reward": "rewards", "terminated": "terminations", "truncated": "truncations"}
"""Row key -> dataset of an episode group holding one value per step."""


def is_minari(path: PathLike) -> bool:
    """Whether ``path`` is a Minari dataset: its root, its ``data`` directory or its ``main_data.hdf5``.

    Cheap: looks for ``metadata.json`` (a JSON object with ``total_episodes``) and reads nothing else.
    """
    directory = _data_directory(Path(path))
    if directory is None:
        return False
    try:
        metadata = json.loads((directory / METADATA_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(metadata, dict) and "total_episodes" in metadata


def read_minari_metadata(path: PathLike) -> dict[str, Any]:
    """The parsed ``metadata.json`` of a Minari dataset (spaces left as the JSON strings Minari wrote).

    Raises:
        FileNotFoundError: no ``metadata.json`` at ``path``, ``path/data`` or next to a ``main_data.hdf5``.
        FormatVersionError: ``metadata.json`` is not a JSON object.
    """
    directory = _require_data_directory(Path(path))
    return _read_metadata(directory)


def open_minari(path: PathLike, backend: ComputeBackend, *, device: Device | None = None) -> EpisodeDataset:
    """A Minari dataset in HDF5 format as a read-only dataset of episodes, one row per step.

    Args:
        path: the dataset directory (holding ``data/``), its ``data`` directory, or ``data/main_data.hdf5``.
        backend: backend of the values read.
        device: device of the values read.

    Returns:
        An :class:`EpisodeDataset` whose rows are
        ``{"obs", "action", "reward", "terminated", "truncated", "next_obs"}`` (see the module docstring),
        with ``episode_ids`` = the Minari episode ids.

    Raises:
        FileNotFoundError: ``path`` holds no Minari dataset.
        FormatVersionError: another data format than HDF5, metadata that disagrees with the file, or an
            episode whose observations are not one more than its actions (names the episode).
        SpaceMismatchError: an episode's datasets do not match the spaces (names the dataset).

    >>> import json, tempfile, h5py, numpy as np
    >>> from unibatch import NumpyComputeBackend as np_backend
    >>> root = Path(tempfile.mkdtemp()) / "data"
    >>> root.mkdir()
    >>> _ = (root / "metadata.json").write_text(json.dumps({"total_episodes": 1, "total_steps": 2}))
    >>> with h5py.File(root / "main_data.hdf5", "w") as file:
    ...     file["episode_0/observations"] = np.arange(3.0)[:, None]
    ...     file["episode_0/actions"] = np.zeros((2, 1))
    ...     file["episode_0/rewards"] = np.ones(2)
    ...     file["episode_0/terminations"] = np.array([False, True])
    ...     file["episode_0/truncations"] = np.zeros(2, dtype=bool)
    >>> dataset = open_minari(root.parent, np_backend)
    >>> row = dataset.get_at(1)
    >>> row["obs"].tolist(), row["next_obs"].tolist(), bool(row["terminated"])
    ([1.0], [2.0], True)
    >>> dataset.close()
    """
    directory = _require_data_directory(Path(path))
    metadata = _read_metadata(directory)
    _check_data_format(metadata, directory)
    file_path = directory / DATA_FILE
    if not file_path.is_file():
        raise FileNotFoundError(f"{directory} has {METADATA_FILE} but no {DATA_FILE}")
    episodes = _episode_groups(file_path)
    if not episodes:
        raise FormatVersionError(f"{file_path} holds no episode_<id> groups")
    spaces = _EpisodeSpaces.build(file_path, metadata, episodes[0][1], backend, device)
    opened = _open_episodes(file_path, [name for _, name in episodes], spaces)
    try:
        _check_totals(metadata, [len(episode) for episode in opened], directory)
    except FormatVersionError:
        for episode in opened:
            episode.close()
        raise
    return EpisodeDataset.from_episodes(
        opened,
        episode_ids=[number for number, _ in episodes],
        episode_info=_episode_info(file_path, [name for _, name in episodes]),
    )


# ---------------------------------------------------------------------- one episode
class _MinariEpisode(BatchBase):
    """The ``N`` steps of one episode; ``obs`` and ``next_obs`` come from the same ``N + 1`` observations."""

    is_mutable = False

    def __init__(self, observations: Any, steps: Any, space: DictSpace) -> None:
        super().__init__(space, None)
        self._observations = observations
        self._steps = steps

    def __len__(self) -> int:
        return len(self._steps)

    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        steps = self._steps.get(index)
        if is_single(index):
            obs, next_obs = self._observations.get(index), self._observations.get(index + 1)
        else:
            obs, next_obs = self._observation_pairs(index)
        row = {key: steps[dataset] for key, dataset in STEP_DATASETS.items()}
        return {"obs": obs, "next_obs": next_obs, **row}, None

    def _observation_pairs(self, index: Any) -> tuple[Any, Any]:
        """Observations ``t`` and ``t + 1`` for every ``t`` of ``index``, read with one call."""
        backend = self.backend
        host = np.asarray(backend.to_numpy(index), dtype=np.int64)
        both = backend.asarray(np.concatenate([host, host + 1]), dtype=backend.default_index_dtype, device=self.device)
        values = self._observations.get(both)
        count = host.shape[0]
        return optree.tree_map(lambda leaf: leaf[:count], values), optree.tree_map(lambda leaf: leaf[count:], values)

    def close(self) -> None:
        self._observations.close()
        self._steps.close()


def _open_episodes(file_path: Path, names: list[str], spaces: _EpisodeSpaces) -> list[_MinariEpisode]:
    """Every episode, opened in order; on an error the ones already open are closed."""
    opened: list[_MinariEpisode] = []
    try:
        for name in names:
            opened.append(_open_episode(file_path, name, spaces))
    except BaseException:
        for episode in opened:
            episode.close()
        raise
    return opened


def _open_episode(file_path: Path, name: str, spaces: _EpisodeSpaces) -> _MinariEpisode:
    from unibatch.storages.hdf5 import HDF5Storage

    observations = HDF5Storage(spaces.observation, file_path, group=f"{name}/observations")
    try:
        steps = HDF5Storage(spaces.steps, file_path, group=name)
    except BaseException:
        observations.close()
        raise
    if len(observations) != len(steps) + 1:
        observations.close()
        steps.close()
        raise FormatVersionError(
            f"{file_path}: {name} has {len(observations)} observations for {len(steps)} steps; "
            "Minari stores one more observation than actions (the reset observation)"
        )
    return _MinariEpisode(observations, steps, spaces.row)


# ---------------------------------------------------------------------- spaces
class _EpisodeSpaces:
    """The observation space, the space of the per-step datasets of a group, and the row space."""

    def __init__(self, observation: Space, steps: DictSpace) -> None:
        backend = observation.backend
        self.observation = observation
        self.steps = steps
        row = {key: steps[dataset] for key, dataset in STEP_DATASETS.items()}
        self.row = DictSpace(backend, {"obs": observation, "next_obs": observation, **row}, device=observation.device)

    @classmethod
    def build(
        cls, file_path: Path, metadata: Mapping[str, Any], first: str, backend: ComputeBackend, device: Any
    ) -> _EpisodeSpaces:
        """The spaces declared in ``metadata``, or inferred from the datasets of episode group ``first``."""
        observation = _declared_space(metadata, "observation_space", backend, device)
        if observation is None:
            observation = _inferred_space(file_path, f"{first}/observations", backend, device)
        action = _declared_space(metadata, "action_space", backend, device)
        if action is None:
            action = _inferred_space(file_path, f"{first}/actions", backend, device)
        steps: dict[str, Space] = {"actions": action}
        for dataset in ("rewards", "terminations", "truncations"):
            steps[dataset] = _inferred_space(file_path, f"{first}/{dataset}", backend, device)
        return cls(observation, DictSpace(backend, steps, device=device))


def _inferred_space(file_path: Path, group: str, backend: ComputeBackend, device: Any) -> Space:
    from unibatch.storages.hdf5 import infer_hdf5_space

    space, skipped = infer_hdf5_space(file_path, backend, group=group, device=device)
    if skipped:
        raise SpaceMismatchError(f"{file_path}: {group} holds datasets of different lengths or types: {list(skipped)}")
    return space


def _declared_space(metadata: Mapping[str, Any], key: str, backend: ComputeBackend, device: Any) -> Space | None:
    """The space Minari serialized under ``key``, or None when absent or of a type mapped from the data."""
    raw = metadata.get(key)
    if raw is None:
        return None
    try:
        description = json.loads(raw) if isinstance(raw, str) else raw
        return space_from_minari(description, backend, device)
    except UnsupportedSpaceError:
        return None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise FormatVersionError(f"{METADATA_FILE}: {key} is not a space Minari serializes: {error!r}") from error


def space_from_minari(description: Mapping[str, Any], backend: ComputeBackend, device: Device | None = None) -> Space:
    """The unibatch space of a space serialized by Minari (``{"type": "Box", "low": ..., ...}``).

    ``Discrete``/``MultiDiscrete`` become integer ``BoxSpace``, ``MultiBinary`` a ``BinarySpace``.

    Raises:
        UnsupportedSpaceError: a type with no array layout here (``Tuple`` and others).

    >>> from unibatch import NumpyComputeBackend as np_backend
    >>> space_from_minari({"type": "Discrete", "dtype": "int64", "start": 0, "n": 4}, np_backend)
    BoxSpace(0, 3, (), int64)
    """
    kind = description.get("type")
    convert = _MINARI_SPACES.get(str(kind))
    if convert is None:
        raise UnsupportedSpaceError(f"no unibatch layout for a Minari space of type {kind!r}")
    return convert(description, backend, device)


def _box(description: Mapping[str, Any], backend: ComputeBackend, device: Device | None) -> Space:
    dtype = np.dtype(description["dtype"])
    low, high = np.asarray(description["low"], dtype=float), np.asarray(description["high"], dtype=float)
    if dtype.kind in "iu":
        low, high = low.astype(dtype), high.astype(dtype)
    return BoxSpace(backend, low, high, dtype, device, shape=tuple(description["shape"]))


def _discrete(description: Mapping[str, Any], backend: ComputeBackend, device: Device | None) -> Space:
    start = int(description.get("start", 0))
    return BoxSpace(backend, start, start + int(description["n"]) - 1, "int64", device, shape=())


def _multi_discrete(description: Mapping[str, Any], backend: ComputeBackend, device: Device | None) -> Space:
    counts = np.asarray(description["nvec"], dtype=np.int64)
    starts = np.asarray(description.get("start", np.zeros_like(counts)), dtype=np.int64)
    return BoxSpace(backend, starts, starts + counts - 1, "int64", device, shape=counts.shape)


def _multi_binary(description: Mapping[str, Any], backend: ComputeBackend, device: Device | None) -> Space:
    return BinarySpace(backend, tuple(np.atleast_1d(description["n"]).tolist()), device=device)


def _dict(description: Mapping[str, Any], backend: ComputeBackend, device: Device | None) -> Space:
    subspaces = {key: space_from_minari(sub, backend, device) for key, sub in description["subspaces"].items()}
    return DictSpace(backend, subspaces, device=device)


def _text(description: Mapping[str, Any], backend: ComputeBackend, device: Device | None) -> Space:
    charset = description.get("charset")
    return TextSpace(
        backend,
        int(description["max_length"]),
        min_length=int(description.get("min_length", 0)),
        charset="".join(dict.fromkeys(charset)) if charset is not None else None,
        device=device,
    )


_MINARI_SPACES: dict[str, Callable[[Mapping[str, Any], ComputeBackend, Device | None], Space]] = {
    "Box": _box,
    "Discrete": _discrete,
    "MultiDiscrete": _multi_discrete,
    "MultiBinary": _multi_binary,
    "Dict": _dict,
    "Text": _text,
}


# ---------------------------------------------------------------------- files and metadata
def _data_directory(path: Path) -> Path | None:
    """The directory holding ``metadata.json`` for any of the paths a user may give, or None."""
    candidates = [path.parent] if path.name == DATA_FILE else [path / "data", path]
    for directory in candidates:
        if (directory / METADATA_FILE).is_file():
            return directory
    return None


def _require_data_directory(path: Path) -> Path:
    path = existing_path_or_id(path)
    directory = _data_directory(path)
    if directory is None:
        raise FileNotFoundError(
            f"{path} is not a Minari dataset: no {METADATA_FILE} in it, in {path / 'data'} or next to it"
        )
    return directory


def _read_metadata(directory: Path) -> dict[str, Any]:
    try:
        metadata = json.loads((directory / METADATA_FILE).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FormatVersionError(f"{directory / METADATA_FILE} is not valid JSON: {error}") from error
    if not isinstance(metadata, dict):
        raise FormatVersionError(f"{directory / METADATA_FILE} holds a {type(metadata).__name__}, not an object")
    return metadata


def _check_data_format(metadata: Mapping[str, Any], directory: Path) -> None:
    data_format = metadata.get("data_format", "hdf5")
    if data_format != "hdf5":
        raise FormatVersionError(
            f"{directory} is a Minari dataset in the {data_format!r} format; only 'hdf5' is read here"
        )


def _episode_groups(file_path: Path) -> list[tuple[int, str]]:
    """``(id, group name)`` of every ``episode_<id>`` group, by id."""
    with _h5py().File(file_path, "r") as file:
        names = list(file.keys())
    found = [(int(match.group(1)), name) for name in names if (match := EPISODE_NAME.fullmatch(name))]
    return sorted(found)


def _check_totals(metadata: Mapping[str, Any], lengths: list[int], directory: Path) -> None:
    for key, actual in (("total_episodes", len(lengths)), ("total_steps", sum(lengths))):
        declared = metadata.get(key)
        if declared is not None and int(declared) != actual:
            raise FormatVersionError(
                f"{directory / METADATA_FILE} says {key} = {declared}, but {DATA_FILE} holds {actual}"
            )


def _episode_info(file_path: Path, names: list[str]) -> list[dict[str, Any]]:
    """Each episode's group name and attributes (NumPy values as Python ones)."""
    with _h5py().File(file_path, "r") as file:
        return [{"episode": name, **{key: _python(value) for key, value in file[name].attrs.items()}} for name in names]


def _h5py() -> Any:
    return require("h5py", "hdf5")


def _python(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value
