"""LeRobot datasets as a read-only :class:`EpisodeDataset`, without the lerobot package.

**Layout read (LeRobot v3.0)**, a local dataset directory::

    meta/info.json              {"codebase_version": "v3.0", "fps": 30, "robot_type", "total_episodes",
                                 "total_frames", "total_tasks", "chunks_size": 1000, "data_files_size_in_mb",
                                 "video_files_size_in_mb", "splits",
                                 "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                                 "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
                                 "features": {name: {"dtype", "shape", "names", "info"?}}}
    meta/episodes/chunk-000/file-000.parquet
                                one row per episode: episode_index, length, tasks (list of strings),
                                data/chunk_index, data/file_index, dataset_from_index, dataset_to_index,
                                videos/<key>/chunk_index, videos/<key>/file_index, videos/<key>/from_timestamp,
                                videos/<key>/to_timestamp, meta/episodes/..., stats/... (not read)
    meta/tasks.parquet          task_index and the task string (the pandas index "task")
    data/chunk-000/file-000.parquet
                                many episodes per file, one row per frame in global ``index`` order: a column
                                per feature (scalars for shape [1], lists for vectors, image structs
                                {bytes, path}), plus timestamp, frame_index, episode_index, index, task_index
    videos/<key>/chunk-000/file-000.mp4
                                several episodes' frames one after another; an episode starts at its
                                from_timestamp (seconds) in the file

Feature dtypes: numbers and ``bool`` (``float32``, ``int64``, ...), ``string``, ``image`` (encoded
PNG/JPEG bytes in the data files) and ``video`` (frames in the mp4 files). LeRobot v2.0 and v2.1
are read too: ``meta/episodes.jsonl`` and ``meta/tasks.jsonl``, one data file
(``data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet``) and one mp4 per episode.

**Mapping.** One row per frame, in global ``index`` order (episodes as ordered by
``dataset_from_index``), as a flat dict keyed by LeRobot's feature names, dots kept
(``"observation.state"``, ``"observation.images.top"``): LeRobot's own convention, so keys read
the same in both worlds. Columns keep the data files' dtypes and shapes (a feature of shape
``[1]`` is a scalar, as LeRobot returns it); ``image`` and ``video`` features are ``uint8`` boxes
``(H, W, C)`` whichever axis order ``info.json`` writes. The episode ids are the
``episode_index`` values, ``episode_info[i]`` holds ``episode_index``, ``length``, ``tasks``,
``dataset_from_index`` and ``dataset_to_index``, and ``fps`` comes from ``info.json``.
:func:`read_lerobot_info` returns the parsed metadata (features, episodes, tasks by index).

**Reads.** Tabular features come from the data parquet files through
:func:`~unibatch.storages.parquet.open_parquet_storage` (decoded columns cached per process).
Video frames: row -> (episode, frame in episode) -> (mp4 file, frame ``from_timestamp * fps +
frame``); a request groups its rows by file and decodes each distinct frame once, seeking to the
keyframe before the first one. Opening checks that the data rows match the episodes metadata
(their ``episode_index`` column, row by row), that every mp4 file of a selected video feature
exists, and that the frames have the size ``info.json`` gives.

**Windows.** LeRobot's ``delta_timestamps`` (seconds relative to the current frame, per feature)
are whole frames at ``fps``: :func:`delta_timestamps_to_offsets` turns them into the integer
offsets of a :class:`~unibatch.batches.SliceStackedBatch` (with the episode mask, frames outside
the episode are invalid and filled with the episode's edge frame, as LeRobot pads), and
:class:`DeltaTimestampsBatch` assembles LeRobot-style samples with ``<key>_is_pad`` flags.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unibatch._typing import Array, Device
from unibatch.backends import ComputeBackend
from unibatch.batches import BatchBase, SliceStackedBatch
from unibatch.batches._base import Metadata
from unibatch.batches._indexing import NormalizedIndex, is_single
from unibatch.batches.windows import VALID_MASK_KEY
from unibatch.errors import UnknownNameError
from unibatch.integrations._lerobot_files import (
    DEFAULT_GOP,
    INFO_FILE,
    ImageFrames,
    LeRobotInfo,
    VideoFrames,
    read_lerobot_info,
)
from unibatch.integrations._lerobot_files import LeRobotError as LeRobotError
from unibatch.integrations.episodes import EPISODE_IDS_KEY, EpisodeDataset
from unibatch.spaces import BinarySpace, BoxSpace, DictSpace, TextSpace, batch_space
from unibatch.storages._base import PathLike, SpaceStorage

DEFAULT_TOLERANCE_S = 1e-4
"""LeRobot's default tolerance between a requested timestamp and a frame's (seconds)."""
PAD_SUFFIX = "_is_pad"
FrameReader = VideoFrames | ImageFrames

__all__ = [
    "DeltaTimestampsBatch",
    "LeRobotError",
    "LeRobotInfo",
    "LeRobotRows",
    "delta_timestamps_to_offsets",
    "is_lerobot",
    "open_lerobot",
    "read_lerobot_info",
]


def is_lerobot(path: PathLike) -> bool:
    """Whether ``path`` is a LeRobot dataset directory: ``meta/info.json`` is an object with ``codebase_version``.

    Cheap: reads that one file, nothing else (an unsupported version still answers True, so
    opening it says why it cannot be read).
    """
    file = Path(path) / INFO_FILE
    if not file.is_file():
        return False
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(info, dict) and "codebase_version" in info


def open_lerobot(
    path: PathLike,
    backend: ComputeBackend,
    *,
    device: Device | None = None,
    include_features: Sequence[str] | None = None,
    exclude_features: Sequence[str] | None = None,
    decode_video: bool = True,
) -> EpisodeDataset:
    """A local LeRobot dataset (v3.0, v2.1, v2.0) as a read-only dataset of episodes, one row per frame.

    Args:
        path: the dataset directory (holding ``meta/info.json``).
        backend: backend of the values read.
        device: device of the values read.
        include_features: the features to read (LeRobot names); default: all.
        exclude_features: features to leave out.
        decode_video: False leaves every ``video`` feature out (nothing is decoded or checked).

    Returns:
        An :class:`EpisodeDataset` of flat dict rows keyed by feature name (see the module
        docstring), ``episode_ids`` = ``episode_index``, ``fps`` from ``info.json``. Closing it
        closes the files it opened.

    Raises:
        FileNotFoundError: no ``meta/info.json``, no episodes metadata, or a missing mp4 file (names
            the file and the episodes that need it).
        FormatVersionError: a ``codebase_version`` other than v2.0, v2.1, v3.0.
        UnknownNameError: ``include_features`` or ``exclude_features`` names a feature the dataset lacks.
        LeRobotError: metadata that is malformed or disagrees with the data rows or the videos.

    >>> import tempfile
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> from unibatch import NumpyComputeBackend as np_backend
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "meta/episodes/chunk-000").mkdir(parents=True)
    >>> (root / "data/chunk-000").mkdir(parents=True)
    >>> features = {"action": {"dtype": "float32", "shape": [2]}, "episode_index": {"dtype": "int64", "shape": [1]}}
    >>> info = {"codebase_version": "v3.0", "fps": 10, "features": features,
    ...         "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"}
    >>> _ = (root / "meta/info.json").write_text(json.dumps(info))
    >>> pq.write_table(pa.table({"episode_index": [0, 1], "tasks": [["push"], ["pull"]],
    ...     "dataset_from_index": [0, 2], "dataset_to_index": [2, 5],
    ...     "data/chunk_index": [0, 0], "data/file_index": [0, 0]}), root / "meta/episodes/chunk-000/file-000.parquet")
    >>> pq.write_table(pa.table({"action": pa.array([[i, -i] for i in range(5)], pa.list_(pa.float32(), 2)),
    ...     "episode_index": [0, 0, 1, 1, 1]}), root / "data/chunk-000/file-000.parquet")
    >>> dataset = open_lerobot(root, np_backend)
    >>> dataset.episode_lengths.tolist(), dataset.episode_info[1]["tasks"], dataset.get_at(3)["action"].tolist()
    ([2, 3], ['pull'], [3.0, -3.0])
    >>> dataset.close()
    """
    info = read_lerobot_info(path)
    keys = _select_features(info, include_features, exclude_features, decode_video)
    rows = _open_rows(info, keys, backend, device)
    episodes = info.episodes
    return EpisodeDataset(
        rows,
        episodes.lengths.tolist(),
        episode_ids=episodes.ids.tolist(),
        episode_info=[episodes.describe(position) for position in range(len(episodes.ids))],
        fps=info.fps,
    )


def _select_features(
    info: LeRobotInfo, include: Sequence[str] | None, exclude: Sequence[str] | None, decode_video: bool
) -> list[str]:
    """The features to read, in ``info.json`` order."""
    chosen: dict[str, list[str] | None] = {}
    for argument, names in (("include_features", include), ("exclude_features", exclude)):
        listed = None if names is None else ([names] if isinstance(names, str) else list(names))
        unknown = [name for name in listed or [] if name not in info.features]
        if unknown:
            raise UnknownNameError(
                f"{argument} names {unknown}, which {info.root} lacks; its features are {list(info.features)}"
            )
        chosen[argument] = listed
    included, excluded = chosen["include_features"], chosen["exclude_features"] or []
    keys = [key for key in info.features if (included is None or key in included) and key not in excluded]
    if not decode_video:
        keys = [key for key in keys if info.features[key].dtype != "video"]
    if not keys:
        raise LeRobotError(f"no feature of {info.root} is left to read (features {list(info.features)})")
    return keys


def _open_rows(info: LeRobotInfo, keys: list[str], backend: ComputeBackend, device: Device | None) -> LeRobotRows:
    """The parquet storage and frame readers of the selected features, checked against the metadata."""
    from unibatch.storages.parquet import open_parquet_storage

    tables = [key for key in keys if not info.features[key].is_frame]
    storage = open_parquet_storage(
        info.data_directory, backend, device=device, columns=sorted({*tables, "episode_index"})
    )
    owned: list[Any] = [storage]
    try:
        _check_rows(info, storage)
        _check_shapes(info, storage, tables)
        frames: dict[str, FrameReader] = {}
        for key in keys:
            feature = info.features[key]
            if feature.dtype == "video":
                video = VideoFrames(
                    key,
                    info.root,
                    info.episodes,
                    info.fps,
                    feature.frame_shape(),
                    gop_size=feature.gop_size or DEFAULT_GOP,
                )
                owned.append(video)
                video.check_files()
                frames[key] = video
            elif feature.dtype == "image":
                frames[key] = ImageFrames(key, info.root, info.episodes, feature.frame_shape())
                owned.append(frames[key])
        columns = {key: storage.get_column([key]) for key in tables}
        return LeRobotRows(backend, device, info.episodes.total_rows, columns, frames, owned=owned)
    except BaseException:
        for resource in owned:
            resource.close()
        raise


def _check_rows(info: LeRobotInfo, storage: SpaceStorage) -> None:
    """The data rows are the episodes' frames in order: their ``episode_index`` column, row by row."""
    episodes = info.episodes
    total = episodes.total_rows
    if len(storage) != total:
        raise LeRobotError(
            f"{info.data_directory} holds {len(storage)} rows, the episodes metadata {total} "
            f"({len(episodes.ids)} episodes)"
        )
    found = storage.backend.to_numpy(storage.get_column(["episode_index"]).get(slice(0, total)))
    found = np.asarray(found, dtype=np.int64).reshape(-1)
    expected = np.repeat(episodes.ids, episodes.lengths)
    wrong = np.flatnonzero(found != expected)
    if wrong.size:
        row = int(wrong[0])
        raise LeRobotError(
            f"row {row} of {info.data_directory} belongs to episode {int(found[row])}, but the episodes metadata "
            f"puts episode {int(expected[row])} there ({wrong.size} rows disagree)"
        )


