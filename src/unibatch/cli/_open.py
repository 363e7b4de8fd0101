"""Open any PATH the ``unibatch`` command accepts, and describe its episodes.

One function, :func:`open_source`, is used by every command. It recognises, in this order:

* a unibatch ``ReplayBuffer`` or ``TrajectoryReplayBuffer`` directory (``metadata.json``);
* a dataset of another project, through the importers in ``unibatch.integrations`` (LeRobot v3,
  Minari, robomimic), each found by module and function name when it is first needed, so a
  missing importer (or its format library) only matters for paths in that format;
* a plain Parquet file or directory of them, and a plain HDF5 file (``integrations.foreign_files``).

Everything is read on the NumPy backend: the CLI inspects and copies bytes, it does not compute.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from unibatch.backends import ComputeBackend, backend_from_name
from unibatch.batches import BatchBase
from unibatch.buffers import ReplayBuffer, TrajectoryReplayBuffer
from unibatch.buffers._metadata import METADATA_FILE
from unibatch.errors import MissingDependencyError, UnibatchError
from unibatch.spaces import BinarySpace, BoxSpace, DictSpace, Space, TextSpace
from unibatch.spaces._tree import leaves
from unibatch.storages._atomic import read_json

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
IMPORTERS = (
    # (kind, module, detector, opener, what the detector looks for)
    (
        "lerobot",
        "unibatch.integrations.lerobot",
        "is_lerobot",
        "open_lerobot",
        "a LeRobot v3 directory (meta/info.json)",
    ),
    ("minari", "unibatch.integrations.minari", "is_minari", "open_minari", "a Minari dataset (HDF5)"),
    ("robomimic", "unibatch.integrations.robomimic", "is_robomimic", "open_robomimic", "a robomimic HDF5 file"),
)
KIND_NAMES = {
    "ReplayBuffer": "a unibatch ReplayBuffer",
    "TrajectoryReplayBuffer": "a unibatch TrajectoryReplayBuffer",
    "lerobot": "a LeRobot dataset",
    "minari": "a Minari dataset",
    "robomimic": "a robomimic dataset",
    "parquet": "Parquet data",
    "hdf5": "an HDF5 file",
}
LOOKED_FOR = (
    "a unibatch ReplayBuffer or TrajectoryReplayBuffer directory (metadata.json)",
    *(entry[4] for entry in IMPORTERS),
    "a Parquet file or a directory of Parquet files",
    "an HDF5 file",
)


class PathNotRecognizedError(UnibatchError, FileNotFoundError):
    """PATH is in none of the formats the command reads; the message says what was looked for."""


class UsageError(UnibatchError, ValueError):
    """The command line asks for something PATH does not have (a key, an episode); exit code 2."""


class SourceOpenError(UnibatchError, OSError):
    """PATH was recognised (``kind``) but could not be opened; the message names the cause."""

    def __init__(self, kind: str, path: Path, cause: BaseException) -> None:
        what = KIND_NAMES.get(kind, kind)
        super().__init__(f"{path} looks like {what}, but opening it failed: {type(cause).__name__}: {cause}")
        self.kind = kind


@dataclass(frozen=True)
class Episodes:
    """Consecutive episodes of a source's rows, in row order (all arrays ``int64[E]``).

    Attributes:
        ids: the id of each episode (a trajectory buffer's episode ids, an importer's episode ids).
        starts: the first row of each episode.
        lengths: the number of rows of each episode.
        open_id: the id of an episode still being recorded (a trajectory buffer's current episode
            when it already has steps), else None.

    >>> episodes = Episodes.from_row_ids(np.array([4, 4, 5, 5, 5, 7]), open_id=7)
    >>> episodes.ids.tolist(), episodes.starts.tolist(), episodes.lengths.tolist(), episodes.open_id
    ([4, 5, 7], [0, 2, 5], [2, 3, 1], 7)
    >>> episodes.describe_row(3)
    'row 3 (episode 5, step 1)'
    """

    ids: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    open_id: int | None = None

    @classmethod
    def from_row_ids(cls, row_ids: np.ndarray, open_id: int | None = None) -> Episodes:
        """Runs of equal ids in ``row_ids`` (``int[N]``, in row order) as episodes."""
        row_ids = np.asarray(row_ids, dtype=np.int64).reshape(-1)
        if not row_ids.size:
            empty = np.zeros(0, np.int64)
            return cls(empty, empty, empty, None)
        starts = np.concatenate([[0], np.flatnonzero(row_ids[1:] != row_ids[:-1]) + 1]).astype(np.int64)
        lengths = np.diff(np.append(starts, row_ids.size)).astype(np.int64)
        ids = row_ids[starts]
        return cls(ids, starts, lengths, open_id if open_id is not None and ids[-1] == open_id else None)

    @classmethod
    def from_lengths(cls, lengths: Any, ids: Any) -> Episodes:
        """Episodes of the given lengths (``int[E]``) and ids, one after another."""
        lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if lengths.size else lengths
        return cls(np.asarray(ids, dtype=np.int64).reshape(-1), starts, lengths, None)

    @property
    def count(self) -> int:
        return int(self.lengths.size)

    def row_ids(self) -> np.ndarray:
        """The episode id of every row, ``int64[N]``."""
        return np.repeat(self.ids, self.lengths)

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(episode position, step within the episode)`` of each row number in ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        positions = np.searchsorted(self.starts, rows, side="right") - 1
        return positions, rows - self.starts[positions]

    def describe_row(self, row: int) -> str:
        """``"row 17 (episode 0, step 17)"``; just ``"row 17"`` without episodes."""
        if not self.count:
            return f"row {row}"
        positions, steps = self.locate(np.asarray([row]))
        return f"row {row} (episode {int(self.ids[positions[0]])}, step {int(steps[0])})"


@dataclass
class Source:
    """An opened PATH.

    Attributes:
        path: the path given.
        kind: ``"ReplayBuffer"``, ``"TrajectoryReplayBuffer"``, or the format of an imported dataset
            (``"lerobot"``, ``"minari"``, ``"robomimic"``, ``"parquet"``, ``"hdf5"``).
        batch: what was opened (a ``ReplayBuffer``, ``TrajectoryReplayBuffer`` or ``EpisodeDataset``).
        steps: the step rows: ``batch`` itself, or a trajectory buffer's ``step_data_buffer``.
        episodes: the episodes of the rows, or None for a plain buffer or file.
        fps: frames per second of the recording, when the source knows it.
    """

    path: Path
    kind: str
    batch: BatchBase
    steps: BatchBase
    episodes: Episodes | None = None
    fps: float | None = None

    @property
    def step_prefix(self) -> str:
        """The key prefix of step data in ``batch``'s samples (``"step_data/"`` for trajectories)."""
        return "step_data/" if isinstance(self.batch, TrajectoryReplayBuffer) else ""

    @property
    def is_unibatch_buffer(self) -> bool:
        """Whether PATH is a buffer unibatch wrote (not a file of another tool read as one)."""
        return self.kind in ("ReplayBuffer", "TrajectoryReplayBuffer")

    def close(self) -> None:
        self.batch.close()


