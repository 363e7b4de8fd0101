"""``unibatch convert SRC DST --storage NAME``: copy any buffer or imported dataset into a new buffer.

The step data goes into the registered storage ``NAME`` (``memmap``, ``hdf5``, ``zarr``,
``parquet``, ...); ``--key-storage obs/image=video`` (repeatable) keeps some keys in another
storage through a ``DictStorage``, the rest staying in ``NAME``. Rows are copied in chunks of
``--chunk`` rows (one read and one ``extend`` per chunk) with a tqdm progress bar on stderr.

An episodic source (a ``TrajectoryReplayBuffer``, or an imported dataset) becomes a
``TrajectoryReplayBuffer`` with the same episode boundaries: each chunk is extended with its
rows' episode ids, which ``TrajectoryReplayBuffer.extend`` writes as given, so the ids (and a
trajectory's episode data and current episode) are kept; an imported dataset whose episode ids
do not increase is renumbered ``0, 1, ...`` in its order. A plain buffer or file becomes a
``ReplayBuffer``. The capacity is the source's (an imported dataset: its number of rows) unless
``--capacity`` says otherwise.

The new buffer is written next to DST under a temporary name and renamed to DST once complete,
so DST never holds half a conversion. An existing non-empty DST is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unibatch._optional import require
from unibatch.batches import BatchBase
from unibatch.buffers import ReplayBuffer, TrajectoryReplayBuffer
from unibatch.cli import positive_int
from unibatch.cli._open import Episodes, Source, UsageError, open_source, resolve_step_key
from unibatch.errors import MissingDependencyError, UnibatchError
from unibatch.storages import SpaceStorage, storage_class
from unibatch.storages._safe_paths import create_temporary_directory, temporary_name

DEFAULT_CHUNK = 1000
DEFAULT_STORAGE = "memmap"
CAMERA_STORAGES = ("video", "image")
"""Storages that hold only camera frames: episode ids and episode data go to memmap with them."""
GROWABLE = ("growable", "none")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "convert",
        help="copy a buffer or dataset into a new buffer with another storage",
        description="Copy every row of SRC (a unibatch buffer or a dataset in another format) into a new buffer at "
        "DST, keeping episode boundaries, with the step data in the registered storage NAME.",
    )
    parser.add_argument(
        "src", type=Path, metavar="SRC", help="a unibatch buffer directory or a dataset in another format"
    )
    parser.add_argument("dst", type=Path, metavar="DST", help="the new buffer directory (must not exist or be empty)")
    parser.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        metavar="NAME",
        help=f"registered storage of the step data: memmap, hdf5, zarr, parquet, ... (default {DEFAULT_STORAGE})",
    )
    parser.add_argument(
        "--key-storage",
        action="append",
        default=[],
        metavar="KEY=NAME",
        help="store one key in another storage, e.g. obs/image=video (repeatable; uses a DictStorage)",
    )
    parser.add_argument(
        "--chunk",
        type=positive_int,
        default=DEFAULT_CHUNK,
        metavar="N",
        help=f"rows per copy (default {DEFAULT_CHUNK})",
    )
    parser.add_argument(
        "--capacity",
        type=_capacity,
        default=None,
        metavar="N",
        help="capacity of the new buffer, or 'growable' (default: the source's; a dataset's number of rows)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    parser.set_defaults(run=run)


@dataclass(frozen=True)
class Capacity:
    """A capacity from the command line: ``rows`` (None: growable)."""

    rows: int | None


def _capacity(text: str) -> Capacity:
    if text.lower() in GROWABLE:
        return Capacity(None)
    return Capacity(positive_int(text))


@dataclass
class Plan:
    """What to create at DST: storage classes, their arguments, capacities."""

    step_cls: type[SpaceStorage]
    step_kwargs: dict[str, Any]
    aux_cls: type[SpaceStorage]
    label: str
    capacity: int | None
    episode_capacity: int | None = None
    notes: list[str] = field(default_factory=list)


def run(arguments: argparse.Namespace) -> int:
    source_path, target = arguments.src, arguments.dst
    key_storages = _parse_key_storages(arguments.key_storage)
    _storage(arguments.storage)
    _check_target(source_path, target, arguments.overwrite)
    source = open_source(source_path)
    try:
        plan = make_plan(source, arguments.storage, key_storages, arguments.capacity)
        start = time.perf_counter()
        with _staging(target, arguments.overwrite) as staging:
            episodes = copy(source, staging, plan, arguments.chunk, not arguments.no_progress)
        seconds = time.perf_counter() - start
    finally:
        source.close()
    for note in plan.notes:
        print(f"note: {note}")
    rows = len(source.batch)
    rate = rows / seconds if seconds > 0 else float("inf")
    where = f"{rows} rows" + (f" in {episodes} episodes" if episodes is not None else "")
    print(
        f"converted {where} from {source_path} ({source.kind}) to {target} ({plan.label}) "
        f"in {seconds:.2f} s ({rate:,.0f} rows/s)"
    )
    return 0


# ---------------------------------------------------------------------- arguments
def _parse_key_storages(entries: list[str]) -> dict[str, str]:
    parsed = {}
    for entry in entries:
        key, separator, name = entry.partition("=")
        if not separator or not key.strip("/") or not name:
            raise UsageError(f"--key-storage expects KEY=NAME (e.g. obs/image=video), got {entry!r}")
        _storage(name)
        parsed[key] = name
    return parsed


def _storage(name: str) -> type[SpaceStorage]:
    try:
        return storage_class(name)
    except MissingDependencyError:
        raise
    except UnibatchError as error:
        raise UsageError(str(error)) from error


def _check_target(source: Path, target: Path, overwrite: bool) -> None:
    resolved_source, resolved_target = source.resolve(), target.resolve()
    if resolved_target == resolved_source or resolved_source.is_relative_to(resolved_target):
        raise UsageError(f"refusing to write {target}: it holds the source {source}")
    if resolved_target.is_relative_to(resolved_source):
        raise UsageError(f"refusing to write {target} inside the source {source}")
    if target.exists() and not (target.is_dir() and not any(target.iterdir())) and not overwrite:
        raise UsageError(f"{target} exists and is not empty; pass --overwrite to replace it")


@contextmanager
def _staging(target: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary directory next to ``target``, renamed to ``target`` when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = create_temporary_directory(target, "converting")  # a new directory: nothing planted is followed
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replaced = None
    if target.is_dir() and (overwrite or not any(target.iterdir())):
        replaced = temporary_name(target, "replaced")
        os.replace(target, replaced)  # set the old DST aside: a crash now leaves it, renamed, not lost
    elif target.exists() and not target.is_dir():
        target.unlink()
    os.replace(staging, target)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)


# ---------------------------------------------------------------------- plan
def make_plan(source: Source, name: str, key_storages: dict[str, str], capacity: Capacity | None) -> Plan:
    """Storage classes, arguments and capacities of the new buffer."""
    fps = _fps(source)
    step_cls, kwargs = _storage(name), {}
    if key_storages:
        mapping = {"/".join(resolve_step_key(source, key)): value for key, value in key_storages.items()}
        key_kwargs = {key: {"fps": fps} for key, value in mapping.items() if value == "video" and fps is not None}
        kwargs = {"storage_cls_map": {"*": name, **mapping}, "key_kwargs": key_kwargs}
        step_cls = storage_class("dict")
        label = f"dict: {', '.join(f'{k}={v}' for k, v in sorted(mapping.items()))}, *={name}"
    else:
        label = name
        if name == "video" and fps is not None:
            kwargs = {"fps": fps}
    aux_cls = _storage(DEFAULT_STORAGE if name in CAMERA_STORAGES else name)
    return Plan(step_cls, kwargs, aux_cls, label, *_capacities(source, capacity))


def _fps(source: Source) -> int | None:
    return None if source.fps is None or source.fps <= 0 else max(1, min(1000, round(source.fps)))


def _capacities(source: Source, capacity: Capacity | None) -> tuple[int | None, int | None]:
    """``(step capacity, episode-data capacity)`` of the new buffer."""
    batch = source.batch
    episode_capacity = batch.episode_capacity if isinstance(batch, TrajectoryReplayBuffer) else None
    if capacity is not None:
        return capacity.rows, None if capacity.rows is None else episode_capacity
    if source.is_unibatch_buffer and isinstance(batch, (ReplayBuffer, TrajectoryReplayBuffer)):
        return batch.capacity, episode_capacity
    return max(len(batch), 1), None


# ---------------------------------------------------------------------- copy
def copy(source: Source, target: Path, plan: Plan, chunk: int, progress: bool) -> int | None:
    """Copy every row of ``source`` into a new buffer at ``target``; returns the number of episodes (None: plain)."""
    with _progress(len(source.batch), progress) as bar:
        if source.episodes is None:
            _copy_plain(source.steps, target, plan, chunk, bar)
            return None
        return _copy_episodes(source, source.episodes, target, plan, chunk, bar)


def _create_failed(error: Exception) -> UsageError:
    return UsageError(f"cannot create the new buffer: {type(error).__name__}: {error}")


def _copy_plain(rows: BatchBase, target: Path, plan: Plan, chunk: int, bar: Any) -> None:
    try:
        buffer = ReplayBuffer.create(
            plan.step_cls, rows.single_space, cache_path=target, capacity=plan.capacity, **plan.step_kwargs
        )
    except (UnibatchError, ValueError, TypeError) as error:
        raise _create_failed(error) from error
    try:
        for start, stop in _chunks(len(rows), chunk):
            buffer.extend(rows.get_at(slice(start, stop)))
            bar.update(stop - start)
        buffer.flush()
    finally:
        buffer.close()


def _copy_episodes(source: Source, episodes: Episodes, target: Path, plan: Plan, chunk: int, bar: Any) -> int:
    batch = source.batch
    trajectory = batch if isinstance(batch, TrajectoryReplayBuffer) else None
    episode_buffer = None if trajectory is None else trajectory.episode_data_buffer
    episode_space = None if episode_buffer is None else episode_buffer.single_space
    ids = _target_ids(trajectory is not None, episodes, plan)
    try:
        buffer = TrajectoryReplayBuffer.create(
            source.steps.single_space,
            plan.step_cls,
            step_data_capacity=plan.capacity,
            step_episode_id_storage_cls=plan.aux_cls,
            episode_data_instance_space=episode_space,
            episode_data_storage_cls=plan.aux_cls,
            episode_data_capacity=plan.episode_capacity,
            cache_path=target,
            **plan.step_kwargs,
        )
    except (UnibatchError, ValueError, TypeError) as error:
        raise _create_failed(error) from error
    try:
        for start, stop in _chunks(len(batch), chunk):
            step_ids = ids[start:stop]
            buffer.current_episode_id = int(step_ids[-1])
            buffer.extend(_chunk_of(batch, trajectory, start, stop, step_ids))
            bar.update(stop - start)
        if trajectory is not None:
            _copy_unstepped_episode_data(trajectory, buffer, np.unique(ids))
            buffer.current_episode_id = trajectory.current_episode_id
        else:
            buffer.current_episode_id = int(ids[-1]) + 1 if ids.size else 0
        buffer.flush()
    finally:
        buffer.close()
    return episodes.count


def _chunk_of(
    batch: BatchBase, trajectory: TrajectoryReplayBuffer | None, start: int, stop: int, ids: np.ndarray
) -> dict[str, Any]:
    """``{"step_data", "episode_ids"[, "episode_data"]}`` of rows ``[start, stop)`` (one read)."""
    if trajectory is None:
        return {"step_data": batch.get_at(slice(start, stop)), "episode_ids": ids}
    rows = trajectory.get_at(slice(start, stop))
    return {"episode_ids": ids, **rows}


def _target_ids(from_trajectory: bool, episodes: Episodes, plan: Plan) -> np.ndarray:
    """The episode id of every row in the new buffer (``int64[N]``): the source's, unless they do not increase."""
    ids = episodes.ids
    increasing = ids.size == 0 or (ids.min() >= 0 and bool(np.all(np.diff(ids) > 0)))
    if from_trajectory or increasing:
        return episodes.row_ids()
    plan.notes.append(f"episode ids renumbered 0 to {ids.size - 1}: the source's ids do not increase")
    return np.repeat(np.arange(ids.size, dtype=np.int64), episodes.lengths)


