"""Packed rows: the small fixed-size leaves of a space side by side in one row.

A random read of a small transition is bound by memory latency, not bandwidth: with one array
per leaf, B random rows cost B cache misses *per leaf*. Packing the small leaves into one
NumPy structured row (aligned fields, as a C struct) makes it one gather of B whole rows, then
one short copy per leaf (DESIGN.md §6: "a layout where a row's fixed-size leaves are gathered
together"). Large leaves (images) keep their own arrays: a packed row would drag them along on
every column read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from unibatch.storages._leaves import Leaf

PACKED_LEAF_LIMIT = 1024
"""Leaves of at most this many bytes per row are packed (a 39-float state is 156 bytes)."""
ROW_ALIGNMENT = 8


@dataclass(frozen=True)
class PackedRows:
    """Which leaves share the packed row, and the structured dtype of that row."""

    positions: tuple[int, ...]
    """Leaf positions (flat order) held in the packed row."""
    dtype: np.dtype
    """Structured dtype with one field ``f{position}`` per packed leaf, aligned, padded to 8 bytes."""

    @staticmethod
    def of(leaves: Sequence[Leaf]) -> PackedRows | None:
        """The packing of ``leaves``, or None when fewer than two leaves are small enough to gain from it.

        >>> import numpy as np
        >>> from unibatch import BinarySpace, BoxSpace, DictSpace, NumpyComputeBackend as nb
        >>> from unibatch.storages._leaves import leaf_table
        >>> space = DictSpace(nb, {"a": BoxSpace(nb, 0, 1, "float32", shape=(3,)), "d": BinarySpace(nb, ())})
        >>> packed = PackedRows.of(leaf_table(space))
        >>> packed.positions, packed.dtype.itemsize
        ((0, 1), 16)
        """
        chosen = [i for i, leaf in enumerate(leaves) if not leaf.is_text and 0 < leaf.row_bytes <= PACKED_LEAF_LIMIT]
        if len(chosen) < 2:
            return None
        offsets, end = {}, 0
        for i in sorted(chosen, key=lambda i: -leaves[i].numpy_dtype.alignment):  # widest first: little padding
            alignment = leaves[i].numpy_dtype.alignment
            offsets[i] = -(-end // alignment) * alignment
            end = offsets[i] + leaves[i].row_bytes
        return PackedRows._build(leaves, chosen, [offsets[i] for i in chosen], -(-end // ROW_ALIGNMENT) * ROW_ALIGNMENT)

    @staticmethod
    def from_json(layout: dict[str, Any], leaves: Sequence[Leaf]) -> PackedRows:
        """The packing a file recorded (:meth:`to_json`): stored layouts stay readable if :meth:`of` changes."""
        return PackedRows._build(leaves, list(layout["leaves"]), list(layout["offsets"]), int(layout["itemsize"]))

    def to_json(self) -> dict[str, Any]:
        """``{"leaves", "offsets", "itemsize"}``: what a file needs to map the packed rows again."""
        fields: Any = self.dtype.fields or {}
        return {
            "leaves": list(self.positions),
            "offsets": [int(fields[f"f{i}"][1]) for i in self.positions],
            "itemsize": int(self.dtype.itemsize),
        }

    @staticmethod
    def _build(leaves: Sequence[Leaf], positions: list[int], offsets: list[int], itemsize: int) -> PackedRows:
        dtype = np.dtype(
            {
                "names": [f"f{i}" for i in positions],
                "formats": [(leaves[i].numpy_dtype, leaves[i].shape) for i in positions],
                "offsets": offsets,
                "itemsize": itemsize,
            }
        )
        return PackedRows(tuple(positions), dtype)

    def allocate(self, rows: int) -> np.ndarray:
        """Zero-filled packed rows: a structured array of shape ``(rows,)``."""
        return np.zeros(rows, dtype=self.dtype)

    def field(self, rows: np.ndarray, position: int) -> np.ndarray:
        """The (strided) view of leaf ``position`` in ``rows``: shape ``(len(rows), *leaf_shape)``."""
        return rows[f"f{position}"]
