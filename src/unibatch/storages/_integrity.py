"""Cheap checks of persisted data against what its metadata declares (a stat, no data read).

Persisted state is untrusted input (DESIGN §5): a file shorter than the rows it must hold is
refused with :class:`~unibatch.errors.CorruptDataError` instead of being read as (or padded
with) zeros.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from unibatch.errors import CorruptDataError


def check_file_sizes(directory: str | os.PathLike[str], files: Iterable[tuple[str, int]], rows: int) -> None:
    """Every ``(name, row_bytes)`` file in ``directory`` holds at least ``rows`` rows.

    Raises:
        FileNotFoundError: a file is missing (the message names it).
        CorruptDataError: a file is shorter than ``rows * row_bytes``; the message names the
            file, the bytes expected and the bytes found.
    """
    for name, row_bytes in files:
        path = Path(directory) / name
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is missing") from None
        if size < rows * row_bytes:
            raise CorruptDataError(
                f"{path} is truncated: {rows} rows of {row_bytes} bytes need {rows * row_bytes} bytes, "
                f"the file has {size}"
            )
