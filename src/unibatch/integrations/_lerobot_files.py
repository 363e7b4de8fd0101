"""The files of a LeRobot dataset, read without the lerobot package: metadata, and camera frames.

:func:`read_lerobot_info` parses ``meta/info.json``, the episodes metadata (v3.0: the
``meta/episodes/chunk-XXX/file-XXX.parquet`` files; v2.0/v2.1: ``meta/episodes.jsonl``) and the
tasks (``meta/tasks.parquet`` / ``meta/tasks.jsonl``) into one :class:`LeRobotInfo`, with the
episodes as arrays in row order and the data and video file of every episode resolved from the
path templates.

:class:`VideoFrames` and :class:`ImageFrames` turn global row numbers into decoded ``(H, W, C)``
uint8 frames: from the mp4 files of a ``video`` feature, or from the encoded images stored in the
data parquet files for an ``image`` feature. Both read each distinct frame of a request once,
grouped by file, and keep a small per-process cache that a forked child does not reuse.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from unibatch._optional import require
from unibatch.errors import FormatVersionError, UnibatchError
from unibatch.integrations.dataset_ids import existing_path_or_id
from unibatch.storages._safe_paths import check_relative

INFO_FILE = Path("meta") / "info.json"
SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
V2_PATH_TEMPLATES = {
    "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
    "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
}
"""The file layout of LeRobot v2.x, for ``info.json`` files of older v2.x writers that do not name it."""
FRAME_DTYPES = ("video", "image")
V3_EPISODE_COLUMNS = ("episode_index", "dataset_from_index", "dataset_to_index", "data/chunk_index", "data/file_index")
V3_VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp")


class LeRobotError(UnibatchError, ValueError):
    """A LeRobot dataset (or a LeRobot-style argument) is malformed or inconsistent; the message says where."""


@dataclass(frozen=True)
class Feature:
    """One entry of ``info.json`` ``features``.

    Attributes:
        name: the feature name (``"observation.state"``, ``"observation.images.top"``).
        dtype: LeRobot's dtype name (``"float32"``, ``"int64"``, ``"bool"``, ``"string"``, ``"image"``, ``"video"``).
        shape: the shape written in ``info.json`` (scalars are written ``[1]``).
        names: the axis or element names, as written (a list, a dict, or None).
        details: the feature's ``info`` object (video features: ``video.codec``, ``video.g``, ...).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    names: Any = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def gop_size(self) -> int | None:
        """The keyframe interval recorded for a video feature (``info["video.g"]``), if any."""
        value = self.details.get("video.g")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    @property
    def is_frame(self) -> bool:
        """Whether the values are camera frames (``image`` in the data files, or ``video`` in mp4 files)."""
        return self.dtype in FRAME_DTYPES

    def frame_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of a camera feature, whichever axis order ``info.json`` uses.

        Raises:
            LeRobotError: the shape is not 3-D with 1 or 3 channels first or last.
        """
        shape, names = self.shape, self.names
        channels_first = isinstance(names, list) and len(names) == 3 and str(names[0]).startswith("channel")
        if len(shape) == 3 and channels_first and shape[0] in (1, 3):
            return shape[1], shape[2], shape[0]
        if len(shape) == 3 and shape[2] in (1, 3):
            return shape[0], shape[1], shape[2]
        if len(shape) == 3 and shape[0] in (1, 3):
            return shape[1], shape[2], shape[0]
        raise LeRobotError(
            f"feature {self.name!r} ({self.dtype}): expected a shape (H, W, C) or (C, H, W) with C in (1, 3), "
            f"got {list(shape)} with names {names}"
        )


@dataclass(frozen=True)
class VideoSpans:
    """Where each episode's frames of one video key are.

    Attributes:
        files: per episode, the mp4 path relative to the dataset root.
        from_timestamps: ``float64[E]``, the time in its file of each episode's first frame (seconds).
    """

    files: list[str]
    from_timestamps: np.ndarray


@dataclass(frozen=True)
class EpisodeTable:
    """The episodes in row order (arrays ``[E]``); episode ``i`` holds rows ``starts[i] : starts[i] + lengths[i]``.

    Attributes:
        ids: ``int64``, LeRobot's ``episode_index``.
        lengths: ``int64``, frames per episode.
        starts: ``int64``, the global row (``index``) of each episode's first frame.
        tasks: the task strings of each episode.
        data_files: per episode, the data parquet path relative to the dataset root.
        videos: per video key, where the frames are.
    """

    ids: np.ndarray
    lengths: np.ndarray
    starts: np.ndarray
    tasks: list[list[str]]
    data_files: list[str]
    videos: dict[str, VideoSpans] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return int(self.lengths.sum())

    def describe(self, position: int) -> dict[str, Any]:
        """The ``episode_info`` entry of the episode at ``position``."""
        start, length = int(self.starts[position]), int(self.lengths[position])
        return {
            "episode_index": int(self.ids[position]),
            "length": length,
            "tasks": list(self.tasks[position]),
            "dataset_from_index": start,
            "dataset_to_index": start + length,
        }


@dataclass(frozen=True)
class LeRobotInfo:
    """A LeRobot dataset's metadata (``meta/``), parsed.

    Attributes:
        root: the dataset directory.
        codebase_version: ``"v2.0"``, ``"v2.1"`` or ``"v3.0"``.
        fps: frames per second of every feature.
        features: every feature of ``info.json``, by name.
        episodes: the episodes in row order, with their files.
        tasks: ``task_index -> task`` from the tasks file (empty when there is none).
        raw: ``info.json`` as parsed.
    """

    root: Path
    codebase_version: str
    fps: float
    features: dict[str, Feature]
    episodes: EpisodeTable
    tasks: dict[int, str]
    raw: dict[str, Any]

    @property
    def video_keys(self) -> list[str]:
        return [name for name, feature in self.features.items() if feature.dtype == "video"]

    @property
    def image_keys(self) -> list[str]:
        return [name for name, feature in self.features.items() if feature.dtype == "image"]

    @property
    def table_keys(self) -> list[str]:
        """Features stored as columns of the data parquet files (every one but video and image)."""
        return [name for name, feature in self.features.items() if not feature.is_frame]

    @property
    def data_directory(self) -> Path:
        """The directory the ``data_path`` template lies in (``root/data``): its parquet files hold every row."""
        directory = template_directory(str(self.raw["data_path"]))
        return self.root / inside_dataset(directory, self.root) if directory else self.root


# ---------------------------------------------------------------------- info.json
def read_info_json(root: Path) -> dict[str, Any]:
    """``meta/info.json`` of a supported LeRobot version, with its required fields checked.

    Raises:
        FileNotFoundError: there is no ``meta/info.json``.
        FormatVersionError: ``codebase_version`` is missing or not one of :data:`SUPPORTED_VERSIONS`.
        LeRobotError: the file is not a JSON object, or ``fps``, ``features`` or ``data_path`` is malformed.

    A v2.x file without ``data_path`` / ``video_path`` gets LeRobot v2.x's templates
    (:data:`V2_PATH_TEMPLATES`), as LeRobot itself assumes; a v3.0 file must name its layout.
    """
    path = root / INFO_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a LeRobot dataset: it has no {INFO_FILE.as_posix()}")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LeRobotError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(info, dict):
        raise LeRobotError(f"{path} holds a {type(info).__name__}, expected a JSON object")
    version = info.get("codebase_version")
    if version not in SUPPORTED_VERSIONS:
        raise FormatVersionError(
            f"{path}: codebase_version {version!r} is not supported; "
            f"unibatch reads LeRobot {', '.join(SUPPORTED_VERSIONS)}"
        )
    if version != "v3.0":  # older v2.x writers leave the layout out: LeRobot's own v2.x templates
        info = {**info, **{key: template for key, template in V2_PATH_TEMPLATES.items() if info.get(key) is None}}
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not np.isfinite(fps) or fps <= 0:
        raise LeRobotError(f"{path}: 'fps' must be a positive number, got {fps!r}")
    if not isinstance(info.get("data_path"), str):
        raise LeRobotError(f"{path}: 'data_path' must be a path template, got {info.get('data_path')!r}")
    if not isinstance(info.get("features"), dict) or not info["features"]:
        raise LeRobotError(f"{path}: 'features' must be a non-empty object, got {info.get('features')!r}")
    return info


def parse_features(features: Mapping[str, Any], path: Path) -> dict[str, Feature]:
    """The ``features`` object as :class:`Feature` s; raises :class:`LeRobotError` naming a malformed one."""
    parsed = {}
    for name, spec in features.items():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("dtype"), str) or not isinstance(shape, list):
            raise LeRobotError(f"{path}: feature {name!r} needs a 'dtype' string and a 'shape' list, got {spec!r}")
        if not all(isinstance(size, int) and size >= 0 for size in shape):
            raise LeRobotError(f"{path}: feature {name!r} has shape {shape}; expected non-negative integers")
        details: dict[str, Any] = spec["info"] if isinstance(spec.get("info"), dict) else {}
        parsed[name] = Feature(name, spec["dtype"], tuple(shape), spec.get("names"), details)
    return parsed


def template_directory(template: str) -> str:
    """The fixed directory a path template starts with: ``"data"`` for ``"data/chunk-{chunk_index:03d}/..."``."""
    fixed = template.split("{", 1)[0]
    return fixed.rsplit("/", 1)[0] if "/" in fixed else ""


def inside_dataset(relative: str, root: Path) -> PurePosixPath:
    """A path of ``meta/info.json`` (filled template) when it is relative and has no ``..`` part.

    Only the text is checked: a Hugging Face hub cache keeps the files as symlinks to blobs
    outside the dataset directory, which must keep working (the importer only reads).

    Raises:
        UnsafePathError: the path is absolute or leaves the dataset directory.
    """
    return check_relative(relative, source=root / INFO_FILE)


def fill_template(template: str, what: str, **values: Any) -> str:
    """``template.format(**values)``, or :class:`LeRobotError` naming the placeholder that has no value."""
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as error:
        raise LeRobotError(
            f"the {what} template {template!r} cannot be filled with {sorted(values)}: {error!r}"
        ) from error


# ---------------------------------------------------------------------- the whole of meta/
def read_lerobot_info(path: str | os.PathLike[str]) -> LeRobotInfo:
    """Parse the metadata of the LeRobot dataset at ``path`` (its root directory).

    Raises:
        FileNotFoundError: ``meta/info.json`` or the episodes metadata is missing.
        FormatVersionError: an unsupported ``codebase_version``.
        LeRobotError: malformed metadata, or episodes that do not tile the rows ``0 .. total`` in order.
    """
    root = existing_path_or_id(Path(path))
    info = read_info_json(root)
    features = parse_features(info["features"], root / INFO_FILE)
    video_keys = [name for name, feature in features.items() if feature.dtype == "video"]
    if info["codebase_version"] == "v3.0":
        episodes = _v3_episodes(root, info, video_keys)
        tasks = _v3_tasks(root)
    else:
        episodes = _v2_episodes(root, info, video_keys)
        tasks = _v2_tasks(root)
    return LeRobotInfo(root, info["codebase_version"], float(info["fps"]), features, episodes, tasks, info)


def _pq() -> Any:
    return require("pyarrow.parquet", "parquet")


def _v3_episodes(root: Path, info: dict[str, Any], video_keys: Sequence[str]) -> EpisodeTable:
    """Episodes from ``meta/episodes/**/*.parquet`` (one row per episode), sorted by first row."""
    directory = root / "meta" / "episodes"
    files = sorted(p for p in directory.rglob("*.parquet") if not p.name.startswith(".")) if directory.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"{directory} holds no episodes parquet file (meta/episodes/chunk-XXX/file-XXX.parquet)"
        )
    video_columns = [f"videos/{key}/{name}" for key in video_keys for name in V3_VIDEO_COLUMNS]
    columns = _read_columns(files, [*V3_EPISODE_COLUMNS, *video_columns], optional=("length", "tasks"))
    order = np.argsort(columns["dataset_from_index"], kind="stable")
    picked = {name: [values[i] for i in order] for name, values in columns.items()}
    starts = np.asarray(picked["dataset_from_index"], dtype=np.int64)
    lengths = np.asarray(picked["dataset_to_index"], dtype=np.int64) - starts
    ids = np.asarray(picked["episode_index"], dtype=np.int64)
    if "length" in picked:
        _check_lengths(ids, lengths, np.asarray(picked["length"], dtype=np.int64), directory)
    data_files = [
        fill_template(info["data_path"], "data_path", chunk_index=int(c), file_index=int(f))
        for c, f in zip(picked["data/chunk_index"], picked["data/file_index"], strict=True)
    ]
    videos = {}
    for key in video_keys:
        template = _video_template(info)
        files_of_key = [
            fill_template(template, "video_path", video_key=key, chunk_index=int(c), file_index=int(f))
            for c, f in zip(picked[f"videos/{key}/chunk_index"], picked[f"videos/{key}/file_index"], strict=True)
        ]
        videos[key] = VideoSpans(files_of_key, np.asarray(picked[f"videos/{key}/from_timestamp"], dtype=np.float64))
    tasks = [list(t or []) for t in picked["tasks"]] if "tasks" in picked else [[] for _ in range(len(ids))]
    table = EpisodeTable(ids, lengths, starts, tasks, data_files, videos)
    _check_tiling(table, directory)
    return table


def _read_columns(files: Sequence[Path], required: Sequence[str], optional: Sequence[str]) -> dict[str, list[Any]]:
    """The ``required`` (and present ``optional``) columns of every file, concatenated as Python lists."""
    pq = _pq()
    merged: dict[str, list[Any]] = {}
    for file in files:
        names = pq.read_schema(file).names
        missing = [name for name in required if name not in names]
        if missing:
            raise LeRobotError(f"episodes metadata {file} lacks the columns {missing}")
        wanted = [*required, *(name for name in optional if name in names)]
        table = pq.read_table(file, columns=wanted)
        for name in wanted:
            merged.setdefault(name, []).extend(table.column(name).to_pylist())
    if any(len(values) != len(merged[required[0]]) for values in merged.values()):
        present = sorted(name for name in optional if name in merged)
        raise LeRobotError(f"the episodes metadata files {[str(f) for f in files]} disagree on the columns {present}")
    return merged


def _video_template(info: dict[str, Any]) -> str:
    template = info.get("video_path")
    if not isinstance(template, str):
        raise LeRobotError(f"info.json has video features but 'video_path' is {template!r}, not a path template")
    return template


def _v2_episodes(root: Path, info: dict[str, Any], video_keys: Sequence[str]) -> EpisodeTable:
    """Episodes from ``meta/episodes.jsonl`` (one object per line), sorted by ``episode_index``."""
    path = root / "meta" / "episodes.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{root} ({info['codebase_version']}) has no meta/episodes.jsonl")
    entries = _jsonl(path)
    for line, entry in enumerate(entries, start=1):
        if not isinstance(entry.get("episode_index"), int) or not isinstance(entry.get("length"), int):
            raise LeRobotError(f"{path} line {line}: expected integer 'episode_index' and 'length', got {entry!r}")
    entries.sort(key=lambda entry: entry["episode_index"])
    ids = np.asarray([entry["episode_index"] for entry in entries], dtype=np.int64)
    lengths = np.asarray([entry["length"] for entry in entries], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(ids) else ids
    chunks_size = int(info.get("chunks_size") or 1000)
    places = [{"episode_chunk": int(i) // chunks_size, "episode_index": int(i)} for i in ids]
    data_files = [fill_template(info["data_path"], "data_path", **place) for place in places]
    videos = {}
    for key in video_keys:
        template = _video_template(info)
        files = [fill_template(template, "video_path", video_key=key, **place) for place in places]
        videos[key] = VideoSpans(files, np.zeros(len(ids)))
    tasks = [list(entry.get("tasks") or []) for entry in entries]
    table = EpisodeTable(ids, lengths, starts, tasks, data_files, videos)
    _check_tiling(table, path)
    return table


def _jsonl(path: Path) -> list[dict[str, Any]]:
    entries = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as error:
            raise LeRobotError(f"{path} line {line} is not JSON: {error}") from error
        if not isinstance(entry, dict):
            raise LeRobotError(f"{path} line {line} holds a {type(entry).__name__}, expected an object")
        entries.append(entry)
    return entries


def _check_lengths(ids: np.ndarray, from_rows: np.ndarray, lengths: np.ndarray, where: Path) -> None:
    wrong = np.flatnonzero(from_rows != lengths)
    if wrong.size:
        first = int(wrong[0])
        raise LeRobotError(
            f"{where}: episode {int(ids[first])} has length {int(lengths[first])} but spans "
            f"{int(from_rows[first])} rows (dataset_to_index - dataset_from_index)"
        )


def _check_tiling(table: EpisodeTable, where: Path) -> None:
    """Episodes must be distinct, non-empty and cover the rows ``0 .. total`` one after another."""
    if not len(table.ids):
        raise LeRobotError(f"{where}: the dataset has no episodes")
    unique, counts = np.unique(table.ids, return_counts=True)
    if (counts > 1).any():
        raise LeRobotError(f"{where}: episode_index {unique[counts > 1].tolist()} appears more than once")
    if (table.lengths <= 0).any():
        raise LeRobotError(f"{where}: episodes {table.ids[table.lengths <= 0].tolist()} have no frames")
    expected = np.concatenate([[0], np.cumsum(table.lengths)[:-1]])
    gaps = np.flatnonzero(table.starts != expected)
    if gaps.size:
        first = int(gaps[0])
        raise LeRobotError(
            f"{where}: episode {int(table.ids[first])} starts at row {int(table.starts[first])}, expected "
            f"{int(expected[first])} (the episodes must cover the data rows one after another)"
        )


def _v3_tasks(root: Path) -> dict[int, str]:
    """``meta/tasks.parquet``: a ``task_index`` column and the task strings (column or pandas index ``task``)."""
    path = root / "meta" / "tasks.parquet"
    if not path.is_file():
        return {}
    table = _pq().read_table(path)
    names = table.column_names
    text = "task" if "task" in names else next((n for n in names if n != "task_index"), None)
    if "task_index" not in names or text is None:
        raise LeRobotError(f"{path}: expected the columns 'task_index' and 'task', got {names}")
    indices, tasks = table.column("task_index").to_pylist(), table.column(text).to_pylist()
    return {int(i): str(t) for i, t in zip(indices, tasks, strict=True)}


def _v2_tasks(root: Path) -> dict[int, str]:
    path = root / "meta" / "tasks.jsonl"
    if not path.is_file():
        return {}
    return {int(entry["task_index"]): str(entry["task"]) for entry in _jsonl(path) if "task_index" in entry}


# ---------------------------------------------------------------------- camera frames
DEFAULT_GOP = 2
"""Keyframe interval assumed when ``info.json`` records none (LeRobot encodes with ``g=2``); it only
decides when decoding on beats seeking back, never which frame is returned."""
FILE_SHIFT = 1 << 40
"""``file * FILE_SHIFT + frame`` numbers a frame of a feature uniquely (files hold fewer frames)."""


def _av() -> Any:
    return require("av", "video")


def _runs(labels: Sequence[str], starts: np.ndarray, what: str) -> tuple[list[str], np.ndarray]:
    """The distinct files of consecutive episodes and the first row of each; a file must hold consecutive episodes."""
    files: list[str] = []
    first_rows = []
    for position, label in enumerate(labels):
        if files and files[-1] == label:
            continue
        if label in files:
            raise LeRobotError(f"{what} {label} holds episodes that are not consecutive; expected one run per file")
        files.append(label)
        first_rows.append(int(starts[position]))
    return files, np.asarray(first_rows, dtype=np.int64)


class VideoFrames:
    """The frames of one ``video`` feature as ``(n, H, W, C)`` uint8, by global row.

    Row ``r`` of episode ``e`` is frame ``round(from_timestamp[e] * fps) + (r - start[e])`` of the
    episode's mp4 file, where a decoded frame's number is ``round(pts * time_base * fps)`` (LeRobot
    looks frames up by the timestamp ``from_timestamp + timestamp`` the same way). Decoding goes
    through :class:`~unibatch.storages._video_codec.DecoderCache`: single-threaded, keyframe-aware
    seeks, files kept open per process and reopened after a fork.

    Args:
        key: the feature name.
        root: the dataset directory.
        table: the episodes.
        fps: frames per second (an integer: frame numbers come from timestamps).
        shape: ``(H, W, C)`` with C in (1, 3).
        gop_size: the keyframe interval to assume (a hint for seeking, see :data:`DEFAULT_GOP`).
        open_files: files kept open at once by a process.
    """

    def __init__(
        self,
        key: str,
        root: Path,
        table: EpisodeTable,
        fps: float,
        shape: tuple[int, int, int],
        *,
        gop_size: int = DEFAULT_GOP,
        open_files: int = 4,
    ) -> None:
        from unibatch.storages._video_codec import CODECS, EncoderSettings, FrameFormat

        if float(fps) != int(fps):
            raise LeRobotError(f"video feature {key!r}: frames are found by timestamp, which needs an integer fps")
        spans = table.videos[key]
        names = sorted(set(spans.files))
        number = {name: position for position, name in enumerate(names)}
        self.key = key
        self.shape = shape
        self.paths = [root / inside_dataset(name, root) for name in names]
        self._file_of_episode = np.asarray([number[name] for name in spans.files], dtype=np.int64)
        self._first_frame = np.rint(spans.from_timestamps * fps).astype(np.int64)
        self._starts = table.starts
        self._episode_ids = table.ids
        self._spans = spans
        self._format = FrameFormat("HWC", shape, np.dtype(np.uint8))
        # The reader only uses the keyframe interval and the frame rate of these settings.
        self._settings = EncoderSettings(CODECS["libx264"], "yuv420p", None, None, max(int(gop_size), 1), int(fps))
        self._open_files = open_files
        self._decoders = self._new_cache()

    def _new_cache(self) -> Any:
        from unibatch.storages._video_codec import DecoderCache

        return DecoderCache(self._open_files, threads=1)

    def check_files(self) -> None:
        """Every mp4 file exists, and the first has frames of the feature's size.

        Raises:
            FileNotFoundError: names the missing files and the episodes that need them.
            LeRobotError: the frames are not ``H x W`` or the file has no video stream.
        """
        missing = [path for path in self.paths if not path.is_file()]
        if missing:
            number = {path: position for position, path in enumerate(self.paths)}
            episodes = self._episode_ids[np.isin(self._file_of_episode, [number[p] for p in missing])]
            raise FileNotFoundError(
                f"video feature {self.key!r}: {len(missing)} file(s) missing, e.g. {missing[0]} "
                f"(needed by episodes {episodes[:10].tolist()})"
            )
        height, width = self._probe(self.paths[0])
        if (height, width) != self.shape[:2]:
            raise LeRobotError(
                f"video feature {self.key!r}: {self.paths[0]} holds {height}x{width} frames, "
                f"info.json says {self.shape[0]}x{self.shape[1]}"
            )

    def _probe(self, path: Path) -> tuple[int, int]:
        av = _av()
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise LeRobotError(f"video feature {self.key!r}: {path} has no video stream")
                context = container.streams.video[0].codec_context
                return int(context.height), int(context.width)
        except av.FFmpegError as error:
            raise LeRobotError(f"video feature {self.key!r}: {path} is not a readable video: {error}") from error

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Frames of the global rows ``rows`` (``int64[n]``, in ``[0, total)``): ``uint8[n, H, W, C]``."""
        if not len(rows):
            return np.zeros((0, *self.shape), np.uint8)
        episodes = np.searchsorted(self._starts, rows, side="right") - 1
        frames = self._first_frame[episodes] + rows - self._starts[episodes]
        unique, inverse = np.unique(self._file_of_episode[episodes] * FILE_SHIFT + frames, return_inverse=True)
        files, numbers = np.divmod(unique, FILE_SHIFT)
        cuts = np.flatnonzero(np.diff(files)) + 1
        requests = [
            (self.paths[int(files[group[0]])], numbers[group]) for group in np.split(np.arange(len(unique)), cuts)
        ]
        decoded = self._decode(requests)
        return self._format.from_av(np.concatenate(decoded))[inverse.reshape(-1)]

    def _decode(self, requests: list[tuple[Path, np.ndarray]]) -> list[np.ndarray]:
        from unibatch.storages._video_codec import CorruptVideoError

        try:
            return list(self._decoders.read(requests, self._settings, self._format))
        except CorruptVideoError as error:
            raise CorruptVideoError(f"video feature {self.key!r}: {error}") from error
        except FileNotFoundError as error:
            raise FileNotFoundError(f"video feature {self.key!r}: {error}") from error

    def close(self) -> None:
        self._decoders.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_decoders"] = None  # open files stay with their process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._decoders = self._new_cache()


