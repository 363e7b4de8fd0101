"""``EpisodeStore``: immutable episodes on an object store (``s3://bucket/dataset``), written by many producers.

Layout under the dataset URL (any fsspec URL; S3 needs ``unibatch[s3]``)::

    dataset.json                          {"format_version", "type", "step_space", "zarr": {...}}
    episodes/<producer>/<seq>/            one ZarrStorage per episode, written whole
    committed/<producer>.<seq>.<length>   the commit marker of that episode (written last)

A producer writes its episodes under its own prefix, so producers never touch the same object.
An episode exists for readers once its marker does: a producer killed mid-episode leaves at
most an unmarked group, which its next writer replaces. One ``LIST`` of ``committed/`` gives
every episode and its length. Episodes never change once committed, so readers keep the objects
they read in a local directory (``local_cache``; zarr's ``CacheStore``) and read them once.
Random rows straight from an object store are about 10x slower than from local disk: sample
from a local pool of pulled episodes (:class:`~unibatch.integrations.episode_pool.EpisodePoolSampler`).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unibatch._optional import require
from unibatch._typing import Device
from unibatch.backends import ComputeBackend, backend_from_name
from unibatch.buffers import ReplayBuffer
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import Space, check_data, json_to_space, space_to_json
from unibatch.storages import ZarrStorage
from unibatch.storages._atomic import check_format_version
from unibatch.storages._safe_paths import resolve_inside
from unibatch.storages._zarr_store import local_path

FORMAT_VERSION = 1
STORE_TYPE = "EpisodeStore"
DATASET_FILE = "dataset.json"
MARKER = re.compile(r"^(?P<producer>[A-Za-z0-9_-]+)\.(?P<seq>\d+)\.(?P<length>\d+)$")
PRODUCER_ID = re.compile(r"^[A-Za-z0-9_-]+$")
OPEN_EPISODES = 64
"""Episode storages kept open per store (opening one costs a few object reads)."""


@dataclass(frozen=True, order=True)
class EpisodeInfo:
    """One committed episode: its producer, the producer's episode number and its number of steps."""

    producer: str
    seq: int
    length: int

    @property
    def path(self) -> str:
        return f"episodes/{self.producer}/{self.seq:08d}"

    @property
    def marker(self) -> str:
        return f"committed/{self.producer}.{self.seq:08d}.{self.length}"


