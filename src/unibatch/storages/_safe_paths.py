"""Persisted state is untrusted input: the paths it names stay inside their directory.

A buffer directory may come from a stranger (a downloaded dataset, a copy from another machine),
so every path read from a sidecar (a storage path in ``metadata.json``, a segment in
``video.json``, a part in ``parquet.json``, a child of ``dict.json``...) goes through
:func:`resolve_inside` before anything opens, writes or deletes it. The rules:

- a path read from persisted state is relative, has no ``..`` part, and after resolving the
  symlinks on its way it is still inside the directory it is relative to (a symlink that stays
  inside is fine);
- a data file unibatch creates itself under a fixed name (memmap leaves and ``packed.bin``, image
  files, the shard and ``tmp/`` directories of ``ImageStorage``, sidecars) is never a symlink: it is
  opened with ``O_NOFOLLOW`` (:func:`open_no_follow`), so a symlink planted in its place is refused
  even when it points inside (nothing legitimate puts one there, and no resolution is needed);
- a temporary file of an atomic replace is created exclusively (``O_CREAT | O_EXCL |
  O_NOFOLLOW``) under a random name beside its target (:func:`create_temporary`), so a symlink
  planted at a predictable name cannot redirect the write.

The same rule covers paths kept inside data files: HDF5 datasets stored in another file (external
links, external storage, virtual datasets) are refused, and a local Zarr store checks every chunk
key it writes or deletes. Importers of foreign datasets (LeRobot) check the text of their paths
only, since hub caches legitimately link files to blobs elsewhere.

Every refusal raises :class:`~unibatch.errors.UnsafePathError` naming the file that holds the path
and the path. The checks run when a storage opens or commits, never per row. They defend against
what the files say, not against another process rewriting the directory while it is in use
(whoever can do that can already change the data).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from unibatch.errors import UnsafePathError

NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
"""``O_NOFOLLOW`` where the OS has it (0 elsewhere: then symlinks are refused by :func:`refuse_symlink` only)."""
CLOSE_ON_EXEC = getattr(os, "O_CLOEXEC", 0)
TEMPORARY_SUFFIX = ".tmp"
"""Temporary files are named ``.<target name>.<random>.tmp`` (stale ones are recognised by the dot and suffix)."""
PathLike = str | os.PathLike[str]


def check_relative(relative: object, *, source: PathLike) -> PurePosixPath:
    """``relative`` as a path when it is a non-empty relative path without ``..`` parts.

    Args:
        relative: a path read from the file ``source`` (anything JSON may hold).
        source: the file the path was read from (named in the error).

    Raises:
        UnsafePathError: ``relative`` is not a string, is empty, absolute, holds a NUL byte or a
            ``..`` part, or names the directory itself.

    >>> check_relative("storage", source="metadata.json")
    PurePosixPath('storage')
    >>> check_relative("../victim", source="metadata.json")
    Traceback (most recent call last):
    ...
    unibatch.errors.UnsafePathError: metadata.json names the path '../victim', which leaves its directory ('..' part)
    """
    if not isinstance(relative, str) or not relative or "\0" in relative:
        raise UnsafePathError(f"{source} names the path {relative!r}; expected a non-empty relative path")
    path = PurePosixPath(relative)
    if path.is_absolute() or os.path.isabs(relative):
        raise UnsafePathError(f"{source} names the absolute path {relative!r}; expected a path inside its directory")
    if ".." in path.parts:
        raise UnsafePathError(f"{source} names the path {relative!r}, which leaves its directory ('..' part)")
    if not path.parts:
        raise UnsafePathError(f"{source} names the path {relative!r}, which is its directory itself")
    return path


def resolve_inside(root: PathLike, relative: object, *, source: PathLike) -> Path:
    """``root / relative`` after checking it stays inside ``root``, also through symlinks.

    Each existing part of ``relative`` is looked at once (``lstat``); a symlink is resolved and must
    land inside ``root`` (resolved). Parts that do not exist yet (a file about to be written) are
    fine: they are created inside.

    Args:
        root: the directory ``relative`` is relative to (a symlinked ``root`` is fine).
        relative: a path read from the file ``source``.
        source: the file the path was read from (named in the error).

    Returns:
        ``Path(root) / relative`` (not resolved: messages keep the names the user knows).

    Raises:
        UnsafePathError: ``relative`` is absolute, has a ``..`` part, or goes through a symlink
            that leads outside ``root``.
    """
    parts = check_relative(relative, source=source).parts
    base = os.fspath(root)
    current = base
    for part in parts:  # plain strings: this runs on every open
        current = os.path.join(current, part)
        if os.path.islink(current) and not _is_within(os.path.realpath(current), os.path.realpath(base)):
            raise UnsafePathError(
                f"{source} names the path {relative!r}, whose part {part!r} is a symlink "
                f"to {os.path.realpath(current)}, outside {base}"
            )
    return Path(current)


def _is_within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def resolve_all_inside(root: PathLike, relatives: Iterable[object], *, source: PathLike) -> list[Path]:
    """:func:`resolve_inside` of each path in ``relatives`` (the file lists of video and Parquet sidecars)."""
    return [resolve_inside(root, relative, source=source) for relative in relatives]


def refuse_symlink(path: PathLike, *, source: PathLike | None = None) -> None:
    """Refuse a data file (or directory) that is a symlink; a missing one raises ``FileNotFoundError``.

    Args:
        path: a file unibatch created itself (it never makes symlinks).
        source: the file that names ``path``, if any (named in the error).
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing") from None
    if stat.S_ISLNK(mode):
        named = f" (named by {source})" if source is not None else ""
        raise UnsafePathError(
            f"{path}{named} is a symlink to {os.path.realpath(path)}; unibatch data files are never symlinks"
        )


