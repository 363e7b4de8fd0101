"""``unibatch info PATH``: what a buffer or dataset holds, on one screen, greppable and stable.

Every line is ``name: value`` or an indented table row, so ``unibatch info PATH | grep length``
and ``grep obs/image`` work; ``--json`` prints the same description as one JSON object::

    path: /tmp/robot
    format: TrajectoryReplayBuffer
    length: 100
    capacity: 100
    offset: 0
    episodes: 5
    episode lengths: min 20, mean 20.0, max 20
    first episodes (id:length): 0:20 1:20 2:20 3:20 4:20
    current episode id: 5 (no steps yet)
    keys:
      step_data/obs/image  uint8  (3, 64, 64)  [0, 255]  memmap
      ...
    storages:
      step_data  memmap  1231100 bytes  /tmp/robot/step_data/storage
    bytes on disk: 1245184 (1.2 MiB)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from unibatch.buffers import ReplayBuffer, TrajectoryReplayBuffer
from unibatch.cli._open import KeyInfo, Source, describe_keys, open_source
from unibatch.storages import DictStorage, SpaceStorage

FIRST_EPISODES = 10
"""How many episodes the text output lists by id and length."""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "info",
        help="show the keys, length, capacity, episodes and storages of a buffer or dataset",
        description="Show the space (every key path with dtype, shape, bounds and storage), the length, the "
        "capacity, the episodes and their lengths, and the bytes on disk of PATH.",
    )
    parser.add_argument(
        "path", type=Path, metavar="PATH", help="a unibatch buffer directory or a dataset in another format"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    source = open_source(arguments.path)
    try:
        description = describe(source)
    finally:
        source.close()
    print(json.dumps(description, indent=1) if arguments.json else format_text(description))
    return 0


# ---------------------------------------------------------------------- description
def describe(source: Source) -> dict[str, Any]:
    """Everything ``info`` prints, as JSON-serialisable data."""
    parts = storage_parts(source)
    keys, metadata_keys = _keys(source, parts)
    description: dict[str, Any] = {
        "path": str(source.path),
        "format": source.kind,
        "length": len(source.batch),
        "capacity": _capacity(source),
        "offset": _offset(source),
        "episodes": _episodes(source),
        "fps": source.fps,
        "keys": keys,
        "metadata_keys": metadata_keys,
        "storages": [part.to_json() for part in parts],
        "bytes_on_disk": disk_usage(source.path),
        "bytes_in_files": file_bytes(source.path),
    }
    if isinstance(source.batch, TrajectoryReplayBuffer):
        description["current_episode_id"] = source.batch.current_episode_id
    return description


def _capacity(source: Source) -> int | None:
    if source.is_unibatch_buffer and isinstance(source.batch, (ReplayBuffer, TrajectoryReplayBuffer)):
        return source.batch.capacity
    return len(source.batch)  # an imported dataset or file holds exactly its rows


def _offset(source: Source) -> int | None:
    if not source.is_unibatch_buffer:
        return None
    if isinstance(source.batch, ReplayBuffer):
        return source.batch.offset
    if isinstance(source.batch, TrajectoryReplayBuffer):
        return source.batch.step_episode_id_buffer.offset
    return None


def _episodes(source: Source) -> dict[str, Any] | None:
    episodes = source.episodes
    if episodes is None:
        return None
    lengths = episodes.lengths
    return {
        "count": episodes.count,
        "min_length": int(lengths.min()) if lengths.size else None,
        "mean_length": round(float(lengths.mean()), 3) if lengths.size else None,
        "max_length": int(lengths.max()) if lengths.size else None,
        "ids": episodes.ids.tolist(),
        "lengths": lengths.tolist(),
        "recording_episode_id": episodes.open_id,
    }


def _keys(source: Source, parts: list[StoragePart]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    by_part = {part.part: part for part in parts}
    batch = source.batch
    if isinstance(batch, TrajectoryReplayBuffer):
        keys = [
            _key(k, by_part["step_data"], "step_data/")
            for k in describe_keys(batch.step_data_buffer.single_space, "step_data/")
        ]
        if batch.episode_data_buffer is not None:
            episode_keys = describe_keys(batch.episode_data_buffer.single_space, "episode_data/")
            keys += [_key(k, by_part["episode_data"], "episode_data/") for k in episode_keys]
        ids = describe_keys(batch.step_episode_id_buffer.single_space, "episode_ids")
        return keys, [_key(k, by_part["step_episode_ids"], "") for k in ids]
    only = parts[0]
    keys = [_key(k, only, "") for k in describe_keys(batch.single_space)]
    metadata = describe_keys(batch.single_metadata_space) if batch.single_metadata_space is not None else []
    return keys, [{**k.to_json(), "storage": "computed"} for k in metadata]


def _key(key: KeyInfo, part: StoragePart, prefix: str) -> dict[str, Any]:
    return {**key.to_json(), "storage": part.storage_of(key.path[len(prefix) :])}


# ---------------------------------------------------------------------- storages
class StoragePart:
    """One storage of a source: a buffer part's storage (with its ``DictStorage`` children), or a foreign file.

    Args:
        part: the part name (``step_data``, ``step_episode_ids``, ``episode_data``; ``storage`` for
            a plain buffer; the format for an imported dataset).
        name: the registered storage name (``memmap``, ``dict``...) or the dataset format.
        path: where its bytes are.
        children: ``{map key: (registered name, path)}`` of a ``DictStorage``.
    """

    def __init__(self, part: str, name: str, path: Path | None, children: dict[str, tuple[str, Path | None]]) -> None:
        self.part, self.name, self.path, self.children = part, name, path, children

    def storage_of(self, key: str) -> str:
        """The storage of the leaf at ``key`` (inside the part): the child that holds it for a ``DictStorage``."""
        if not self.children:
            return self.name
        exact = [child for child in self.children if not child.endswith("*") and _under(key, child)]
        if exact:
            return self.children[max(exact, key=len)][0]
        residual = [child for child in self.children if child.endswith("*") and _under(key, child[:-1].rstrip("/"))]
        return self.children[max(residual, key=len)][0] if residual else self.name

    def to_json(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "name": self.name,
            "path": None if self.path is None else str(self.path),
            "bytes": disk_usage(self.path),
            "children": [
                {"key": key, "name": name, "path": None if path is None else str(path), "bytes": disk_usage(path)}
                for key, (name, path) in sorted(self.children.items())
            ],
        }


def _under(key: str, prefix: str) -> bool:
    return not prefix or key == prefix or key.startswith(prefix + "/")


def storage_parts(source: Source) -> list[StoragePart]:
    """The storages of ``source``, one per buffer part (a dataset counts as one)."""
    batch = source.batch
    if isinstance(batch, TrajectoryReplayBuffer):
        parts = [_buffer_part("step_data", batch.step_data_buffer)]
        parts.append(_buffer_part("step_episode_ids", batch.step_episode_id_buffer))
        if batch.episode_data_buffer is not None:
            parts.append(_buffer_part("episode_data", batch.episode_data_buffer))
        return parts
    if isinstance(batch, ReplayBuffer) and source.is_unibatch_buffer:
        return [_buffer_part("storage", batch)]
    return [StoragePart(source.kind, source.kind, source.path, {})]


def _buffer_part(part: str, buffer: ReplayBuffer) -> StoragePart:
    storage = buffer.storage
    path = None if buffer.cache_path is None else buffer.cache_path / buffer.storage_path_relative
    children: dict[str, tuple[str, Path | None]] = {}
    if isinstance(storage, DictStorage):
        children = {key: (_name(child), _where(child)) for key, child in storage.children.items()}
    return StoragePart(part, _name(storage), path, children)


def _name(storage: SpaceStorage) -> str:
    return storage.registered_name or type(storage).__name__


def _where(storage: SpaceStorage) -> Path | None:
    return None if storage.cache_filename is None else Path(storage.cache_filename)


def disk_usage(path: Path | None) -> int | None:
    """Bytes allocated on disk for a file or a directory tree (sparse files count what they use)."""
    return _sum_files(path, allocated=True)


def file_bytes(path: Path | None) -> int | None:
    """The sizes of the files under ``path`` added up (sparse files count their full length)."""
    return _sum_files(path, allocated=False)


def _sum_files(path: Path | None, allocated: bool) -> int | None:
    if path is None or not path.exists():
        return None
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    total = 0
    for file in files:
        status = file.stat()
        total += status.st_blocks * 512 if allocated and os.name == "posix" else status.st_size
    return total


# ---------------------------------------------------------------------- text
def format_text(description: dict[str, Any]) -> str:
    """The text form of :func:`describe`'s result (see the module docstring)."""
    lines = [
        f"path: {description['path']}",
        f"format: {description['format']}",
        f"length: {description['length']}",
        f"capacity: {'growable' if description['capacity'] is None else description['capacity']}",
    ]
    if description["offset"] is not None:
        lines.append(f"offset: {description['offset']}")
    if description["fps"] is not None:
        lines.append(f"fps: {description['fps']:g}")
    lines += _episode_lines(description)
    lines += ["keys:", *_table([_key_row(key) for key in description["keys"]])]
    if description["metadata_keys"]:
        lines += ["metadata keys:", *_table([_key_row(key) for key in description["metadata_keys"]])]
    lines += ["storages:", *_table(_storage_rows(description["storages"]))]
    lines.append(f"bytes on disk: {description['bytes_on_disk']} ({_human(description['bytes_on_disk'])})")
    return "\n".join(lines)


