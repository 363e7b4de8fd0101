"""The reads and writes of one storage's host arrays, made again whenever the arrays are."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from unibatch.storages._host_reads import HostRowReader, Wrap
from unibatch.storages._host_writes import HostRowWriter
from unibatch.storages._packed import PackedRows


class HostRows:
    """A :class:`HostRowReader` per set of leaves read (made on first use) and one :class:`HostRowWriter`.

    Args:
        arrays: one host array per leaf, rows first (packed leaves are field views of ``packed``).
        packing: the packed-row layout, or None.
        packed: the packed rows, or None.
        wraps: per leaf, how a fresh host value is handed to the backend.
    """

    def __init__(
        self, arrays: Sequence[np.ndarray], packing: PackedRows | None, packed: np.ndarray | None, wraps: Sequence[Wrap]
    ) -> None:
        self.arrays = arrays
        """The arrays read and written (a storage that replaces them makes a new ``HostRows``)."""
        self._layout = (packing, packed, wraps)
        self._readers: dict[tuple[int, ...], HostRowReader] = {}
        self._writer = HostRowWriter(arrays, packing, packed)

    def read(self, positions: tuple[int, ...], index: Any) -> list[Any]:
        """The leaves ``positions`` at ``index`` (see :meth:`HostRowReader.read`)."""
        reader = self._readers.get(positions)
        if reader is None:
            packing, packed, wraps = self._layout
            reader = self._readers[positions] = HostRowReader(self.arrays, positions, packing, packed, wraps)
        return reader.read(index)

    def write(self, index: int | slice, leaves: Sequence[Any]) -> None:
        """One row or a range of rows of exact host leaves (see :meth:`HostRowWriter.write`)."""
        self._writer.write(index, leaves)
