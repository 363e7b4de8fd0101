"""Writes of exact host leaves into storages whose leaves are host (NumPy) arrays: memory on NumPy/PyTorch CPU, memmap.

The fast paths of ``append`` and ``extend`` hand a storage the leaves of a value already checked
and brought to the host (:func:`~unibatch.spaces._exact.exact_leaves` with ``host=True``). A
:class:`HostRowWriter` is resolved once per set of arrays and writes them with no per-leaf
dispatch: one row as one assignment of all its packed leaves (a tuple into the structured row)
plus one per other leaf; a range of rows as one copy per leaf, where every packed leaf of more
than one element is copied as one opaque item per row (``V{bytes}``: a row's bytes at once, not
element by element through the packed row's stride).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from unibatch.storages._packed import PackedRows


class HostRowWriter:
    """Writes rows given as exact host leaves (flat order) into host ``arrays``.

    Args:
        arrays: one host array per leaf, rows first (packed leaves are field views of ``packed``).
        packing: the packed-row layout, or None.
        packed: the packed rows (a structured array of shape ``(rows,)``), or None.
    """

    def __init__(self, arrays: Sequence[np.ndarray], packing: PackedRows | None, packed: np.ndarray | None) -> None:
        in_packed: tuple[int, ...] = () if packing is None or packed is None else packing.positions
        self._packed = packed if in_packed else None
        self._pick_packed = itemgetter(*in_packed) if in_packed else None
        self._fields = [(position, arrays[position], _opaque_rows(arrays[position])) for position in in_packed]
        self._others = [(position, array) for position, array in enumerate(arrays) if position not in in_packed]

    def write(self, index: int | slice, leaves: Sequence[Any]) -> None:
        """Write one row (an int) or a range of rows (a slice) of ``leaves``.

        Args:
            index: a physical row, or a slice of ``n`` rows.
            leaves: per leaf in flat order, a NumPy array of the leaf's dtype and shape (with a
                leading ``n`` axis for a slice), or for one row of a shape-``()`` leaf a scalar.
        """
        if isinstance(index, int):
            packed, pick = self._packed, self._pick_packed
            if packed is not None and pick is not None:
                packed[index] = pick(leaves)  # every packed leaf in one assignment
        else:
            for position, field, opaque in self._fields:
                value = leaves[position]
                if opaque is not None and value.flags.c_contiguous:
                    opaque[index] = np.frombuffer(value, opaque.dtype)
                else:
                    field[index] = value
        for position, array in self._others:
            array[index] = leaves[position]


def _opaque_rows(field: np.ndarray) -> np.ndarray | None:
    """``field`` (rows, *leaf_shape) as one opaque ``V{bytes}`` item per row, or None for a one-element leaf.

    A strided copy of opaque items moves a row's bytes at once: for the 39 floats of a packed
    state, 1.8x faster than NumPy's element-wise copy through the packed row's stride.
    """
    rows = field.shape[0]
    flat = field.reshape(rows, -1)
    if flat.shape[1] <= 1:
        return None
    opaque: np.ndarray = flat.view(np.dtype(f"V{flat.shape[1] * field.dtype.itemsize}"))[:, 0]
    return opaque