def _check_shapes(info: LeRobotInfo, storage: SpaceStorage, keys: list[str]) -> None:
    """Each column's row shape is the one ``info.json`` gives (a scalar column for shape ``[1]``)."""
    space = storage.single_instance_space
    for key in keys:
        leaf, written = space[key], info.features[key].shape  # type: ignore[index]
        if isinstance(leaf, TextSpace):
            continue
        shape = tuple(leaf.shape or ())
        if shape != written and not (shape == () and written == (1,)):
            raise LeRobotError(f"feature {key!r}: the data files hold rows of shape {shape}, info.json says {written}")


class LeRobotRows(BatchBase):
    """Every frame of a LeRobot dataset in ``index`` order: Parquet columns plus decoded camera frames (read-only).

    Args:
        backend: backend of the values read.
        device: device of the values read.
        length: the number of rows.
        tables: one column storage per tabular feature.
        frames: one frame reader per ``image``/``video`` feature.
        owned: what :meth:`close` closes (a :meth:`select` view owns nothing).
    """

    is_mutable = False

    def __init__(
        self,
        backend: ComputeBackend,
        device: Device | None,
        length: int,
        tables: Mapping[str, SpaceStorage],
        frames: Mapping[str, FrameReader],
        *,
        owned: Sequence[Any] = (),
    ) -> None:
        spaces: dict[str, Any] = {key: column.single_instance_space for key, column in tables.items()}
        for key, reader in frames.items():
            spaces[key] = BoxSpace(backend, 0, 255, "uint8", device, shape=reader.shape)
        super().__init__(DictSpace(backend, spaces, device=device))
        self.has_expensive_reads = bool(frames)
        self._length = length
        self._tables = dict(tables)
        self._frames = dict(frames)
        self._owned = list(owned)

    def __len__(self) -> int:
        return self._length

    def select(self, keys: Sequence[str]) -> LeRobotRows:
        """A view reading only ``keys`` (sharing this one's files; closing it closes nothing)."""
        unknown = [key for key in keys if key not in self._tables and key not in self._frames]
        if unknown:
            raise UnknownNameError(
                f"no features {unknown} in these rows; they hold {sorted([*self._tables, *self._frames])}"
            )
        tables = {key: self._tables[key] for key in keys if key in self._tables}
        frames = {key: self._frames[key] for key in keys if key in self._frames}
        return LeRobotRows(self.backend, self.device, self._length, tables, frames)

    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        values = {key: column.get(index) for key, column in self._tables.items()}
        if self._frames:
            single = is_single(index)
            rows = (
                np.asarray([index], dtype=np.int64)
                if single
                else np.asarray(self.backend.to_numpy(index), dtype=np.int64)
            )
            for key, reader in self._frames.items():
                frames = reader.read(rows)
                values[key] = self.backend.from_numpy(frames[0] if single else frames, device=self.device)
        return values, None

    def _read_key(self, key: Sequence[str | int], in_metadata: bool, index: NormalizedIndex) -> Any | None:
        keys = [key] if isinstance(key, (str, int)) else list(key)
        if in_metadata or len(keys) != 1 or keys[0] not in self._tables:
            return None
        return self._tables[str(keys[0])].get(index)

    def close(self) -> None:
        """Close the files this object opened (idempotent; a :meth:`select` view has none)."""
        owned, self._owned = self._owned, []
        for resource in owned:
            resource.close()


