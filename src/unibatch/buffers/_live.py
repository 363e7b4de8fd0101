"""The committed front of a persistent ring, shared with reader processes through one mapped word.

``metadata.json`` is the commit: ``count``, ``offset`` and ``start``, the absolute number of the
committed logical row 0 (how many rows ever left the front of the ring). A reader takes its
snapshot from there. What it cannot learn from a file it read before is whether the writer has
since dropped the rows it is reading, so the writer also stores ``start`` in ``commits.live``
(one aligned int64 in a small mapped file, updated in place) *before* the bytes of dropped slots
change. A read of absolute rows ``[a, ...]`` that finds ``start <= a`` in that word after
reading returned bytes that were committed and not overwritten while it ran (DESIGN.md §5):

* the writer never writes a slot of the committed range; a slot leaves it (``start`` moves past
  its row, here and in ``metadata.json``) before its bytes change;
* the writer publishes ``start`` right *after* ``metadata.json`` records it (and before any
  dropped slot changes), so the front is never ahead of the commit: a writer killed between the
  two leaves a front behind ``metadata.json``, and every opener (read-only, read-write, ``verify``)
  takes the same committed rows from ``metadata.json``. Published before the commit, a front left
  ahead by a kill made readers drop rows that the last completed commit kept and that were intact;
* ``start`` may move back at a flush (rows dropped ahead of time and never overwritten return
  to the range), but never back past a row whose slot was rewritten: the rows before the
  writer's published front are gone for good.

A single aligned 8-byte store and load are atomic on the platforms NumPy supports; no lock or
sequence counter is needed for one word.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from pathlib import Path

from unibatch.errors import CorruptDataError

LIVE_FILE = "commits.live"
MAGIC = 0x31564C4255  # "UBLV1" little-endian: the file is ours and of this layout
SIZE = 64
"""Bytes of ``commits.live``: the magic, ``start``, and room for later words."""
_START = 1


class CommitFront:
    """The mapped ``commits.live`` of one buffer directory: read by readers, written by the writer."""

    def __init__(self, path: Path, writable: bool) -> None:
        flags = (os.O_RDWR if writable else os.O_RDONLY) | getattr(os, "O_NOFOLLOW", 0)
        descriptor = os.open(path, flags)
        try:
            if os.fstat(descriptor).st_size != SIZE:
                raise CorruptDataError(f"{path}: expected {SIZE} bytes, got {os.fstat(descriptor).st_size}")
            self._map = mmap.mmap(descriptor, SIZE, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
        finally:
            os.close(descriptor)
        self._words = memoryview(self._map).cast("q")
        self.path, self.writable = path, writable
        magic = self._words[0]
        if magic != MAGIC:
            self.close()
            raise CorruptDataError(f"{path}: not a unibatch commit front (magic {magic:#x}, expected {MAGIC:#x})")

    @classmethod
    def for_reader(cls, directory: str | os.PathLike[str]) -> CommitFront | None:
        """The front of ``directory``, or None when its writer never made one (older buffers)."""
        try:
            return cls(Path(directory) / LIVE_FILE, writable=False)
        except FileNotFoundError:
            return None

    @classmethod
    def for_writer(cls, directory: str | os.PathLike[str], start: int) -> CommitFront:
        """Map (or create, atomically) the front of ``directory`` and publish ``start``."""
        path = Path(directory) / LIVE_FILE
        try:
            front = cls(path, writable=True)
        except (FileNotFoundError, CorruptDataError):
            _create(path)
            front = cls(path, writable=True)
        front.publish(start)
        return front

    @property
    def start(self) -> int:
        """The absolute number of the writer's committed logical row 0, as last published."""
        return self._words[_START]

    def publish(self, start: int) -> None:
        """Record ``start`` (before the bytes of any slot that left the committed range change)."""
        self._words[_START] = start

    def close(self) -> None:
        self._words.release()
        self._map.close()

    def __reduce__(self) -> tuple[type[CommitFront], tuple[Path, bool]]:
        """A buffer pickled to another process (``spawn`` workers) maps the same file there."""
        return CommitFront, (self.path, self.writable)


def _create(path: Path) -> None:
    """Write a fresh front next to ``path`` under a random exclusive name, then rename it into place."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        words = memoryview(bytearray(SIZE)).cast("q")
        words[0] = MAGIC
        os.write(descriptor, words.tobytes())
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
