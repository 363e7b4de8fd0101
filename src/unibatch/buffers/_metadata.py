"""Versioned buffer metadata: read once, written atomically, refused when newer."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from unibatch.errors import CorruptDataError, UnibatchError
from unibatch.storages._atomic import atomic_write_json, check_format_version, read_json

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1


def write_metadata(directory: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Atomically replace ``directory/metadata.json`` with ``payload`` plus ``format_version``."""
    atomic_write_json(Path(directory) / METADATA_FILE, {"format_version": FORMAT_VERSION, **payload})


def read_metadata(directory: str | os.PathLike[str], expected_type: str | None = None) -> dict[str, Any] | None:
    """The metadata in ``directory``, or None when there is none (or of another ``type``).

    Raises:
        FormatVersionError: the file is not valid JSON, has no integer ``format_version``, or
            was written by a newer unibatch.
    """
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        return None
    data = check_format_version(read_json(path), path, FORMAT_VERSION)
    if expected_type is not None and data.get("type") != expected_type:
        return None
    return data


def require_fields(data: dict[str, Any], where: object, fields: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """``data`` when it holds every field of ``fields`` with a value of its JSON type.

    Raises:
        CorruptDataError: naming ``where``, the field, the expected type and what was found.
    """
    for name, kind in fields.items():
        if name not in data:
            raise CorruptDataError(f"{where} has no {name!r} field")
        value = data[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise CorruptDataError(f"{where}: field {name!r} has the wrong type, got {value!r}")
    return data


@contextlib.contextmanager
def persisted_state_of(path: str | os.PathLike[str]) -> Iterator[None]:
    """Opening a buffer from ``path``: a malformed field anywhere in its persisted state raises a typed error.

    Persisted state is untrusted input. Fields are checked where they are parsed; a field of a
    type no parser expected (a number where an object belongs...) surfaces as a builtin
    ``KeyError``/``TypeError``/``ValueError``/``IndexError``, which becomes :class:`CorruptDataError`
    here, naming the buffer. Typed errors pass unchanged.
    """
    try:
        yield
    except UnibatchError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise CorruptDataError(f"{path} holds malformed persisted state: {type(error).__name__}: {error}") from error
