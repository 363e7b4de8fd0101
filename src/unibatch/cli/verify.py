"""``unibatch verify PATH``: read every row and episode, and check them against the metadata.

Checks, in order:

1. the metadata of a unibatch buffer as written on disk (before anything trusts it):
   ``format_version``, ``type``, ``count <= capacity``, ``0 <= offset < capacity``, registered
   storage names, storage files present, parts of a trajectory buffer with equal capacities;
2. the buffer or dataset opens;
3. the stored pieces of every row that a read cannot tell from zeros (a lost Zarr chunk);
   every row, read in chunks of ``--chunk`` rows (one read per chunk, vectorised checks): the
   structure, shapes and dtypes of the space, every value inside its bounds (NaN is outside),
   booleans stored as 0 or 1;
4. episodes: a trajectory buffer's episode ids never decrease in logical order and never exceed
   the current episode id, every episode with steps has an entry in the episode-data table, whose
   slots are distinct and inside the episode-data buffer; an imported dataset reports for every
   row the episode id its episode table says.

Exit code 0 with a one-line summary, 1 with one ``PROBLEM`` line per inconsistency (which part,
key, row and episode; expected against got), 2 when PATH is not something unibatch reads.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from unibatch.batches import BatchBase
from unibatch.buffers import ReplayBuffer, TrajectoryReplayBuffer
from unibatch.buffers._metadata import FORMAT_VERSION, METADATA_FILE
from unibatch.buffers.ring import physical_slots
from unibatch.cli import positive_int
from unibatch.cli._open import Episodes, Source, SourceOpenError, open_source, unibatch_buffer_type
from unibatch.errors import UnibatchError, UnsafePathError
from unibatch.integrations.episodes import EpisodeDataset
from unibatch.spaces import BinarySpace, BoxSpace, Space, TextSpace, check_data, json_to_space
from unibatch.spaces._tree import walk
from unibatch.storages import storage_class
from unibatch.storages._atomic import read_json
from unibatch.storages._safe_paths import resolve_inside

DEFAULT_CHUNK = 1024
FAILED = 1
PARTS = ("step_data", "step_episode_ids", "episode_data")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "verify",
        help="read every row and episode and check them against the metadata (exit 1 on any problem)",
        description="Read every row and episode of PATH and check the metadata, the values (inside the space) "
        "and the episode table. Exit code 0 when consistent, 1 with a report of every problem, 2 when PATH "
        "cannot be read.",
    )
    parser.add_argument(
        "path", type=Path, metavar="PATH", help="a unibatch buffer directory or a dataset in another format"
    )
    parser.add_argument(
        "--chunk",
        type=positive_int,
        default=DEFAULT_CHUNK,
        metavar="N",
        help=f"rows per read (default {DEFAULT_CHUNK})",
    )
    parser.set_defaults(run=run)


@dataclass
class Report:
    """The problems found so far, each a line naming where and what (expected against got)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows_checked: int = 0

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}" if where else message)


def run(arguments: argparse.Namespace) -> int:
    path: Path = arguments.path
    start = time.perf_counter()
    report = Report()
    kind = unibatch_buffer_type(path)
    if kind is None and (path / METADATA_FILE).is_file() and not _is_json(path / METADATA_FILE):
        report.add(METADATA_FILE, "is not valid JSON")
        return _finish(path, "unibatch buffer", report, "", start)
    if kind is not None:
        check_buffer_metadata(path, kind, report)
        if report.problems:
            report.notes.append("rows not read: the metadata above must be repaired first")
            return _finish(path, kind, report, "", start)
    try:
        source = open_source(path)
    except SourceOpenError as error:
        report.add("open", str(error))
        return _finish(path, error.kind, report, "", start)
    try:
        check_rows(source, report, arguments.chunk)
        episodes = "" if source.episodes is None else f" in {source.episodes.count} episodes"
        summary = f"{len(source.batch)} rows{episodes}, every value inside the space ({report.rows_checked} rows read)"
    finally:
        source.close()
    return _finish(path, source.kind, report, summary, start)


