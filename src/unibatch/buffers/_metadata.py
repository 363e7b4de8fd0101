"""Versioned buffer metadata: read once, written atomically, refused when newer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