def numpy_backend() -> ComputeBackend:
    return backend_from_name("numpy")


def unibatch_buffer_type(path: Path) -> str | None:
    """``"ReplayBuffer"`` or ``"TrajectoryReplayBuffer"`` when ``path/metadata.json`` names one, else None.

    A ``metadata.json`` that is not JSON or has no ``type`` is another project's file (Minari
    keeps one too), so it is left to the importers.
    """
    file = path / METADATA_FILE
    if not file.is_file():
        return None
    try:
        payload = read_json(file)
    except (OSError, ValueError):
        return None
    kind = payload.get("type") if isinstance(payload, dict) else None
    return kind if kind in ("ReplayBuffer", "TrajectoryReplayBuffer") else None


def open_source(path: str | Path) -> Source:
    """Open ``path`` read-only on the NumPy backend (see the module docstring for the formats).

    Raises:
        PathNotRecognizedError: no format matches; the message lists what was looked for.
        SourceOpenError: a format matched but opening failed (corrupt, newer format, missing library).
    """
    path = _existing(Path(path))
    kind = unibatch_buffer_type(path)
    if kind is not None:
        return _guarded(kind, path, partial(_open_unibatch, path, kind))
    skipped: list[str] = []
    for kind, module, detector, opener, _ in IMPORTERS:
        functions = _importer(module, detector, opener)
        if functions is not None and _detect(path, functions[0], skipped):
            return _guarded(kind, path, partial(_from_dataset, path, kind, functions[1]))
    inside = datasets_below(path)
    if inside:
        listed = "; ".join(f"{found} ({KIND_NAMES[kind]})" for found, kind in inside)
        raise PathNotRecognizedError(
            f"{path} is a folder of {len(inside)} dataset{'s' if len(inside) > 1 else ''}, not a dataset: {listed}. "
            "Give one of them as PATH"
        )
    if _is_parquet(path):
        return _guarded("parquet", path, partial(_open_foreign, path, "parquet"))
    if _is_hdf5(path):
        return _guarded("hdf5", path, partial(_open_foreign, path, "hdf5"))
    message = f"{path} is not a dataset unibatch can open; looked for " + "; ".join(LOOKED_FOR)
    raise PathNotRecognizedError(message + "".join(f" (not checked: {reason})" for reason in skipped))


