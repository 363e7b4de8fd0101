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

**The committed rows are the metadata's rows that the front has not passed** (:func:`settle`).
The writer publishes a larger ``start`` before it writes ``metadata.json``, so a writer killed
between the two leaves ``commits.live`` ahead of the metadata: it had announced those rows as
leaving. Every opener applies the same rule to what it reads, the metadata first and the word
after it: a reader at open, at ``refresh()`` and when it catches up after a read, and a writer
reopening read-write, which adopts the settled state and publishes it again. So after a crash a
read-only reader, a writer, ``unibatch verify`` and a trajectory buffer all see the same rows,
whether or not a writer is alive, and nobody has to ask. The cost is the rows the killed writer
had announced: at most the commit reserve of the oldest rows of a full ring (README "Persistence
and crashes"), or every row when it was killed inside ``clear()``. A reopened writer starts from
the settled state and never publishes a ``start`` below its own front, so no opener ever gets back
a row whose slot may have changed. An owner of several rings moving in lockstep (the step parts of
a trajectory buffer) loads the word once and settles every ring with that one value.
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


def settle(count: int, offset: int, start: int, published: int | None, capacity: int | None) -> tuple[int, int, int]:
    """The committed ``(count, offset, start)`` of a commit once the rows the front passed are dropped.

    Args:
        count: rows of the commit (``metadata.json``, or a reader's snapshot).
        offset: physical slot of its logical row 0.
        start: absolute number of its logical row 0.
        published: the ``start`` read from ``commits.live`` *after* the commit was read, or None
            when the directory has no front (buffers written before it).
        capacity: ring capacity, or None for a growable buffer (whose front moves only when
            ``clear()`` drops every row).

    >>> settle(count=10, offset=7, start=40, published=43, capacity=12)  # 3 rows left the front
    (7, 10, 43)
    >>> settle(count=10, offset=7, start=40, published=38, capacity=12)  # the front is behind: as committed
    (10, 7, 40)
    >>> settle(count=10, offset=7, start=40, published=55, capacity=12)  # every row left
    (0, 0, 55)
    """
    if published is None or published <= start:
        return count, offset, start
    dropped = published - start
    if dropped >= count or capacity is None:
        return 0, 0, published
    return count - dropped, (offset + dropped) % capacity, published


def published_start(directory: str | os.PathLike[str], start: int, count: int) -> int | None:
    """The start a writer reopening ``directory`` settles its commit ``(count, start)`` with (:func:`settle`).

    None when there is no front, or one that is not ours (the writer makes a new one: with no
    writer alive, ``metadata.json`` alone is the commit).

    Raises:
        CorruptDataError: the front is past every row of a non-empty commit. A killed writer
            leaves it at most at ``start + count`` (when killed inside ``clear()``); further
            means another writer is running or the file was altered, and adopting it would
            give up every committed row.
    """
    path = Path(directory) / LIVE_FILE
    try:
        front = CommitFront(path, writable=False)
    except (FileNotFoundError, CorruptDataError):
        return None
    try:
        published = front.start
    finally:
        front.close()
    if count > 0 and published > start + count:
        raise CorruptDataError(
            f"{path}: start {published} is past the {count} committed rows from {start} in metadata.json "
            f"(at most {start + count} after a crash); is another writer running?"
        )
    return published


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