def open_no_follow(path: PathLike, flags: int, mode: int = 0o666) -> int:
    """``os.open(path, flags | O_NOFOLLOW | O_CLOEXEC)``; a symlink at ``path`` raises :class:`UnsafePathError`.

    Returns:
        The file descriptor (the caller closes it, e.g. through ``os.fdopen``).
    """
    try:
        return os.open(path, flags | NO_FOLLOW | CLOSE_ON_EXEC, mode)
    except OSError as error:
        if error.errno == errno.ELOOP or (error.errno == errno.EMLINK and os.path.islink(path)):
            raise UnsafePathError(
                f"{path} is a symlink (to {os.path.realpath(path)}); unibatch does not follow symlinks for data files"
            ) from error
        raise


def open_data_file(path: PathLike, *, writable: bool) -> BinaryIO:
    """A binary file object of an existing data file, opened without following a symlink.

    Args:
        path: the data file.
        writable: open for reading and writing (``"r+b"``) instead of reading (``"rb"``).

    Raises:
        UnsafePathError: ``path`` is a symlink.
        FileNotFoundError: ``path`` is missing.
    """
    descriptor = open_no_follow(path, os.O_RDWR if writable else os.O_RDONLY)
    return os.fdopen(descriptor, "r+b" if writable else "rb")


def temporary_name(target: PathLike, label: str = "") -> Path:
    """A fresh, unpredictable name beside ``target``: ``.<name>.<random>.tmp``, or ``.<name>.<label>-<random>``.

    For tools that create the file themselves (``os.link`` and ``os.mkdir`` refuse an existing name
    and never follow a symlink there); :func:`create_temporary` creates a file exclusively.
    """
    target = Path(target)
    random = secrets.token_hex(8)
    return target.with_name(
        f".{target.name}.{label}-{random}" if label else f".{target.name}.{random}{TEMPORARY_SUFFIX}"
    )


def create_temporary_directory(target: PathLike, label: str) -> Path:
    """Create a new empty directory beside ``target`` named ``.<name>.<label>-<random>`` (never an existing one)."""
    while True:
        path = temporary_name(target, label)
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        return path


def create_temporary(target: PathLike) -> tuple[int, Path]:
    """Create a new empty temporary file beside ``target``, exclusively and without following symlinks.

    The name is :func:`temporary_name`'s; the file is opened for writing with ``O_CREAT | O_EXCL |
    O_NOFOLLOW`` and the usual permissions (``0o666`` less the umask, as ``open`` gives), so a
    file or symlink planted at that name makes it draw another name instead of writing there.

    Returns:
        The open file descriptor (write-only) and the path; the caller writes, then replaces
        ``target`` by it (or unlinks it on failure).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    while True:
        temporary = temporary_name(target)
        try:
            return open_no_follow(temporary, flags), temporary
        except FileExistsError:
            continue


def is_temporary(name: str) -> bool:
    """Whether a file name is one :func:`temporary_name` gives (or an older unibatch's ``.<name>.<pid>.tmp``)."""
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)
