"""Opening the file of an ``HDF5Storage``: one SWMR writer, many readers, reopening after a killed writer.

What this relies on (h5py 3.16 with HDF5 2.0; ``tests/storages/test_hdf5.py`` checks each point):

* A writer opened with the SWMR-write flag marks the superblock "open for write + SWMR write". Readers
  opened with ``swmr=True`` may open the file meanwhile, and still can after the writer is SIGKILLed.
* A SIGKILLed writer leaves those marks: any other open then fails with "file is already open for write
  (may use <h5clear file> to clear file consistency flags)". A writer therefore clears them on open, as
  ``h5clear -s`` does (the file-access property ``clear_status_flags``), but only while it holds the
  writer lock, so that a live writer is never overridden.
* The writer lock is an open-file-description lock (``F_OFD_SETLK``, Linux) on the file itself: the
  kernel drops it when the writer dies, closing other descriptors of the file does not drop it (unlike
  POSIX record locks), and it does not interact with the ``flock`` locks of HDF5 or other h5py programs.
  Elsewhere a ``flock`` on the file stands in (third-party readers with HDF5 file locking then wait).
* HDF5's own file locking is off on every open (``locking=False``): a SWMR reader holds a shared
  ``flock`` for as long as it is open, which would stop the writer from reopening the file.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import struct
import sys
from pathlib import Path
from typing import Any

from unibatch._optional import require
from unibatch.errors import CorruptDataError, UnsupportedOperationError

LIBVER = ("v110", "latest")
"""Oldest format with SWMR (HDF5 1.10), so files stay readable by HDF5 1.10 and later."""
CLEAR_STATUS_FLAGS = b"clear_status_flags"
"""The file-access property ``h5clear -s`` sets: clear the superblock's write marks on open."""
CACHE_SLOTS = 521
CACHE_EVICTION_WEIGHT = 1.0
"""Evict fully read or written chunks first: rows are visited in increasing order."""

_log = logging.getLogger(__name__)


def h5py_module() -> Any:
    """The h5py module, or an error naming ``pip install "unibatch[hdf5]"``."""
    return require("h5py", "hdf5")


def create_file(path: Path) -> Any:
    """A new, empty HDF5 file at ``path`` open for writing (fails if it exists)."""
    h5py = h5py_module()
    return h5py.File(path, "x", libver=LIBVER, locking=False)


def open_reader(path: Path, *, swmr: bool) -> Any:
    """``path`` open read-only; ``swmr`` for unibatch's own files, which a unibatch writer may be appending to.

    A foreign file (``swmr=False``: robomimic, Minari, any HDF5 file read in place) opens with HDF5's default
    file locking, as a plain ``h5py.File(path)`` does: HDF5 refuses a second open, in one process, of a file
    already open with other locking flags, and the user often has the file open in a notebook.
    """
    h5py = h5py_module()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return check_not_truncated(h5py.File(path, "r", swmr=swmr, locking=False if swmr else None), path)


def check_not_truncated(file: Any, path: Path) -> Any:
    """``file`` (open) when ``path`` is as long as the space HDF5 allocated in it, else closed and refused.

    HDF5 checks this itself only when a file is opened without SWMR; a SWMR reader or writer of a
    truncated file reads the missing bytes as zeros. The end of allocation (``H5Fget_filesize``
    returns the larger of it and the end of file) is written by a flush after the data, so a
    writer killed at any point never leaves a file shorter than it.

    Raises:
        CorruptDataError: naming the file, the bytes it needs and the bytes it has.
    """
    needed, actual = int(file.id.get_filesize()), os.stat(path).st_size
    if actual < needed:
        file.close()
        raise CorruptDataError(f"{path} is truncated: its datasets need {needed} bytes, the file has {actual}")
    return file


class WriterLock:
    """The exclusive right to write one file, held until :meth:`release` or the death of the process."""

    def __init__(self, path: Path) -> None:
        self._descriptor: int | None = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            _lock_exclusive(self._descriptor)
        except OSError as error:
            self.release()
            raise UnsupportedOperationError(
                f"{path} is open for writing in another process or handle (one writer per file; "
                "open it with read_only=True to read while it is written)"
            ) from error

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the description drops the lock
            self._descriptor = None


def _lock_exclusive(descriptor: int) -> None:
    if sys.platform == "linux" and struct.calcsize("P") == 8:
        # struct flock on 64-bit Linux: l_type, l_whence (short), l_start, l_len (off_t), l_pid (int), padding.
        request = struct.pack("@hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        fcntl.fcntl(descriptor, fcntl.F_OFD_SETLK, request)
    else:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)


def open_writer(path: Path) -> tuple[Any, WriterLock]:
    """``path`` open for SWMR writing, with its writer lock.

    The file is opened with the SWMR-write flag directly, so readers never see it open for writing
    without SWMR. If a killed writer left its marks, they are cleared (the lock proves it is gone).
    """
    h5py = h5py_module()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    lock = WriterLock(path)
    flags = h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE
    try:
        try:
            file_id = h5py.h5f.open(os.fsencode(path), flags, fapl=_writer_access(clear_marks=False))
        except OSError as error:
            if "already open for read-only" in str(error):
                raise UnsupportedOperationError(
                    f"{path} is open read-only in this process; HDF5 reopens it for writing only once "
                    "every reader of this process has closed it"
                ) from error
            if "already open for write" not in str(error):
                raise
            _log.info("%s: clearing the write marks of a writer that did not close it (%s)", path, error)
            file_id = h5py.h5f.open(os.fsencode(path), flags, fapl=_writer_access(clear_marks=True))
        return check_not_truncated(h5py.File(file_id), path), lock
    except BaseException:
        lock.release()
        raise


def _writer_access(*, clear_marks: bool) -> Any:
    h5py = h5py_module()
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_LATEST)
    fapl.set_file_locking(False, True)
    if clear_marks:
        _set_clear_status_flags(fapl)
    return fapl


def _set_clear_status_flags(fapl: Any) -> None:
    """``H5Pset(fapl, "clear_status_flags", true)`` in the HDF5 library h5py uses (h5py has no generic setter)."""
    h5py = h5py_module()
    library = ctypes.CDLL(h5py.h5f.__file__)  # dlsym on the extension module also searches the libhdf5 it links
    set_property = library.H5Pset
    set_property.argtypes = [ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p]
    set_property.restype = ctypes.c_int
    value = ctypes.c_bool(True)
    if set_property(fapl.id, CLEAR_STATUS_FLAGS, ctypes.byref(value)) < 0:
        raise OSError(
            f"this HDF5 library cannot clear write marks; run `h5clear -s` on the file ({h5py.version.hdf5_version})"
        )


def open_dataset(file: Any, name: str, *, cache_bytes: int) -> Any:
    """The dataset ``name`` of ``file`` with a chunk cache of ``cache_bytes`` (0: reads and writes go to the file)."""
    h5py = h5py_module()
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    dapl.set_chunk_cache(CACHE_SLOTS, cache_bytes, CACHE_EVICTION_WEIGHT)
    return h5py.Dataset(h5py.h5d.open(file.id, name.encode(), dapl=dapl))
