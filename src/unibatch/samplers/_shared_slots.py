"""Preallocated batch slots in shared memory, and the packing of result trees into them.

A slot is one file in ``/dev/shm`` (a temporary directory elsewhere) mapped by the parent and
by every worker. A worker writes the array leaves of a result tree at fixed offsets and sends
back only the tree structure, the leaf shapes and any non-array leaf (texts); the parent
rebuilds the tree from views into the slot, without copying.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optree

from unibatch.backends import get_backend_or_none

ALIGNMENT = 64
SHARED_MEMORY_ROOT = Path("/dev/shm")


@dataclass(frozen=True)
class SlotLayout:
    """Byte offset and capacity of every array leaf of one kind of result."""

    offsets: tuple[int, ...]
    capacities: tuple[int, ...]
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


def layout_for(leaves: list[Any]) -> SlotLayout:
    """Offsets (64-byte aligned) for the packable leaves of a full-size result."""
    offsets, capacities, position = [], [], 0
    for leaf in leaves:
        size = leaf.nbytes if _is_packable(leaf) else 0
        offsets.append(position)
        capacities.append(size)
        position += -(-size // ALIGNMENT) * ALIGNMENT
    return SlotLayout(tuple(offsets), tuple(capacities), max(position, ALIGNMENT))


class SlotFiles:
    """``count`` shared files of ``nbytes`` each, mapped lazily in every process that uses them."""

    def __init__(self, directory: Path, count: int, nbytes: int, owner: bool) -> None:
        self.directory, self.count, self.nbytes, self._owner = directory, count, nbytes, owner
        self._maps: dict[int, np.memmap] = {}

    @classmethod
    def create(cls, count: int, nbytes: int) -> SlotFiles:
        root = SHARED_MEMORY_ROOT if SHARED_MEMORY_ROOT.is_dir() else None
        directory = Path(tempfile.mkdtemp(prefix="unibatch-slots-", dir=root))
        slots = cls(directory, 0, nbytes, owner=True)
        for _ in range(count):
            slots.add()
        return slots

    def add(self) -> int:
        """Create one more slot file (in the creating process); returns its number."""
        slot = self.count
        with open(self.directory / f"slot_{slot:03d}.bin", "wb") as handle:
            handle.truncate(self.nbytes)
        self.count += 1
        return slot

    def buffer(self, slot: int) -> np.memmap:
        if slot not in self._maps:
            self._maps[slot] = np.memmap(self.directory / f"slot_{slot:03d}.bin", dtype=np.uint8, mode="r+")
        return self._maps[slot]

    def write(self, slot: int, layout: SlotLayout, leaves: list[Any]) -> list[Any]:
        """Copy packable leaves into ``slot``; returns the leaf descriptions to send back."""
        buffer = self.buffer(slot)
        described: list[Any] = []
        for leaf, offset, capacity in zip(leaves, layout.offsets, layout.capacities, strict=True):
            if _is_packable(leaf) and leaf.nbytes <= capacity:
                view = np.ndarray(leaf.shape, leaf.dtype, buffer=buffer, offset=offset)
                np.copyto(view, leaf)
                described.append(("slot", leaf.shape, leaf.dtype.str))
            else:
                described.append(("value", leaf))
        return described

    def read(self, slot: int, layout: SlotLayout, described: list[Any]) -> list[Any]:
        """NumPy views into ``slot`` (and the values sent along) for the described leaves."""
        buffer = self.buffer(slot)
        leaves = []
        for description, offset in zip(described, layout.offsets, strict=True):
            if description[0] == "slot":
                leaves.append(np.ndarray(description[1], np.dtype(description[2]), buffer=buffer, offset=offset))
            else:
                leaves.append(description[1])
        return leaves

    def close(self) -> None:
        self._maps.clear()
        if self._owner:
            shutil.rmtree(self.directory, ignore_errors=True)
            self._owner = False

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory, "count": self.count, "nbytes": self.nbytes, "_owner": False, "_maps": {}}