def _finish(path: Path, kind: str, report: Report, summary: str, start: float) -> int:
    seconds = time.perf_counter() - start
    if not report.problems:
        print(f"OK: {path} ({kind}) is consistent: {summary} ({seconds:.2f} s)")
        return 0
    for problem in report.problems:
        print(f"PROBLEM {problem}")
    for note in report.notes:
        print(f"NOTE {note}")
    count = len(report.problems)
    print(f"FAILED: {count} problem{'s' if count != 1 else ''} in {path} ({kind}; {seconds:.2f} s)")
    return FAILED


def _is_json(path: Path) -> bool:
    try:
        read_json(path)
    except (OSError, UnibatchError):
        return False
    return True


# ---------------------------------------------------------------------- metadata on disk
def check_buffer_metadata(path: Path, kind: str, report: Report) -> None:
    """Check the ``metadata.json`` files of a buffer as written, before opening it."""
    root = read_json(path / METADATA_FILE)
    _check_version(root, METADATA_FILE, report)
    if kind == "ReplayBuffer":
        capacity = _check_ring(path, root, METADATA_FILE, report, None)
        _check_state(root, capacity, METADATA_FILE, "", report)
        return
    current = root.get("current_episode_id")
    if not _is_int(current) or current < 0:
        report.add(METADATA_FILE, f"current_episode_id: expected a non-negative integer, got {current!r}")
    paths = root.get("storage_paths") or {}
    episodes, table = root.get("episodes"), root.get("episode_id_to_index_map")
    if (episodes is None) != (table is None):
        report.add(METADATA_FILE, f"episodes {episodes!r} and episode_id_to_index_map must both be set or both null")
    capacities: dict[str, int | None] = {}
    for part in PARTS if episodes is not None else PARTS[:2]:
        part_metadata = _read_part(path / part, f"{part}/{METADATA_FILE}", report)
        if part_metadata is not None:
            capacities[part] = _check_ring(
                path / part, part_metadata, f"{part}/{METADATA_FILE}", report, paths.get(part)
            )
    step_capacities = {capacities[p] for p in PARTS[:2] if p in capacities}
    if len(step_capacities) > 1:
        report.add(
            "parts",
            f"step_data has capacity {capacities['step_data']} but step_episode_ids has "
            f"{capacities['step_episode_ids']}; expected equal (one episode id per step)",
        )
    if "step_episode_ids" in capacities:
        _check_state(root.get("steps"), capacities["step_episode_ids"], f"{METADATA_FILE} steps", "step_data", report)
    if "episode_data" in capacities:
        _check_state(episodes, capacities["episode_data"], f"{METADATA_FILE} episodes", "episode_data", report)


def _read_part(directory: Path, where: str, report: Report) -> dict[str, Any] | None:
    file = directory / METADATA_FILE
    if not file.is_file():
        report.add(where, "missing")
        return None
    try:
        payload = read_json(file)
    except (OSError, UnibatchError) as error:
        report.add(where, str(error))
        return None
    if not isinstance(payload, dict) or payload.get("type") != "ReplayBuffer":
        report.add(where, f"expected a ReplayBuffer metadata object, got type {_type_of(payload)!r}")
        return None
    _check_version(payload, where, report)
    return payload


def _type_of(payload: Any) -> Any:
    return payload.get("type") if isinstance(payload, dict) else type(payload).__name__


def _check_version(payload: dict[str, Any], where: str, report: Report) -> None:
    version = payload.get("format_version")
    if not _is_int(version):
        report.add(where, f"format_version: expected an integer, got {version!r}")
    elif not 1 <= version <= FORMAT_VERSION:
        report.add(where, f"format_version: expected 1 to {FORMAT_VERSION} (what this unibatch reads), got {version}")


