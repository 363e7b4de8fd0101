"""Reads of storages whose leaves are host (NumPy) arrays: memory on NumPy/PyTorch CPU, memmap.

A :class:`HostRowReader` is resolved once per set of leaves (a storage's rows, or one of its
columns) and reused by every read: which leaves come from the packed rows, which array each other
leaf is taken from, and how each fresh result is handed to the space's backend. A read of an index
array is then one gather of whole packed rows, one ``take`` per other leaf and one hand-over per
leaf, with no per-read dispatch (DESIGN §1: the hot call does no per-leaf bookkeeping).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from unibatch.storages._outputs import take_rows
from unibatch.storages._packed import PackedRows

Wrap = Callable[[np.ndarray], Any] | None
"""Turns a fresh host array into the backend's value (None: the array itself)."""


class HostRowReader:
    """The values of leaves ``positions`` of host ``arrays`` at an int, a slice or an index array.

    Args:
        arrays: one host array per leaf of the storage, rows first (packed leaves are field
            views of ``packed``).
        positions: the leaves to read, in the order of the result.
        packing: the packed-row layout, or None.
        packed: the packed rows (a structured array of shape ``(rows,)``), or None.
        wraps: per leaf of the storage, how a fresh host value is handed over (see :data:`Wrap`).
    """

    def __init__(
        self,
        arrays: Sequence[np.ndarray],
        positions: Sequence[int],
        packing: PackedRows | None,
        packed: np.ndarray | None,
        wraps: Sequence[Wrap],
    ) -> None:
        self._arrays = [arrays[p] for p in positions]
        self._wraps = [wraps[p] for p in positions]
        self._wrapped = any(wrap is not None for wrap in self._wraps)
        in_packed = [] if packing is None else [p for p in positions if p in packing.positions]
        self._whole: np.ndarray | None = None
        self._dtype = np.dtype(np.uint8)
        self._fields: list[tuple[int, str]] = []
        if packing is not None and packed is not None and len(in_packed) >= 2:
            # One gather of whole rows; a single packed leaf is read as its own field.
            self._whole = packed.view(np.uint8).reshape(packed.shape[0], packing.dtype.itemsize)
            self._dtype = packing.dtype
            self._fields = [(list(positions).index(p), f"f{p}") for p in in_packed]
        packed_slots = {slot for slot, _ in self._fields}
        self._takes = [(slot, array) for slot, array in enumerate(self._arrays) if slot not in packed_slots]
        # Strided single fields (one packed leaf) are read by fancy indexing: ``take`` would copy them whole.
        self._fancy = {slot for slot, array in self._takes if not array.flags.c_contiguous}

    def read(self, index: Any) -> list[Any]:
        """The leaf values at ``index``: fresh arrays (or the active output arena's) handed to the backend."""
        if isinstance(index, np.ndarray):
            values = self._gather(index)
        else:
            values = [copy_rows(array, index) for array in self._arrays]
        if not self._wrapped:
            return values
        return [value if wrap is None else wrap(value) for wrap, value in zip(self._wraps, values, strict=True)]

    def _gather(self, index: np.ndarray) -> list[Any]:
        values: list[Any] = [None] * len(self._arrays)
        if self._whole is not None:
            block: Any = take_rows(self._whole, index).view(self._dtype).reshape(-1)
            for slot, name in self._fields:
                values[slot] = block[name]  # strided views of one block (not C-contiguous)
        fancy = self._fancy
        for slot, array in self._takes:
            values[slot] = array[index] if slot in fancy else take_rows(array, index)
        return values


def copy_rows(array: np.ndarray, index: Any) -> Any:
    """Rows of a host array at an int or a slice, as a fresh array (a ``str`` for one text row)."""
    picked = array[index]
    return picked if isinstance(picked, str) else np.array(picked)
