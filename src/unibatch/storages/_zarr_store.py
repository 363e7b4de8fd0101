"""Where a ``ZarrStorage`` lives and how it is encoded: store locations, codecs, chunk rows, fsync.

A location is a local path, a ``file://`` URL (both opened with zarr's ``LocalStore``, which
replaces every object by an atomic rename) or any other fsspec URL (``FsspecStore``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from unibatch._optional import require
from unibatch.errors import UnsupportedSpaceError
from unibatch.storages._atomic import fsync_directory
from unibatch.storages._leaves import Leaf

COMPRESSIONS = ("zstd", "blosc", None)
DEFAULT_LEVELS = {"zstd": 3, "blosc": 5}
DEFAULT_CHUNK_BYTES = 1 << 18
"""Default chunk size target (256 KiB raw): see the read/write trade in ``ZarrStorage``."""
MAX_DEFAULT_CHUNK_ROWS = 1 << 16
NUMERIC_KINDS = "biufc"
FILE_URL = "file://"
ROOT_LEAF_NAME = "data"
"""The array name of a space that is itself a leaf."""


def zarr_module() -> Any:
    """The ``zarr`` package (v3), or an error naming ``pip install "unibatch[zarr]"``."""
    return require("zarr", "zarr")


def local_path(location: str) -> Path | None:
    """The local directory of a plain path or ``file://`` URL (read as fsspec does); None for other URLs."""
    if "://" not in location:
        return Path(location)
    return Path(unquote(location.removeprefix(FILE_URL))) if location.startswith(FILE_URL) else None


def protocol(location: str) -> str:
    """``"file"`` for local locations, else the URL scheme (``"memory"``, ``"s3"``)."""
    return "file" if local_path(location) is not None else urlparse(location).scheme


def open_store(
    location: str,
    read_only: bool,
    storage_options: Mapping[str, Any] | None,
    local_cache: LocalCache | None = None,
) -> Any:
    """A zarr store at ``location``: ``LocalStore`` for local paths, ``FsspecStore`` for other URLs.

    With ``local_cache`` (read-only opens only) every object read is kept in a local directory by
    zarr's ``CacheStore``, so later reads of it, in this process or another, stay on local disk.
    """
    storage = zarr_module().storage
    path = local_path(location)
    if path is not None:
        from unibatch.storages._zarr_contained import ContainedLocalStore

        store = ContainedLocalStore(path, read_only=read_only)
    else:
        store = storage.FsspecStore.from_url(location, storage_options=dict(storage_options or {}), read_only=read_only)
    if local_cache is None:
        return store
    if not read_only:
        raise ValueError(f"{location}: a local cache is for read-only opens (cached objects are never refreshed)")
    cache_store = require("zarr.experimental.cache_store", "zarr").CacheStore
    directory = Path(local_cache.directory)
    directory.mkdir(parents=True, exist_ok=True)
    return cache_store(store, cache_store=storage.LocalStore(directory), max_size=local_cache.max_bytes)


@dataclass(frozen=True)
class LocalCache:
    """Where a read-only ``ZarrStorage`` keeps the objects it read (one directory per storage)."""

    directory: str
    max_bytes: int | None = None
    """Least recently used objects are evicted past this many bytes (None: no limit)."""


def same_location(first: str, second: str) -> bool:
    """Whether two locations name the same group (local paths compared after resolving)."""
    first_path, second_path = local_path(first), local_path(second)
    if first_path is not None and second_path is not None:
        return first_path.resolve() == second_path.resolve()
    return first.rstrip("/") == second.rstrip("/")


def array_name(leaf: Leaf) -> str:
    """The array path of a leaf inside the group (``"obs/image"``)."""
    return leaf.name or ROOT_LEAF_NAME