def _check_ring(directory: Path, metadata: dict[str, Any], where: str, report: Report, storage_path: Any) -> int | None:
    """Check the capacity, storage name and files, and space of one ring; returns its capacity (None: growable)."""
    capacity = metadata.get("capacity")
    if capacity is not None and (not _is_int(capacity) or capacity < 1):
        report.add(where, f"capacity: expected a positive integer or null (growable), got {capacity!r}")
        capacity = None
    _check_storage(directory, metadata, where, report, storage_path)
    try:
        json_to_space(metadata["single_instance_space"], _numpy())
    except (UnibatchError, KeyError, TypeError, ValueError) as error:
        report.add(where, f"single_instance_space does not describe a space: {error}")
    return capacity


def _check_state(state: Any, capacity: int | None, where: str, part: str, report: Report) -> None:
    """``0 <= count <= capacity`` and ``0 <= offset < capacity`` (``offset == 0`` when growable)."""
    if not isinstance(state, dict):
        report.add(where, f"expected an object with count and offset, got {state!r}")
        return
    count, offset = state.get("count"), state.get("offset")
    of = f" of {part}" if part else ""
    if not _is_int(count) or count < 0:
        report.add(where, f"count: expected a non-negative integer, got {count!r}")
    elif capacity is not None and count > capacity:
        report.add(where, f"count {count} exceeds the capacity {capacity}{of}")
    if not _is_int(offset) or offset < 0:
        report.add(where, f"offset: expected a non-negative integer, got {offset!r}")
    elif capacity is None and offset != 0:
        report.add(where, f"offset {offset}: expected 0 for a growable buffer{of}")
    elif capacity is not None and offset >= capacity:
        report.add(where, f"offset {offset} is outside the slots [0, {capacity}){of}")


def _check_storage(directory: Path, metadata: dict[str, Any], where: str, report: Report, storage_path: Any) -> None:
    storage = metadata.get("storage")
    if not isinstance(storage, dict) or not isinstance(storage.get("name"), str):
        report.add(where, f"storage: expected {{'name': ..., 'path': ...}}, got {storage!r}")
        return
    try:
        storage_class(storage["name"])
    except (UnibatchError, ImportError) as error:
        report.add(where, f"storage: {error}")
    relative = storage_path if isinstance(storage_path, str) else storage.get("path")
    try:
        resolve_inside(directory, relative, source=where)
    except UnsafePathError as error:
        report.add(where, f"storage path: {error}")
        return
    if not isinstance(relative, str) or not (directory / relative).exists():
        report.add(where, f"storage files missing: expected {directory / str(relative)}")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _numpy() -> Any:
    from unibatch.cli._open import numpy_backend

    return numpy_backend()


# ---------------------------------------------------------------------- rows
def check_rows(source: Source, report: Report, chunk: int) -> None:
    """Read every row of every part of ``source`` in chunks and check it (see the module docstring)."""
    batch = source.batch
    episodes = source.episodes
    if isinstance(batch, TrajectoryReplayBuffer):
        describe = episodes.describe_row if episodes is not None else _plain_row
        if len(batch.step_data_buffer) != len(batch.step_episode_id_buffer):
            report.add(
                "parts",
                f"step_data holds {len(batch.step_data_buffer)} rows but step_episode_ids "
                f"{len(batch.step_episode_id_buffer)}; expected equal",
            )
        check_part(batch.step_data_buffer, "step_data/", describe, report, chunk)
        check_part(batch.step_episode_id_buffer, "episode_ids", describe, report, chunk)
        check_trajectory_episodes(source.path, batch, episodes, report)
        if batch.episode_data_buffer is not None:
            slots = _slot_names(batch)
            check_part(batch.episode_data_buffer, "episode_data/", slots, report, chunk)
        return
    describe = episodes.describe_row if episodes is not None else _plain_row
    check_part(batch, "", describe, report, chunk)
    if isinstance(batch, EpisodeDataset) and episodes is not None:
        check_dataset_episodes(batch, episodes, report, chunk)


def _plain_row(row: int) -> str:
    return f"row {row}"


def _slot_names(batch: TrajectoryReplayBuffer) -> Callable[[int], str]:
    owners = {slot: episode for episode, slot in (batch.episode_id_to_index_map or {}).items()}

    def describe(slot: int) -> str:
        owner = owners.get(slot)
        return f"slot {slot}" + (f" (episode {owner})" if owner is not None else " (no episode)")

    return describe