class ImageFrames:
    """The frames of one ``image`` feature (encoded PNG/JPEG bytes in the data parquet files), by global row.

    The column holds Hugging Face ``Image`` values, ``struct<bytes: binary, path: string>``. Each
    distinct requested row is decoded once with Pillow; the encoded column of the last few data
    files read stays in memory.

    Args:
        key: the feature name.
        root: the dataset directory.
        table: the episodes (their data files and first rows).
        shape: ``(H, W, C)`` with C in (1, 3).
        cached_files: data files whose column is kept.
    """

    def __init__(
        self, key: str, root: Path, table: EpisodeTable, shape: tuple[int, int, int], *, cached_files: int = 2
    ) -> None:
        names, self._file_starts = _runs(table.data_files, table.starts, "data file")
        self.key = key
        self.shape = shape
        self.paths = [root / inside_dataset(name, root) for name in names]
        self._file_rows = np.diff(np.append(self._file_starts, table.total_rows))
        self._cached_files = cached_files
        self._columns: dict[int, Any] = {}

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Frames of the global rows ``rows`` (``int64[n]``, in ``[0, total)``): ``uint8[n, H, W, C]``."""
        unique, inverse = np.unique(rows, return_inverse=True)
        decoded = np.empty((len(unique), *self.shape), np.uint8)
        files = np.searchsorted(self._file_starts, unique, side="right") - 1
        for file in np.unique(files).tolist():
            where = np.flatnonzero(files == file)
            column = self._column(file)
            local = unique[where] - self._file_starts[file]
            for position, value in zip(where.tolist(), column.take(local).to_pylist(), strict=True):
                decoded[position] = self._decode(value, int(unique[position]))
        return decoded[inverse.reshape(-1)]

    def _column(self, file: int) -> Any:
        """The encoded images of one data file (a binary array), read once and kept among the last few."""
        column = self._columns.pop(file, None)
        if column is None:
            table = _pq().read_table(self.paths[file], columns=[self.key], memory_map=True)
            if table.num_rows != int(self._file_rows[file]):
                raise LeRobotError(
                    f"{self.paths[file]} holds {table.num_rows} rows, the episodes metadata gives it "
                    f"{int(self._file_rows[file])}"
                )
            column = table.column(self.key).combine_chunks()
            if require("pyarrow", "parquet").types.is_struct(column.type):
                column = column.field("bytes")
        self._columns[file] = column
        while len(self._columns) > self._cached_files:
            self._columns.pop(next(iter(self._columns)))
        return column

    def _decode(self, payload: bytes | None, row: int) -> np.ndarray:
        if payload is None:
            raise LeRobotError(f"image feature {self.key!r}, row {row}: the image bytes are missing (null)")
        image = require("PIL.Image", "image")
        with image.open(io.BytesIO(payload)) as opened:
            array = np.asarray(opened.convert("RGB" if self.shape[2] == 3 else "L"))
        array = array.reshape((*array.shape[:2], -1))
        if array.shape != self.shape:
            raise LeRobotError(
                f"image feature {self.key!r}, row {row}: decoded an image of shape {array.shape}, "
                f"info.json says {self.shape}"
            )
        return array

    def close(self) -> None:
        self._columns = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_columns": {}}