def _existing(path: Path) -> Path:
    """``path``, or the directory a Minari dataset id or LeRobot repo id names (``lerobot/pusht``).

    Raises:
        PathNotRecognizedError: neither; the message says where the id was looked for and which
            environment variables set those places.
    """
    from unibatch.integrations.dataset_ids import existing_path_or_id

    try:
        return existing_path_or_id(path)
    except FileNotFoundError as error:
        raise PathNotRecognizedError(str(error)) from error


DATASET_SEARCH_LIMIT = 500
"""Entries of a folder looked at (per level) when it is a folder of datasets rather than one."""


def datasets_below(folder: Path, depth: int = 2) -> list[tuple[Path, str]]:
    """``(path, kind)`` of the datasets one or two levels below ``folder`` (unibatch buffers, LeRobot, Minari).

    For a folder that holds datasets (a download directory, a Minari namespace such as ``D4RL/door``)
    rather than being one. A dataset's own sub-folders are not searched.
    """
    if depth == 0 or not folder.is_dir():
        return []
    found: list[tuple[Path, str]] = []
    for entry in sorted(folder.iterdir())[:DATASET_SEARCH_LIMIT]:
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        kind = _dataset_kind(entry)
        found.extend([(entry, kind)] if kind is not None else datasets_below(entry, depth - 1))
    return found


def _dataset_kind(path: Path) -> str | None:
    """The kind of dataset directory ``path`` is (``"lerobot"``, ``"minari"``, a buffer type), or None."""
    kind = unibatch_buffer_type(path)
    if kind is not None:
        return kind
    for name, module, detector, opener, _ in IMPORTERS:
        functions = _importer(module, detector, opener)
        if functions is not None and path.is_dir() and _detect(path, functions[0], []):
            return name
    return None


def _guarded(kind: str, path: Path, open_it: Callable[[], Source]) -> Source:
    try:
        return open_it()
    except (UnibatchError, OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise SourceOpenError(kind, path, error) from error


def _open_unibatch(path: Path, kind: str) -> Source:
    backend = numpy_backend()
    if kind == "ReplayBuffer":
        buffer = ReplayBuffer.load_from(path, backend=backend, read_only=True)
        return Source(path, kind, buffer, buffer)
    trajectory = TrajectoryReplayBuffer.load_from(path, backend=backend, read_only=True)
    ids = trajectory.step_episode_id_buffer
    row_ids = np.asarray(ids.get_at(slice(None))) if len(ids) else np.zeros(0, np.int64)
    episodes = Episodes.from_row_ids(row_ids, open_id=trajectory.current_episode_id)
    return Source(path, kind, trajectory, trajectory.step_data_buffer, episodes)


def _from_dataset(path: Path, kind: str, opener: Callable[..., Any]) -> Source:
    dataset = opener(path, numpy_backend())
    episodes = Episodes.from_lengths(dataset.episode_lengths, dataset.episode_id_values)
    return Source(path, kind, dataset, dataset, episodes, dataset.fps)


def _open_foreign(path: Path, kind: str) -> Source:
    from unibatch.integrations import foreign_files

    if kind == "parquet":
        buffer = foreign_files.open_parquet_as_replay_buffer(path, numpy_backend())
    else:
        buffer = foreign_files.open_hdf5_as_replay_buffer(path, numpy_backend())
    return Source(path, kind, buffer, buffer)


def _importer(module: str, detector: str, opener: str) -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """``(is_x, open_x)`` of an importer module, or None while that importer does not exist."""
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name == module:
            return None
        raise
    return getattr(loaded, detector), getattr(loaded, opener)


def _detect(path: Path, detector: Callable[[Path], bool], skipped: list[str]) -> bool:
    """Whether the importer claims ``path``; a missing format library skips it (noted in ``skipped``)."""
    try:
        return bool(detector(path))
    except MissingDependencyError as error:
        skipped.append(str(error))
        return False


def _is_parquet(path: Path) -> bool:
    """A ``.parquet`` file, or a directory with some at most two levels down (LeRobot's ``data/chunk-000/``)."""
    if path.is_file():
        return path.suffix == ".parquet"
    patterns = ("*.parquet", "*/*.parquet", "*/*/*.parquet")
    return path.is_dir() and any(next(path.glob(pattern), None) is not None for pattern in patterns)


def _is_hdf5(path: Path) -> bool:
    if not path.is_file():
        return False
    if path.suffix.lower() in HDF5_SUFFIXES:
        return True
    with open(path, "rb") as handle:
        return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


# ---------------------------------------------------------------------- keys
ROOT_KEY = "(root)"
"""How the one leaf of a space that is not a dict is named."""


@dataclass(frozen=True)
class KeyInfo:
    """One leaf of a space, described for people: ``step_data/obs/image  uint8  (3, 64, 64)  [0, 255]``."""

    path: str
    dtype: str
    shape: tuple[int, ...]
    bounds: str
    space: Space

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "dtype": self.dtype, "shape": list(self.shape), "bounds": self.bounds}