class EpisodeStore:
    """A dataset of episodes of one step space at ``url`` (see the module docstring).

    Use :meth:`create` (or :meth:`open` for an existing dataset). ``storage_options`` go to fsspec
    (``{"endpoint_url": ..., "key": ..., "secret": ...}`` for an S3-compatible server) and are
    never written to the store.
    """

    def __init__(
        self,
        url: str,
        step_space: Space,
        zarr_options: Mapping[str, Any],
        storage_options: Mapping[str, Any] | None = None,
        local_cache: str | os.PathLike[str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.step_space = step_space
        self.zarr_options = dict(zarr_options)
        self.storage_options = dict(storage_options or {})
        self.local_cache = None if local_cache is None else Path(local_cache)
        self._fs, self._root = _file_system(self.url, self.storage_options)
        self._open: OrderedDict[EpisodeInfo, ZarrStorage] = OrderedDict()
        self._open_lock = threading.Lock()  # pool threads read episodes concurrently

    @classmethod
    def create(
        cls,
        url: str,
        step_space: Space,
        *,
        storage_options: Mapping[str, Any] | None = None,
        compression: str | None = "zstd",
        chunk_rows: int | Mapping[str, int] | None = None,
    ) -> EpisodeStore:
        """Create the dataset, or open it when one with the same step space is already there."""
        fs, root = _file_system(url.rstrip("/"), dict(storage_options or {}))
        document: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "type": STORE_TYPE,
            "step_space": space_to_json(step_space),
            "zarr": {"compression": compression, "chunk_rows": chunk_rows},
        }
        if fs.exists(f"{root}/{DATASET_FILE}"):
            existing = _read_document(fs, root, url)
            if existing["step_space"] != document["step_space"]:
                raise SpaceMismatchError(f"{url} holds episodes of {existing['step_space']}, not of {step_space!r}")
            return cls(url, step_space, existing["zarr"], storage_options)
        fs.mkdirs(root, exist_ok=True)
        fs.pipe_file(f"{root}/{DATASET_FILE}", json.dumps(document, indent=1, sort_keys=True).encode())
        return cls(url, step_space, document["zarr"], storage_options)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        backend: ComputeBackend | None = None,
        device: Device | None = None,
        storage_options: Mapping[str, Any] | None = None,
        local_cache: str | os.PathLike[str] | None = None,
    ) -> EpisodeStore:
        """Open an existing dataset.

        ``local_cache``: a directory for the objects read (never refreshed: episodes are immutable).
        """
        fs, root = _file_system(url.rstrip("/"), dict(storage_options or {}))
        document = _read_document(fs, root, url)
        space = json_to_space(document["step_space"], backend or backend_from_name("numpy"), device)
        return cls(url, space, document["zarr"], storage_options, local_cache)

    # ------------------------------------------------------------------ reading
    def episodes(self) -> list[EpisodeInfo]:
        """Every committed episode, listed afresh (one LIST of the markers), by producer and number."""
        directory = f"{self._root}/committed"
        self._fs.invalidate_cache(directory)
        try:
            names = self._fs.ls(directory, detail=False)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            match = MARKER.match(name.rstrip("/").rsplit("/", 1)[-1])
            if match:
                found.append(EpisodeInfo(match["producer"], int(match["seq"]), int(match["length"])))
        return sorted(found)

    def read_episode(self, episode: EpisodeInfo, start: int = 0, stop: int | None = None) -> Any:
        """Steps ``[start, stop)`` of a committed episode (structured, on the store's backend)."""
        stop = episode.length if stop is None else stop
        if not 0 <= start <= stop <= episode.length:
            raise IndexError(f"steps [{start}, {stop}) are outside episode {episode} of {episode.length} steps")
        return self._storage(episode).get(slice(start, stop))

    def _storage(self, episode: EpisodeInfo) -> ZarrStorage:
        with self._open_lock:
            return self._open_storage(episode)

    def _open_storage(self, episode: EpisodeInfo) -> ZarrStorage:
        storage = self._open.get(episode)
        if storage is not None:
            self._open.move_to_end(episode)
            return storage
        self._contain(episode.path)
        cache = None if self.local_cache is None else self.local_cache / episode.path
        storage = ZarrStorage.load_from(
            f"{self.url}/{episode.path}",
            self.step_space,
            storage_options=self.storage_options,
            local_cache=cache,
        )
        self._open[episode] = storage
        if len(self._open) > OPEN_EPISODES:
            self._open.popitem(last=False)[1].close()
        return storage

    # ------------------------------------------------------------------ writing
    def writer(self, producer: str) -> EpisodeWriter:
        """A writer of ``producer``'s episodes (one live writer per producer id)."""
        return EpisodeWriter(self, producer)

    def _next_seq(self, producer: str) -> int:
        numbers = [episode.seq for episode in self.episodes() if episode.producer == producer]
        return max(numbers, default=-1) + 1

    def _commit(self, producer: str, seq: int, rows: Any, length: int) -> EpisodeInfo:
        """Write one episode group whole, then its marker (the commit point)."""
        episode = EpisodeInfo(producer, seq, length)
        location = f"{self.url}/{episode.path}"
        self._contain(episode.path)  # before deleting a leftover group there
        if self._fs.exists(f"{self._root}/{episode.path}"):  # left by a writer killed before its marker
            self._fs.rm(f"{self._root}/{episode.path}", recursive=True)
        storage = ZarrStorage.create(
            self.step_space,
            capacity=length,
            cache_path=location,
            storage_options=self.storage_options,
            compression=self.zarr_options.get("compression", "zstd"),
            chunk_rows=self.zarr_options.get("chunk_rows"),
        )
        storage.set(slice(0, length), rows)
        storage.flush()
        storage.close()
        self._fs.pipe_file(f"{self._root}/{episode.marker}", json.dumps({"path": episode.path}).encode())
        return episode

    def _contain(self, relative: str) -> None:
        """On a local file system, ``relative`` must stay inside the dataset (no symlink out of it).

        Episode paths are made from the marker names (letters, digits, ``_-``), but a local dataset
        may hold a directory replaced by a symlink; object stores have none.
        """
        local = local_path(self.url)
        if local is not None:
            resolve_inside(local, relative, source=local / DATASET_FILE)

    def __repr__(self) -> str:
        return f"EpisodeStore({self.url!r})"


class EpisodeWriter:
    """Steps of one producer, staged in memory and committed one whole episode at a time."""

    def __init__(self, store: EpisodeStore, producer: str) -> None:
        if not PRODUCER_ID.match(producer):
            raise ValueError(f"producer ids use letters, digits, '_' and '-', got {producer!r}")
        self.store = store
        self.producer = producer
        self.seq = store._next_seq(producer)
        self._steps = ReplayBuffer.create(None, store.step_space, capacity=None)

    @property
    def staged(self) -> int:
        return len(self._steps)

    def append(self, step: Any) -> None:
        """Stage one step of the current episode (validated against the step space)."""
        self._steps.append(step)

    def extend(self, steps: Any) -> None:
        """Stage a batch of steps of the current episode."""
        check_data(self.store.step_space, steps, batch_ndim=1)
        self._steps.extend(steps)

    def end_episode(self) -> EpisodeInfo | None:
        """Commit the staged steps as one episode (None when nothing is staged)."""
        length = len(self._steps)
        if not length:
            return None
        episode = self.store._commit(self.producer, self.seq, self._steps.get_at(slice(0, length)), length)
        self.seq += 1
        self._steps.clear()
        return episode

    def discard(self) -> None:
        """Drop the staged steps."""
        self._steps.clear()


def _file_system(url: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    fsspec = require("fsspec", "zarr")
    fs, root = fsspec.core.url_to_fs(url, **storage_options)
    return fs, root.rstrip("/")


def _read_document(fs: Any, root: str, url: str) -> dict[str, Any]:
    path = f"{root}/{DATASET_FILE}"
    try:
        data = json.loads(fs.cat_file(path))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{url} holds no episode store ({DATASET_FILE} is missing)") from error
    document = check_format_version(data, f"{url}/{DATASET_FILE}", FORMAT_VERSION)
    if document.get("type") != STORE_TYPE:
        raise SpaceMismatchError(f"{url}/{DATASET_FILE} describes a {document.get('type')!r}, not an {STORE_TYPE}")
    return document
