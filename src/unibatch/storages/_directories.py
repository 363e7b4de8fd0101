"""The directory of a new storage: made, refused when not empty, removed when ``create`` fails.

A failed ``create`` leaves the disk as it found it, so the corrected call can be retried:

* a directory (or single file) the call created is removed, with the parent directories it made;
* a directory that existed and was empty before the call is kept, emptied again;
* a path that already held something was refused (``FileExistsError``) and is never touched.

Cleanup runs when ``create`` raises (a bad argument, a missing extra, a failing child storage);
a process killed inside ``create`` can still leave a partial directory behind.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

CreateT = TypeVar("CreateT", bound=Callable[..., Any])


def new_directory(cache_path: str | os.PathLike[str]) -> Path:
    """Create ``cache_path`` (and its parents) for a new storage; it must not exist or be empty.

    Raises:
        FileExistsError: the directory exists and is not empty (nothing is overwritten).
    """
    path = Path(cache_path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} already exists and is not empty; a new storage needs a new or empty directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def parse_capacity(capacity: Any, name: str = "capacity") -> int | None:
    """``capacity`` checked before anything touches the disk: a positive int (NumPy ints too) or None.

    Raises:
        ValueError: a bool, a float (even ``2.0``), a string, zero or a negative number.

    >>> parse_capacity(3), parse_capacity(None)
    (3, None)
    """
    if capacity is None:
        return None
    if isinstance(capacity, (bool, np.bool_)) or not isinstance(capacity, (int, np.integer)):
        raise ValueError(f"{name} must be a positive int or None, got {capacity!r} ({type(capacity).__name__})")
    if capacity <= 0:
        raise ValueError(f"{name} must be a positive int or None, got {capacity}")
    return int(capacity)


def removes_on_failure(create: CreateT) -> CreateT:
    """Decorate a ``create`` whose keyword ``cache_path`` it makes: a failed call removes what it made.

    URLs (``"s3://..."``) and ``None`` are passed through untouched.
    """

    @functools.wraps(create)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        cache_path = kwargs.get("cache_path")
        if cache_path is None or (isinstance(cache_path, str) and "://" in cache_path):
            return create(*args, **kwargs)
        undo = _Undo(Path(cache_path))
        try:
            return create(*args, **kwargs)
        except BaseException:
            undo()
            raise

    return wrapper  # type: ignore[return-value]


class _Undo:
    """What a ``create`` at ``path`` may remove if it fails, recorded before it runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.existed = path.exists() or path.is_symlink()
        self.was_empty_directory = self.existed and path.is_dir() and not path.is_symlink() and not any(path.iterdir())
        self.made_parents = [parent for parent in path.parents if not parent.exists()]  # deepest first

    def __call__(self) -> None:
        path = self.path
        if self.was_empty_directory:
            for entry in list(path.iterdir()) if path.is_dir() else []:
                _remove(entry)
        elif not self.existed:
            _remove(path)
            for parent in self.made_parents:
                try:
                    parent.rmdir()
                except OSError:
                    break  # not empty: something else lives there now


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
