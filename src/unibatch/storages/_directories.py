"""The directory of a new storage: created, and refused when it already holds something."""

from __future__ import annotations

import os
from pathlib import Path


def new_directory(cache_path: str | os.PathLike[str]) -> Path:
    """Create ``cache_path`` (and its parents) for a new storage; it must not exist or be empty.

    Raises:
        FileExistsError: the directory exists and is not empty (nothing is overwritten).
    """
    path = Path(cache_path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} already exists and is not empty")
    path.mkdir(parents=True, exist_ok=True)
    return path
