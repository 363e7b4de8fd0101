"""Atomic, durable small-file writes: write a temporary file, fsync it, rename it into place."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from unibatch.storages._safe_paths import create_temporary, open_no_follow


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` by ``data`` so that readers see the old or the new content, never a mix."""
    path = Path(path)
    descriptor, temporary = create_temporary(path)  # exclusive, random name: nothing planted is written through
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def atomic_write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """:func:`atomic_write_bytes` of ``payload`` as strict, indented JSON."""
    atomic_write_bytes(path, json.dumps(payload, indent=1, allow_nan=False, sort_keys=True).encode())


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON document at ``path`` (errors name the file); a symlink there is refused (``UnsafePathError``)."""
    from unibatch.errors import FormatVersionError

    try:
        with os.fdopen(open_no_follow(path, os.O_RDONLY), "rb") as handle:
            return json.loads(handle.read())
    except json.JSONDecodeError as error:
        raise FormatVersionError(f"{path} is not valid JSON: {error}") from error


def check_format_version(data: Any, where: object, max_version: int) -> dict[str, Any]:
    """``data`` when it is a JSON object with an integer ``format_version`` in ``[1, max_version]``.

    The one version check of every persisted document (sidecars, attributes, buffer metadata).

    Raises:
        FormatVersionError: naming ``where``, the version found (or its absence) and ``max_version``.
    """
    from unibatch.errors import FormatVersionError

    if not isinstance(data, dict):
        raise FormatVersionError(f"{where} does not hold a JSON object")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise FormatVersionError(f"{where} has no integer format_version (got {version!r}; not written by unibatch?)")
    if version < 1 or version > max_version:
        raise FormatVersionError(
            f"{where} has format_version {version}; this unibatch reads versions 1 to {max_version}"
        )
    return data


def read_sidecar(path: str | os.PathLike[str], kind: str, max_version: int) -> dict[str, Any]:
    """The JSON sidecar file ``path`` of a ``kind`` storage, refusing a ``format_version`` above ``max_version``.

    Raises:
        FileNotFoundError: the file is missing (the message names the storage kind and the file).
        FormatVersionError: the file is not JSON, or has no integer ``format_version`` up to ``max_version``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path.parent} is not a {kind} storage: {path.name} is missing")
    return check_format_version(read_json(path), path, max_version)


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Make a rename in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