def describe_keys(space: Space, prefix: str = "") -> list[KeyInfo]:
    """Every leaf of ``space`` in flat order, its key path prefixed with ``prefix``."""
    described = []
    for path, leaf in leaves(space):
        full = (prefix + path) if path else (prefix.rstrip("/") or ROOT_KEY)
        described.append(KeyInfo(full, _dtype_name(leaf), tuple(leaf.shape or ()), _bounds_text(leaf), leaf))
    return described


def _dtype_name(leaf: Space) -> str:
    if isinstance(leaf, TextSpace):
        return "str"
    return leaf.backend.dtype_name(leaf.dtype)


def _bounds_text(leaf: Space) -> str:
    if isinstance(leaf, BinarySpace):
        return "{False, True}"
    if isinstance(leaf, TextSpace):
        return f"{leaf.min_length}-{leaf.max_length} characters"
    if not isinstance(leaf, BoxSpace):
        return "-"
    low, high = leaf.host_bounds()
    return f"[{_bound_text(low)}, {_bound_text(high)}]"


def _bound_text(bound: np.ndarray) -> str:
    """One bound: a number, ``int64 max`` for an integer dtype's limit, ``min..max`` when it varies by element."""
    if bound.size != 1 and np.unique(bound).size != 1:
        return f"{_number(bound.min())}..{_number(bound.max())}"
    value = bound.reshape(-1)[0]
    if bound.dtype.kind in "iu" and bound.dtype.itemsize >= 4:
        limits = np.iinfo(bound.dtype)
        if value == limits.max or value == limits.min:
            return f"{bound.dtype.name} {'max' if value == limits.max else 'min'}"
    return _number(value)


def _number(value: Any) -> str:
    if isinstance(value, (np.integer, int)):
        return str(int(value))
    return f"{float(value):.6g}"


def split_key(key: str) -> tuple[str, ...]:
    """``"obs/image"`` as ``("obs", "image")``."""
    return tuple(part for part in key.strip("/").split("/") if part)


def resolve_step_key(source: Source, key: str) -> tuple[str, ...]:
    """The key path (inside a step) that ``key`` names, with or without a ``step_data/`` prefix.

    Raises:
        UsageError: naming the key and listing the step keys there are.
    """
    space = source.steps.single_space
    known = {path for path, _ in leaves(space)}
    candidates = [key.strip("/")]
    if source.step_prefix and key.startswith(source.step_prefix):
        candidates.insert(0, key[len(source.step_prefix) :].strip("/"))
    candidates.append(key.replace(".", "/"))
    for candidate in candidates:
        if candidate in known or any(path.startswith(candidate + "/") for path in known):
            return split_key(candidate)
    listed = ", ".join(source.step_prefix + path for path in sorted(known))
    raise UsageError(f"no key {key!r} in {source.path}; its step keys are: {listed}")


def leaf_at(space: Space, keys: tuple[str, ...]) -> Space:
    """The sub-space of ``space`` at ``keys``."""
    for key in keys:
        if not isinstance(space, DictSpace):
            raise KeyError(f"{'/'.join(keys)}: {key!r} is below a leaf")
        space = space[key]
    return space