def check_part(part: BatchBase, prefix: str, describe: Callable[[int], str], report: Report, chunk: int) -> None:
    """Check every row of ``part`` against its space; one ``PROBLEM`` per key, naming its first bad row."""
    space, total = part.single_space, len(part)
    if isinstance(part, ReplayBuffer):
        slots = physical_slots(np.arange(total, dtype=np.int64), part.offset, part.capacity)
        for problem in part.storage.check_stored(np.asarray(slots)):
            report.add(prefix.rstrip("/") or "storage", problem)
    bad: dict[str, list[Any]] = {}  # key -> [rows outside, first row, detail]
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        try:
            values = part.get_at(slice(start, stop))
            check_data(space, values, batch_ndim=1)
        except Exception as error:  # any failure to read is what verify reports
            report.add(prefix.rstrip("/") or "rows", f"reading rows {start} to {stop - 1} failed: {_error(error)}")
            return
        for path, leaf, leaf_values in walk(space, values):
            found = outside_rows(leaf, np.asarray(leaf_values))
            if found is None:
                continue
            rows, detail = found
            entry = bad.setdefault(path, [0, start + int(rows[0]), detail])
            entry[0] += int(rows.size)
        report.rows_checked += stop - start
    for path, (count, row, detail) in bad.items():
        key = (prefix + path) if path else (prefix.rstrip("/") or "value")
        report.add(key, f"{count} of {total} rows outside the space; first: {describe(row)}: {detail}")


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def outside_rows(leaf: Space, values: Any) -> tuple[np.ndarray, str] | None:
    """Rows (positions in ``values``, ``int64[K]``) whose value is outside ``leaf``, and the first one described.

    ``values`` holds a batch of values of ``leaf`` along its first axis; None when all are inside.
    """
    if isinstance(leaf, BoxSpace):
        return _outside_box(leaf, values)
    if isinstance(leaf, BinarySpace):
        raw = values.view(np.uint8) if values.dtype == np.bool_ else values
        return _first(raw > 1, tuple(leaf.shape or ()), lambda at: f"byte {int(raw[at])} is not a boolean (0 or 1)")
    if isinstance(leaf, TextSpace):
        texts = np.asarray(values, dtype=object).reshape(-1)
        inside = np.array([leaf.contains(text) for text in texts], dtype=bool)
        return _first(~inside, (), lambda at: f"{texts[at[0]]!r} does not fit {leaf!r}")
    return None


def _outside_box(leaf: BoxSpace, values: np.ndarray) -> tuple[np.ndarray, str] | None:
    low, high = leaf.host_bounds()
    with np.errstate(invalid="ignore"):
        outside = ~((values >= low) & (values <= high))  # NaN is outside

    def detail(at: tuple[int, ...]) -> str:
        element = at[1:]
        lo, hi = np.broadcast_to(low, leaf.shape)[element], np.broadcast_to(high, leaf.shape)[element]
        where = f"element {list(element)} = " if element else "value "
        return f"{where}{_show(values[at])}, expected within [{_show(lo)}, {_show(hi)}]"

    return _first(outside, tuple(leaf.shape), detail)


def _show(value: Any) -> str:
    """A number as short as it reads back exactly (``9.0``, ``-3.1415927`` for float32, ``nan``)."""
    if isinstance(value, np.floating):
        return np.format_float_positional(value, trim="0")
    return str(value.item() if isinstance(value, np.generic) else value)


def _first(
    bad: np.ndarray, shape: tuple[int, ...], detail: Callable[[tuple[int, ...]], str]
) -> tuple[np.ndarray, str] | None:
    """Rows with any True in ``bad`` (``bool[B, *shape]``) and the description of the first True element."""
    rows = np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))
    if not rows.size:
        return None
    first = int(rows[0])
    element = np.unravel_index(int(np.flatnonzero(bad[first].reshape(-1))[0]), shape) if shape else ()
    return rows, detail((first, *(int(i) for i in element)))