def _episode_lines(description: dict[str, Any]) -> list[str]:
    episodes = description["episodes"]
    if episodes is None:
        return ["episodes: none (rows without episode boundaries)"]
    lines = [f"episodes: {episodes['count']}"]
    if episodes["count"]:
        lines.append(
            f"episode lengths: min {episodes['min_length']}, mean {episodes['mean_length']:.1f}, "
            f"max {episodes['max_length']}"
        )
        shown = zip(episodes["ids"][:FIRST_EPISODES], episodes["lengths"][:FIRST_EPISODES], strict=True)
        more = " ..." if episodes["count"] > FIRST_EPISODES else ""
        lines.append("first episodes (id:length): " + " ".join(f"{i}:{n}" for i, n in shown) + more)
    if "current_episode_id" in description:
        current, recording = description["current_episode_id"], episodes["recording_episode_id"]
        state = "recording, its steps are the last episode above" if recording is not None else "no steps yet"
        lines.append(f"current episode id: {current} ({state})")
    return lines


def _key_row(key: dict[str, Any]) -> list[str]:
    return [key["path"], key["dtype"], str(tuple(key["shape"])), key["bounds"], key["storage"]]


def _storage_rows(storages: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for storage in storages:
        rows.append([storage["part"], storage["name"], _bytes(storage["bytes"]), storage["path"] or "-"])
        for child in storage["children"]:
            rows.append(["  " + child["key"], child["name"], _bytes(child["bytes"]), child["path"] or "-"])
    return rows


def _table(rows: list[list[str]]) -> list[str]:
    """Rows indented by two spaces, columns left-aligned and separated by two spaces."""
    if not rows:
        return []
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _bytes(count: int | None) -> str:
    return "-" if count is None else f"{count} bytes"


def _human(count: int | None) -> str:
    if count is None:
        return "unknown"
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} bytes"
