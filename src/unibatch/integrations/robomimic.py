"""robomimic HDF5 datasets as a read-only :class:`EpisodeDataset`, without the robomimic package.

A robomimic file (robomimic v0.1+, MimicGen, robosuite conversions) looks like this::

    data/                   attributes: total (number of samples), env_args (JSON string)
      demo_0/               attribute: num_samples (N)
        actions             (N, A) float
        rewards, dones      (N,)
        states              (N, S)           optional: flattened simulator states
        obs/<key>           (N, d) low-dimensional or (N, H, W, 3) uint8 images
        next_obs/<key>      (N, ...)         optional: the observation after each action
      demo_1/ ...
    mask/<filter key>       1-D array of demo names (bytes), e.g. "train", "valid", "20_percent"

Each demo becomes one episode, in natural order (``demo_2`` before ``demo_10``, as robomimic's own
loader sorts them); its episode id is the demo number. A row is one sample of a demo: a dict with one
key per dataset of the demo (``actions``, ``rewards``, ``obs/...`` nested as ``{"obs": {...}}``), each
demo read lazily from the file through its own read-only ``HDF5Storage``. Datasets whose length is
not the demo's ``N`` are left out (see ``storage.skipped_datasets``).

A random batch touches one HDF5 read per leaf per demo it hits, so sampling is bound by HDF5 calls
(tens of milliseconds for 256 rows spread over 200 demos); ``unibatch convert`` copies a dataset into
a memmap buffer when sampling speed matters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unibatch._optional import require
from unibatch._typing import Device
from unibatch.backends import ComputeBackend
from unibatch.buffers import ReplayBuffer
from unibatch.errors import FormatVersionError, SpaceMismatchError, UnknownNameError
from unibatch.integrations.episodes import EpisodeDataset
from unibatch.spaces import DictSpace, Space
from unibatch.spaces._tree import leaves, nest_paths
from unibatch.storages._base import PathLike

DATA_GROUP = "data"
MASK_GROUP = "mask"
DEMO_NAME = re.compile(r"demo_(\d+)")
_SAME = "every demo must hold the same datasets (select common ones with keys=...)"


@dataclass(frozen=True)
class RobomimicInfo:
    """What a robomimic file says about itself, read without touching the data.

    Attributes:
        demos: every demo group under ``data/``, in natural order (``demo_2`` before ``demo_10``).
        num_samples: the ``num_samples`` attribute of each demo (None where it is missing).
        filter_keys: each dataset under ``mask/`` and the demo names it lists, in file order.
        total: the ``total`` attribute of ``data/`` (None where it is missing).
        env_args: the parsed ``env_args`` attribute of ``data/`` (None where it is missing).
    """

    demos: tuple[str, ...]
    num_samples: dict[str, int | None] = field(default_factory=dict)
    filter_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    total: int | None = None
    env_args: dict[str, Any] | None = None


def is_robomimic(path: PathLike) -> bool:
    """Whether ``path`` is an HDF5 file whose ``data`` group holds ``demo_<n>`` groups and nothing else.

    Cheap: opens the file and lists one group; never raises for a file of another kind.
    """
    h5py = _h5py()
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as file:
            return _demo_names(file) is not None
    except OSError:
        return False


def read_robomimic_info(path: PathLike) -> RobomimicInfo:
    """The demos, filter keys and ``data`` attributes of the robomimic file ``path``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FormatVersionError: ``path`` is not a robomimic file (names what is missing).
    """
    h5py = _h5py()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_file() or not h5py.is_hdf5(path):
        raise FormatVersionError(f"{path} is not an HDF5 file, so not a robomimic dataset")
    with h5py.File(path, "r") as file:
        demos = _demo_names(file)
        if demos is None:
            raise FormatVersionError(_not_robomimic_reason(file, path))
        data = file[DATA_GROUP]
        return RobomimicInfo(
            demos=demos,
            num_samples={demo: _int_attribute(data[demo], "num_samples") for demo in demos},
            filter_keys=_filter_keys(file),
            total=_int_attribute(data, "total"),
            env_args=_env_args(data, path),
        )


def open_robomimic(
    path: PathLike,
    backend: ComputeBackend,
    *,
    device: Device | None = None,
    filter_key: str | None = None,
    keys: Sequence[str] | None = None,
) -> EpisodeDataset:
    """A robomimic HDF5 file as a read-only dataset of episodes, one per demo.

    Args:
        path: the ``.hdf5`` file.
        backend: backend of the values read.
        device: device of the values read.
        filter_key: keep only the demos listed in ``mask/<filter_key>`` (e.g. ``"train"``, ``"valid"``).
        keys: the leaves to read, as paths inside a demo group (``"actions"``, ``"obs/agentview_image"``);
            a group name (``"obs"``) selects every leaf under it. Default: every dataset of ``N`` rows.

    Returns:
        An :class:`EpisodeDataset` whose rows are dicts such as
        ``{"actions": (A,), "dones": (), "obs": {"eef_pos": (3,), "agentview_image": (H, W, 3) uint8}, ...}``
        (dtypes as stored), with ``episode_ids`` = demo numbers and ``episode_info[i] = {"demo": "demo_<n>"}``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FormatVersionError: ``path`` is not a robomimic file, or ``num_samples`` disagrees with the data.
        UnknownNameError: ``filter_key`` is not under ``mask/``, or a key of ``keys`` matches no dataset.
        SpaceMismatchError: two demos hold different datasets (names the demo and the key).

    >>> import tempfile, h5py, numpy as np
    >>> from unibatch import NumpyComputeBackend as np_backend
    >>> path = Path(tempfile.mkdtemp()) / "demos.hdf5"
    >>> with h5py.File(path, "w") as file:
    ...     for n, length in [(10, 3), (2, 2)]:
    ...         file[f"data/demo_{n}/actions"] = np.full((length, 7), n, dtype=np.float32)
    ...         file[f"data/demo_{n}/obs/eef_pos"] = np.zeros((length, 3))
    >>> dataset = open_robomimic(path, np_backend)
    >>> dataset.episode_id_values.tolist(), dataset.episode_lengths.tolist(), dataset.get_at(4)["actions"][0]
    ([2, 10], [2, 3], np.float32(10.0))
    >>> dataset.close()
    """
    path = Path(path)
    info = read_robomimic_info(path)
    demos = _select_demos(info, filter_key, path)
    spaces = _demo_spaces(path, demos, backend, device, keys)
    buffers = _open_demos(path, demos, spaces[0], info)
    return EpisodeDataset.from_episodes(
        buffers,
        episode_ids=[_demo_number(demo) for demo in demos],
        episode_info=[{"demo": demo} for demo in demos],
    )


# ---------------------------------------------------------------------- file structure
def _h5py() -> Any:
    return require("h5py", "hdf5")


def _demo_number(name: str) -> int:
    match = DEMO_NAME.fullmatch(name)
    if match is None:
        raise FormatVersionError(f"{name!r} is not a robomimic demo name (demo_<number>)")
    return int(match.group(1))


def _demo_names(file: Any) -> tuple[str, ...] | None:
    """The demo groups of ``data/`` in natural order, or None when the file is not laid out like robomimic."""
    h5py = _h5py()
    data = file.get(DATA_GROUP)
    if not isinstance(data, h5py.Group) or len(data) == 0:
        return None
    names = list(data.keys())
    if not all(DEMO_NAME.fullmatch(name) and isinstance(data.get(name), h5py.Group) for name in names):
        return None
    return tuple(sorted(names, key=_demo_number))


def _not_robomimic_reason(file: Any, path: Path) -> str:
    data = file.get(DATA_GROUP)
    if data is None:
        return f"{path} is not a robomimic dataset: it has no {DATA_GROUP!r} group (found {sorted(file.keys())})"
    if not isinstance(data, _h5py().Group) or len(data) == 0:
        return f"{path} is not a robomimic dataset: {DATA_GROUP!r} is not a group of demo_<n> groups"
    others = [name for name in data if not DEMO_NAME.fullmatch(name) or not isinstance(data[name], _h5py().Group)]
    return f"{path} is not a robomimic dataset: {DATA_GROUP!r} holds {others[:5]}, which are not demo_<n> groups"


def _int_attribute(node: Any, name: str) -> int | None:
    value = node.attrs.get(name)
    return None if value is None else int(value)


def _env_args(data: Any, path: Path) -> dict[str, Any] | None:
    raw = data.attrs.get("env_args")
    if raw is None:
        return None
    text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise FormatVersionError(f"{path}: the env_args attribute of {DATA_GROUP!r} is not JSON: {error}") from error
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _filter_keys(file: Any) -> dict[str, tuple[str, ...]]:
    h5py = _h5py()
    masks = file.get(MASK_GROUP)
    if not isinstance(masks, h5py.Group):
        return {}
    found = {}
    for name, node in masks.items():
        if isinstance(node, h5py.Dataset) and node.ndim == 1:
            found[name] = tuple(_text(value) for value in node[()])
    return found


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _select_demos(info: RobomimicInfo, filter_key: str | None, path: Path) -> tuple[str, ...]:
    """The demos to open, in natural order: all, or those listed under ``mask/<filter_key>``."""
    if filter_key is None:
        return info.demos
    if filter_key not in info.filter_keys:
        raise UnknownNameError(
            f"{path} has no filter key {filter_key!r} under {MASK_GROUP!r}; it has {sorted(info.filter_keys)}"
        )
    listed = set(info.filter_keys[filter_key])
    missing = sorted(listed - set(info.demos), key=lambda name: (len(name), name))
    if missing:
        raise FormatVersionError(
            f"{path}: filter key {filter_key!r} lists demos missing from {DATA_GROUP!r}: {missing}"
        )
    if not listed:
        raise SpaceMismatchError(f"{path}: filter key {filter_key!r} lists no demos")
    return tuple(demo for demo in info.demos if demo in listed)


# ---------------------------------------------------------------------- spaces and storages
def _demo_spaces(
    path: Path, demos: Sequence[str], backend: ComputeBackend, device: Device | None, keys: Sequence[str] | None
) -> list[Space]:
    """The space of each demo (``keys`` applied); raises naming the first demo that differs from the first."""
    from unibatch.storages.hdf5 import infer_hdf5_space

    spaces: list[Space] = []
    for demo in demos:
        space, _ = infer_hdf5_space(path, backend, group=f"{DATA_GROUP}/{demo}", device=device)
        if keys is not None:
            space = _select_keys(space, keys, f"{path}:{DATA_GROUP}/{demo}")
        if spaces and space != spaces[0]:
            raise SpaceMismatchError(_space_difference(demos[0], spaces[0], demo, space, path))
        spaces.append(space)
    return spaces


def _select_keys(space: Space, keys: Sequence[str], where: str) -> Space:
    """The leaves of ``space`` named by ``keys`` (a leaf path, or a group path selecting every leaf below it)."""
    if isinstance(keys, str):
        keys = [keys]
    available = dict(leaves(space))
    chosen: dict[str, Space] = {}
    for key in keys:
        key = key.strip("/")
        matched = {name: leaf for name, leaf in available.items() if name == key or name.startswith(key + "/")}
        if not matched:
            raise UnknownNameError(f"{where} has no dataset or group {key!r}; its datasets are {sorted(available)}")
        chosen.update(matched)
    return DictSpace(space.backend, nest_paths(chosen), device=space.device)


def _space_difference(first: str, first_space: Space, demo: str, space: Space, path: Path) -> str:
    expected, got = dict(leaves(first_space)), dict(leaves(space))
    for key in sorted(set(expected) | set(got)):
        if key not in got:
            return f"{path}: {demo} has no dataset {key!r} (of its length), but {first} has; {_SAME}"
        if key not in expected:
            return f"{path}: {demo} has a dataset {key!r}, but {first} has not; {_SAME}"
        if expected[key] != got[key]:
            return f"{path}: {demo}/{key} is {got[key]!r}, but {first}/{key} is {expected[key]!r}"
    return f"{path}: {demo} has space {space!r}, but {first} has {first_space!r}"


def _open_demos(path: Path, demos: Sequence[str], space: Space, info: RobomimicInfo) -> list[ReplayBuffer]:
    """A buffer per demo, in order; on an error the ones already open are closed."""
    opened: list[ReplayBuffer] = []
    try:
        for demo in demos:
            opened.append(_open_demo(path, demo, space, info))
    except BaseException:
        for buffer in opened:
            buffer.close()
        raise
    return opened


def _open_demo(path: Path, demo: str, space: Space, info: RobomimicInfo) -> ReplayBuffer:
    """A read-only buffer over every sample of ``demo``."""
    from unibatch.storages.hdf5 import HDF5Storage

    storage = HDF5Storage(space, path, group=f"{DATA_GROUP}/{demo}")
    expected = info.num_samples.get(demo)
    if expected is not None and expected != len(storage):
        storage.close()
        raise FormatVersionError(
            f"{path}: {DATA_GROUP}/{demo} has num_samples {expected}, but its datasets hold {len(storage)} rows"
        )
    return ReplayBuffer(storage, "storage.hdf5", count=len(storage), offset=0)