def check_leaves(leaves: list[Leaf]) -> None:
    """Refuse leaves zarr cannot hold: dtypes other than bool/int/float/complex/text, bad node paths."""
    for leaf in leaves:
        if not leaf.is_text and leaf.numpy_dtype.kind not in NUMERIC_KINDS:
            raise UnsupportedSpaceError(
                f"leaf {array_name(leaf)!r}: zarr stores bool, integer, float, complex and text leaves, "
                f"got dtype {leaf.numpy_dtype}"
            )
    names = [array_name(leaf) for leaf in leaves]
    for name in names:
        if any(not part.strip(".") or part.startswith("__") or part == "zarr.json" for part in name.split("/")):
            raise UnsupportedSpaceError(
                f"leaf {name!r}: every part of a zarr node path must be non-empty, not only dots, "
                f"not start with '__' and not be 'zarr.json'"
            )
    for name in names:
        overlapping = [other for other in names if other == name or other.startswith(name + "/")]
        if len(overlapping) > 1:
            raise UnsupportedSpaceError(f"leaf paths {overlapping} overlap: zarr cannot hold an array there")


def compressors(compression: str | None, level: int | None) -> Any:
    """The zarr codecs for ``compression``: Zstd, Blosc (lz4 with byte shuffle by dtype) or none."""
    codecs = zarr_module().codecs
    if compression == "zstd":
        return codecs.ZstdCodec(level=level)
    if compression == "blosc":
        return codecs.BloscCodec(cname="lz4", clevel=level)
    return None


def parse_compression(compression: Any, level: Any) -> tuple[str | None, int | None]:
    """Validate ``compression``/``compression_level``; the level defaults per codec (zstd 3, blosc 5)."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {list(COMPRESSIONS)}, got {compression!r}")
    if compression is None:
        if level is not None:
            raise ValueError(f"compression_level {level!r} needs a compression, got compression=None")
        return None, None
    if level is None:
        return compression, DEFAULT_LEVELS[compression]
    accepted = range(1, 23) if compression == "zstd" else range(0, 10)
    if isinstance(level, bool) or not isinstance(level, int) or level not in accepted:
        raise ValueError(
            f"compression_level for {compression} must be an int in [{accepted.start}, {accepted.stop - 1}], "
            f"got {level!r}"
        )
    return compression, level


def parse_chunk_rows(option: Any, leaves: list[Leaf], capacity: int | None) -> dict[str, int]:
    """Rows per chunk for every leaf, from an int, a dict keyed by leaf path (``"*"``: default) or None.

    Leaves without an entry get the largest power of two of rows whose raw chunk fits in
    ``DEFAULT_CHUNK_BYTES`` (at most ``MAX_DEFAULT_CHUNK_ROWS``); a fixed capacity caps every value.
    """
    names = [leaf.name for leaf in leaves]
    if option is None or isinstance(option, int):
        per_leaf: dict[str, Any] = {"*": option}
    elif isinstance(option, Mapping):
        per_leaf = dict(option)
        unknown = sorted(set(per_leaf) - set(names) - {"*"})
        if unknown:
            raise ValueError(f"chunk_rows names unknown leaves {unknown}; leaves are {names} (or '*')")
    else:
        raise TypeError(f"chunk_rows must be an int, a dict of leaf path to int, or None; got {option!r}")
    rows = {}
    for leaf in leaves:
        value = per_leaf.get(leaf.name, per_leaf.get("*"))
        if value is None:
            value = _default_chunk_rows(leaf)
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"chunk_rows for leaf {leaf.name!r} must be a positive int, got {value!r}")
        rows[leaf.name] = min(value, capacity) if capacity is not None else value
    return rows


def _default_chunk_rows(leaf: Leaf) -> int:
    fitting = max(DEFAULT_CHUNK_BYTES // max(leaf.row_bytes, 1), 1)  # texts: as fixed-length UTF-32
    return min(1 << (fitting.bit_length() - 1), MAX_DEFAULT_CHUNK_ROWS)


def fsync_files(root: Path, keys: Iterable[str]) -> None:
    """Fsync the files ``root/key`` that exist, then their directories (makes renames durable)."""
    directories = set()
    for key in keys:
        path = root / key
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # an all-zero chunk is deleted rather than written
            directories.add(path.parent)
            continue
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        directories.add(path.parent)
    for directory in directories:
        fsync_directory(directory)


def fsync_tree(root: Path) -> None:
    """Fsync every file and directory under ``root`` (after writing a complete copy there)."""
    keys = [os.path.relpath(os.path.join(folder, name), root) for folder, _, files in os.walk(root) for name in files]
    fsync_files(root, keys)
    fsync_directory(root)