# ---------------------------------------------------------------------- episodes
def check_trajectory_episodes(
    path: Path, batch: TrajectoryReplayBuffer, episodes: Episodes | None, report: Report
) -> None:
    """Episode ids in logical order, against the current episode id and the episode-data table."""
    if episodes is None or not episodes.count:
        return
    row_ids, current = episodes.row_ids(), batch.current_episode_id
    decreasing = np.flatnonzero(np.diff(row_ids) < 0)
    if decreasing.size:
        row = int(decreasing[0]) + 1
        report.add(
            "episode_ids",
            f"{decreasing.size} decrease(s) in logical order; first at row {row}: episode {int(row_ids[row])} "
            f"after episode {int(row_ids[row - 1])} (expected non-decreasing ids)",
        )
    beyond = np.flatnonzero(row_ids > current)
    if beyond.size:
        row = int(beyond[0])
        report.add(
            "episode_ids",
            f"{beyond.size} rows belong to episodes after the current episode {current}; "
            f"first: row {row} has episode id {int(row_ids[row])}",
        )
    table = _stored_table(path, report)
    if table is None or batch.episode_data_buffer is None:
        return
    _check_episode_table(table, np.unique(episodes.ids), current, len(batch.episode_data_buffer), report)


def _stored_table(path: Path, report: Report) -> dict[int, int] | None:
    """``episode_id_to_index_map`` as written in ``metadata.json`` (the loaded table hides duplicates)."""
    stored = read_json(path / METADATA_FILE).get("episode_id_to_index_map")
    if stored is None:
        return None
    try:
        return {int(episode): int(slot) for episode, slot in stored.items()}
    except (AttributeError, TypeError, ValueError):
        report.add(METADATA_FILE, f"episode_id_to_index_map: expected {{episode id: slot}}, got {stored!r}"[:200])
        return None


def _check_episode_table(table: dict[int, int], present: np.ndarray, current: int, slots: int, report: Report) -> None:
    where = "episode_id_to_index_map"
    missing = [int(i) for i in present if int(i) not in table]
    if missing:
        report.add(where, f"no episode-data slot for episodes {_some(missing)} that have steps")
    outside = {episode: slot for episode, slot in table.items() if not 0 <= slot < slots}
    if outside:
        first = next(iter(outside.items()))
        report.add(
            where,
            f"{len(outside)} slots outside the {slots} rows of episode_data; "
            f"first: episode {first[0]} -> slot {first[1]}",
        )
    values = list(table.values())
    if len(set(values)) != len(values):
        shared = sorted({slot for slot in values if values.count(slot) > 1})
        report.add(where, f"slots {_some(shared)} are shared by several episodes; expected one slot per episode")
    future = sorted(episode for episode in table if episode > current)
    if future:
        report.add(where, f"episodes {_some(future)} are after the current episode {current}")


def _some(values: list[int], shown: int = 10) -> str:
    text = ", ".join(str(v) for v in values[:shown])
    return f"[{text}{', ...' if len(values) > shown else ''}] ({len(values)})"


def check_dataset_episodes(dataset: EpisodeDataset, episodes: Episodes, report: Report, chunk: int) -> None:
    """Every row's ``episode_ids`` metadata is the id of the episode its table puts it in; episodes open."""
    expected, total = episodes.row_ids(), len(dataset)
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        try:
            metadata = dataset.get_at_with_metadata(slice(start, stop))[1] or {}
            got = np.asarray(metadata["episode_ids"])
        except Exception as error:
            report.add("episode_ids", f"reading rows {start} to {stop - 1} failed: {_error(error)}")
            return
        wrong = np.flatnonzero(got != expected[start:stop])
        if wrong.size:
            row = start + int(wrong[0])
            report.add(
                "episode_ids",
                f"{episodes.describe_row(row)} reports episode {int(got[wrong[0]])}; expected {int(expected[row])}",
            )
            return
    for position in range(episodes.count):
        length = len(dataset.get_episode(position))
        if length != int(episodes.lengths[position]):
            report.add("episodes", f"episode {position} has {length} rows; its table says {episodes.lengths[position]}")
