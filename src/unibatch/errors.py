"""Typed errors of unibatch.

Every error derives from :class:`UnibatchError` and from the builtin it refines, so
``except ValueError`` keeps working for callers that do not know unibatch.
"""

from __future__ import annotations


class UnibatchError(Exception):
    """Root of every error raised on purpose by unibatch."""


class SpaceMismatchError(UnibatchError, ValueError):
    """A value (or space) does not fit the space it is written to or compared with.

    The message names the key path, what was expected and what was got.
    """


class UnsupportedSpaceError(UnibatchError, TypeError):
    """An operation does not apply to this kind of space (e.g. flattening a free-form text)."""


class IndexOutOfRangeError(UnibatchError, IndexError):
    """An index falls outside ``[-len, len)``; the message names the index and the length."""


class InvalidIndexError(UnibatchError, TypeError):
    """An index has a form unibatch does not accept (a bool, a float, a 2-D array...)."""


class ReadOnlyError(UnibatchError, PermissionError):
    """A write was attempted on read-only data."""


class UnsupportedOperationError(UnibatchError, TypeError):
    """The object does not offer this operation (declared by its capabilities)."""


class FormatVersionError(UnibatchError, ValueError):
    """Persisted data was written by an incompatible (usually newer) format version."""


class MissingDependencyError(UnibatchError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class UnknownNameError(UnibatchError, KeyError):
    """A name looked up in a registry (backend, dtype, space type, transformation) is unknown."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


class UnsafePathError(UnibatchError, PermissionError):
    """A path read from persisted state leaves its directory, or goes through a symlink.

    Persisted state is untrusted input: the message names the file that holds the path and the
    offending path, and nothing outside the directory was read, written or deleted.
    """


class CorruptDataError(UnibatchError, OSError):
    """Persisted data contradicts itself or its files (truncated data, impossible ring state, a missing chunk).

    The message names the file and what was expected against what was found; no zeros are served instead.
    """


class RowsOverwrittenError(UnibatchError, IndexError):
    """A reader asked for rows that the writer dropped or overwrote while (or before) they were read."""


class ClosedError(UnibatchError, ValueError):
    """An operation on a buffer, storage or sampler after its ``close()``."""


__all__ = [
    "ClosedError",
    "CorruptDataError",
    "FormatVersionError",
    "IndexOutOfRangeError",
    "InvalidIndexError",
    "MissingDependencyError",
    "ReadOnlyError",
    "RowsOverwrittenError",
    "SpaceMismatchError",
    "UnibatchError",
    "UnknownNameError",
    "UnsafePathError",
    "UnsupportedOperationError",
    "UnsupportedSpaceError",
]