# ---------------------------------------------------------------------- delta_timestamps windows
def delta_timestamps_to_offsets(
    delta_timestamps: Mapping[str, Sequence[float]], fps: float, *, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> dict[str, list[int]]:
    """LeRobot ``delta_timestamps`` (seconds from the current frame, per feature) as integer frame offsets.

    Args:
        delta_timestamps: ``{feature: [seconds, ...]}``, e.g. ``{"action": [0.0, 0.1, 0.2]}``.
        fps: frames per second of the dataset.
        tolerance_s: how far (seconds) a value may be from a multiple of ``1 / fps``.

    Returns:
        ``{feature: [frames, ...]}`` in the given order, ``round(seconds * fps)`` each.

    Raises:
        LeRobotError: a value is not within ``tolerance_s`` of a multiple of ``1 / fps`` (all such
            values are listed per feature), or a list is empty or not numbers.

    >>> delta_timestamps_to_offsets({"observation.state": [-0.1, 0.0], "action": [0.0, 0.1, 0.2]}, fps=10)
    {'observation.state': [-1, 0], 'action': [0, 1, 2]}
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not fps > 0:
        raise LeRobotError(f"fps must be a positive number, got {fps!r}")
    offsets, outside = {}, {}
    for key, values in delta_timestamps.items():
        try:
            seconds = np.asarray(list(values), dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise LeRobotError(f"delta_timestamps[{key!r}] must be a list of seconds, got {values!r}") from error
        if seconds.ndim != 1 or not seconds.size or not np.isfinite(seconds).all():
            raise LeRobotError(f"delta_timestamps[{key!r}] must be a non-empty list of finite seconds, got {values!r}")
        frames = np.rint(seconds * fps)
        off = np.abs(seconds - frames / fps) > tolerance_s
        if off.any():
            outside[key] = seconds[off].tolist()
        offsets[key] = [int(frame) for frame in frames]
    if outside:
        raise LeRobotError(
            f"delta_timestamps must be multiples of 1/fps = {1 / fps:.6g} s (fps {fps}, tolerance {tolerance_s} s); "
            f"these are not: {outside}"
        )
    return offsets


class DeltaTimestampsBatch(BatchBase):
    """LeRobot-style samples with ``delta_timestamps`` windows, built from :class:`SliceStackedBatch` views.

    Sample ``i`` holds, for each feature ``k`` of ``delta_timestamps``, the frames
    ``i + offsets[k]`` of ``k`` (``(T_k, ...)``) and ``k + "_is_pad"`` (``bool[T_k]``, True for
    frames outside the episode of frame ``i``, which repeat the episode's edge frame), and every
    other feature of ``dataset`` at frame ``i``. Metadata: ``episode_ids`` of frame ``i``.

    Features sharing the same offsets are read by one ``SliceStackedBatch(source, window,
    get_valid_mask_function=episode-id mask)``, whose window is the sorted offsets plus 0. When
    ``dataset`` reads :class:`LeRobotRows`, each window reads only its own features (no video is
    decoded for an action window); otherwise each window reads whole rows.

    Args:
        dataset: the episodes (e.g. from :func:`open_lerobot`); its rows must be a dict.
        delta_timestamps: ``{feature: [seconds, ...]}`` relative to the current frame.
        fps: frames per second (default: ``dataset.fps``).
        tolerance_s: see :func:`delta_timestamps_to_offsets`.

    >>> from unibatch.testing import InMemoryBatch
    >>> dataset = EpisodeDataset(InMemoryBatch.from_range(5), [2, 3], fps=10)
    >>> windows = DeltaTimestampsBatch(dataset, {"x": [-0.1, 0.0, 0.1]})
    >>> sample = windows.get_at(1)
    >>> sample["x"].tolist(), sample["x_is_pad"].tolist()
    ([0, 1, 1], [False, False, True])
    """

    is_mutable = False

    def __init__(
        self,
        dataset: EpisodeDataset,
        delta_timestamps: Mapping[str, Sequence[float]],
        *,
        fps: float | None = None,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
    ) -> None:
        space = dataset.single_space
        rate = dataset.fps if fps is None else fps
        if rate is None:
            raise LeRobotError("the dataset has no fps; pass fps=...")
        if not isinstance(space, DictSpace):
            raise LeRobotError(f"delta_timestamps windows need dict rows, got {space!r}")
        offsets = delta_timestamps_to_offsets(delta_timestamps, rate, tolerance_s=tolerance_s)
        _check_window_keys(space, offsets)
        self.dataset = dataset
        self.offsets = offsets
        self._groups = _window_groups(dataset, offsets)
        others = [key for key in list(space.keys()) if key not in offsets]
        self._centre = _subset(dataset, others) if others else None
        super().__init__(_window_space(space, offsets), dataset.single_metadata_space)

    def __len__(self) -> int:
        return len(self.dataset)

    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        xp = self.backend.xp
        axis = 0 if is_single(index) else 1
        values: dict[str, Any] = {}
        for stacked, positions in self._groups:
            data, metadata = stacked._get(index, True)
            valid = metadata[VALID_MASK_KEY]  # type: ignore[index]
            for key, picks in positions.items():
                chosen = self.backend.asarray(picks, dtype=self.backend.default_index_dtype, device=self.device)
                values[key] = _take(data[key], chosen, picks, axis)
                values[key + PAD_SUFFIX] = xp.logical_not(xp.take(valid, chosen, axis=axis))
        if self._centre is not None:
            values.update(self._centre._get(index, False)[0])
        metadata = {EPISODE_IDS_KEY: self.dataset._read_key([EPISODE_IDS_KEY], True, index)} if with_metadata else None
        return values, metadata


def _check_window_keys(space: DictSpace, offsets: Mapping[str, list[int]]) -> None:
    names = set(space.keys())
    unknown = [key for key in offsets if key not in names]
    if unknown:
        raise UnknownNameError(f"delta_timestamps names {unknown}, which the rows lack; they hold {list(space.keys())}")
    taken = [key + PAD_SUFFIX for key in offsets if key + PAD_SUFFIX in names]
    if taken:
        raise LeRobotError(f"the rows already hold {taken}, the names of the padding flags")


def _window_groups(
    dataset: EpisodeDataset, offsets: Mapping[str, list[int]]
) -> list[tuple[SliceStackedBatch, dict[str, list[int]]]]:
    """One stacked view per distinct window, and where each of its features' offsets sit in the window."""
    from unibatch.batches import FrameStackedBatch

    keys_by_window: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for key, frames in offsets.items():
        keys_by_window[tuple(sorted({*frames, 0}))].append(key)
    mask = FrameStackedBatch.get_valid_mask_function_with_episodeid_key(EPISODE_IDS_KEY, is_in_metadata=True)
    groups = []
    for window, keys in keys_by_window.items():
        stacked = SliceStackedBatch(_subset(dataset, keys), list(window), get_valid_mask_function=mask)
        groups.append((stacked, {key: [window.index(frame) for frame in offsets[key]] for key in keys}))
    return groups


def _subset(dataset: EpisodeDataset, keys: Sequence[str]) -> BatchBase:
    """``dataset`` reading only ``keys`` when its rows can (LeRobotRows), else ``dataset`` itself."""
    if not isinstance(dataset.rows, LeRobotRows):
        return dataset
    return EpisodeDataset(
        dataset.rows.select(keys),
        dataset.episode_lengths.tolist(),
        episode_ids=dataset.episode_id_values.tolist(),
        episode_info=dataset.episode_info,
        fps=dataset.fps,
    )


def _window_space(space: DictSpace, offsets: Mapping[str, list[int]]) -> DictSpace:
    spaces: dict[str, Any] = dict(space.items())
    for key, frames in offsets.items():
        spaces[key] = batch_space(space[key], len(frames))
        spaces[key + PAD_SUFFIX] = BinarySpace(space.backend, (len(frames),), device=space.device)
    return DictSpace(space.backend, spaces, device=space.device)


def _take(values: Any, chosen: Array, picks: list[int], axis: int) -> Any:
    """``values`` at window positions ``picks`` along ``axis`` (texts are NumPy object arrays)."""
    if isinstance(values, dict):
        return {key: _take(value, chosen, picks, axis) for key, value in values.items()}
    if isinstance(values, np.ndarray) and values.dtype == object:
        return np.take(values, picks, axis=axis)
    from unibatch.backends import get_backend

    return get_backend(values).xp.take(values, chosen, axis=axis)