def _copy_unstepped_episode_data(
    source: TrajectoryReplayBuffer, target: TrajectoryReplayBuffer, copied: np.ndarray
) -> None:
    """Episode data of episodes without steps (e.g. set for the current episode before its first step)."""
    table = source.episode_id_to_index_map
    if not table or source.episode_data_buffer is None:
        return
    left = sorted(set(table) - {int(i) for i in copied})
    if left:
        slots = np.asarray([table[i] for i in left], dtype=np.int64)
        target.set_episode_data_at(np.asarray(left, dtype=np.int64), source.episode_data_buffer.get_at(slots))


def _chunks(total: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, chunk):
        yield start, min(start + chunk, total)


# ---------------------------------------------------------------------- progress
class _NoBar:
    def update(self, count: int) -> None:
        pass


@contextmanager
def _progress(total: int, wanted: bool) -> Iterator[Any]:
    """A tqdm bar on stderr counting rows (and rows/s), or a silent stand-in."""
    if not wanted:
        yield _NoBar()
        return
    try:
        tqdm = require("tqdm", "cli").tqdm
    except MissingDependencyError as error:
        print(f"no progress bar: {error}", file=sys.stderr)
        yield _NoBar()
        return
    bar = tqdm(total=total, unit="rows", unit_scale=True, desc="convert", file=sys.stderr, dynamic_ncols=True)
    try:
        yield bar
    finally:
        with suppress(Exception):
            bar.close()
