"""Preallocated batch slots in shared memory, and the packing of result trees into them.

A slot is one file in ``/dev/shm`` (a temporary directory elsewhere) mapped by the parent and
by every worker. A worker writes the array leaves of a result tree at fixed offsets and sends
back only the tree structure, the leaf shapes and any non-array leaf (texts); the parent
rebuilds the tree from views into the slot, without copying. A slot lent out that way can
report when the last view into it has been garbage collected (``read(..., release=...)``).
The end of each slot holds the indices of an epoch batch, written by the parent, so that a
task message stays a few bytes.

The layout of a kind of result is written once into its directory (``layout.json``): tasks name
the directory, and a worker reads the layout the first time it meets it. Slots are mapped with
``MAP_POPULATE`` on Linux: their pages are allocated (or found) at mapping time, instead of one
page fault per 4 KiB on the first write of every process.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import shutil
import sys
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optree

from unibatch.backends import get_backend_or_none

ALIGNMENT = 64
SHARED_MEMORY_ROOT = Path("/dev/shm")
LAYOUT_FILE = "layout.json"
_POPULATE = mmap.MAP_POPULATE if sys.platform == "linux" else 0


SLOTS_PREFIX = "unibatch-slots-"
"""Slot directories are named ``unibatch-slots-<owner pid>-<owner start time>-<random>``."""


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, Linux), 0 where unknown, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return int(fields[19])  # field 22 of proc(5), counted after the command name
    except FileNotFoundError:
        return None
    except OSError:  # no /proc here: only whether the pid is alive
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0


def _owner_tag(pid: int) -> str:
    return f"{pid}-{_start_time(pid) or 0}"


def reclaim_stale_slot_directories(root: Path) -> list[Path]:
    """Remove the slot directories in ``root`` whose owner process is gone; returns them.

    The owner is the pid *and* start time in the name, so a pid reused by another process is not
    mistaken for the owner. Directories of live owners, and names in another form, are left alone.
    """
    removed = []
    for directory in root.glob(f"{SLOTS_PREFIX}*"):
        parts = directory.name[len(SLOTS_PREFIX) :].split("-")
        if len(parts) < 3 or not (parts[0].isdigit() and parts[1].isdigit()) or directory.is_symlink():
            continue
        started = _start_time(int(parts[0]))
        if started is None or (started and int(parts[1]) and started != int(parts[1])):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


@dataclass(frozen=True)
class SlotLayout:
    """Byte offset and capacity of every array leaf of one kind of result, then the index area."""

    offsets: tuple[int, ...]
    capacities: tuple[int, ...]
    index_offset: int
    index_capacity: int  # int64 indices of one epoch batch
    nbytes: int


def host_leaves(tree: Any) -> tuple[list[Any], Any]:
    """Leaves of ``tree`` (backend arrays as NumPy) and its structure."""
    leaves, spec = optree.tree_flatten(tree, none_is_leaf=True)
    hosted = []
    for leaf in leaves:
        backend = get_backend_or_none(leaf)
        hosted.append(leaf if backend is None else np.asarray(backend.to_numpy(leaf)))
    return hosted, spec


def _is_packable(leaf: Any) -> bool:
    return isinstance(leaf, np.ndarray) and leaf.dtype != object


def _aligned(size: int) -> int:
    return -(-size // ALIGNMENT) * ALIGNMENT


def layout_for(leaves: list[Any], index_capacity: int) -> SlotLayout:
    """Offsets (64-byte aligned) for the packable leaves of a full-size result and the indices."""
    offsets, capacities, position = [], [], 0
    for leaf in leaves:
        size = leaf.nbytes if _is_packable(leaf) else 0
        offsets.append(position)
        capacities.append(size)
        position += _aligned(size)
    nbytes = position + _aligned(8 * index_capacity)
    return SlotLayout(tuple(offsets), tuple(capacities), position, index_capacity, max(nbytes, ALIGNMENT))


class SlotFiles:
    """Shared files of ``layout.nbytes`` each, mapped lazily in every process that uses them."""

    def __init__(self, directory: Path, count: int, layout: SlotLayout, owner: bool) -> None:
        self.directory, self.count, self.layout, self._owner = directory, count, layout, owner
        self._maps: dict[int, mmap.mmap] = {}

    @classmethod
    def create(cls, count: int, layout: SlotLayout) -> SlotFiles:
        """A new directory with ``count`` slots and the layout file (in the parent)."""
        root = SHARED_MEMORY_ROOT if SHARED_MEMORY_ROOT.is_dir() else Path(tempfile.gettempdir())
        reclaim_stale_slot_directories(root)
        directory = Path(tempfile.mkdtemp(prefix=f"{SLOTS_PREFIX}{_owner_tag(os.getpid())}-", dir=root))
        (directory / LAYOUT_FILE).write_text(json.dumps(asdict(layout)))
        slots = cls(directory, 0, layout, owner=True)
        for _ in range(count):
            slots.add()
        return slots

    @classmethod
    def open(cls, directory: str | Path) -> SlotFiles:
        """The slots of an existing directory (in a worker), with the layout written there."""
        fields = json.loads((Path(directory) / LAYOUT_FILE).read_text())
        layout = SlotLayout(
            tuple(fields["offsets"]),
            tuple(fields["capacities"]),
            fields["index_offset"],
            fields["index_capacity"],
            fields["nbytes"],
        )
        return cls(Path(directory), -1, layout, owner=False)

    def add(self) -> int:
        """Create one more slot file (in the creating process); returns its number."""
        slot = self.count
        with open(self._path(slot), "wb") as handle:
            handle.truncate(self.layout.nbytes)
        self.count += 1
        return slot

    def _path(self, slot: int) -> Path:
        return self.directory / f"slot_{slot:03d}.bin"

    def buffer(self, slot: int) -> mmap.mmap:
        """The mapping of one slot (created, and its pages populated, on first use)."""
        mapped = self._maps.get(slot)
        if mapped is None:
            with open(self._path(slot), "r+b") as handle:
                mapped = mmap.mmap(handle.fileno(), self.layout.nbytes, flags=mmap.MAP_SHARED | _POPULATE)
            self._maps[slot] = mapped
        return mapped

    def write(self, slot: int, leaves: list[Any]) -> list[Any]:
        """Copy packable leaves into ``slot``; returns the leaf descriptions to send back."""
        buffer = self.buffer(slot)
        described: list[Any] = []
        for leaf, offset, capacity in zip(leaves, self.layout.offsets, self.layout.capacities, strict=True):
            if _is_packable(leaf) and leaf.nbytes <= capacity:
                view: np.ndarray = np.ndarray(leaf.shape, leaf.dtype, buffer=buffer, offset=offset)
                np.copyto(view, leaf)
                described.append(("slot", leaf.shape, leaf.dtype.str))
            else:
                described.append(("value", leaf))
        return described

    def read(self, slot: int, described: list[Any], release: Callable[[], object] | None = None) -> list[Any]:
        """NumPy views into ``slot`` (and the values sent along) for the described leaves.

        With ``release``, the views share one buffer exporter made for them alone (the ``base``
        of each view, kept alive by any array or tensor viewing them), and ``release()`` runs
        once the last of them has been garbage collected: the slot is then free to reuse.
        """
        buffer: Any = self.buffer(slot)
        if release is not None:
            buffer = (ctypes.c_uint8 * self.layout.nbytes).from_buffer(buffer)
            weakref.finalize(buffer, release).atexit = False
        leaves = []
        for description, offset in zip(described, self.layout.offsets, strict=True):
            if description[0] == "slot":
                leaves.append(np.ndarray(description[1], np.dtype(description[2]), buffer=buffer, offset=offset))
            else:
                leaves.append(description[1])
        return leaves

    def write_indices(self, slot: int, indices: np.ndarray) -> int:
        """Put an epoch batch's indices (at most ``index_capacity``) into ``slot``; returns their count."""
        count = len(indices)
        view: np.ndarray = np.ndarray((count,), np.int64, buffer=self.buffer(slot), offset=self.layout.index_offset)
        view[:] = indices
        return count

    def read_indices(self, slot: int, count: int) -> np.ndarray:
        """A copy of the ``count`` indices the parent put into ``slot``."""
        view: np.ndarray = np.ndarray((count,), np.int64, buffer=self.buffer(slot), offset=self.layout.index_offset)
        return view.copy()

    def close(self) -> None:
        self._maps.clear()  # the mappings close when no view into them is left
        if self._owner:
            shutil.rmtree(self.directory, ignore_errors=True)
            self._owner = False
