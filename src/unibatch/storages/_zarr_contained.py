"""A zarr ``LocalStore`` whose writes and deletes never leave its root (imported only when zarr is used).

Keys come from zarr's own layout (array paths from the space, chunk keys), but the directories
they name are on disk, where a stranger may have replaced one by a symlink (``obs/c`` pointing at
another dataset). Every ``set`` and ``delete`` first checks its key with
:func:`~unibatch.storages._safe_paths.resolve_inside` (one ``lstat`` per key part, per chunk
written: no cost per row); reads are left to the open-time check of the array directories.
"""

from __future__ import annotations

from typing import Any

from zarr.storage import LocalStore

from unibatch.storages._safe_paths import resolve_inside

GROUP_DOCUMENT = "zarr.json"


class ContainedLocalStore(LocalStore):
    """``LocalStore`` that raises ``UnsafePathError`` for a key leading out of its root through a symlink."""

    async def set(self, key: str, value: Any) -> None:
        self.contain(key)
        await super().set(key, value)

    async def set_if_not_exists(self, key: str, value: Any) -> None:
        self.contain(key)
        await super().set_if_not_exists(key, value)

    async def delete(self, key: str) -> None:
        self.contain(key)
        await super().delete(key)

    async def delete_dir(self, prefix: str) -> None:
        if prefix.strip("/"):
            self.contain(prefix)
        await super().delete_dir(prefix)

    def contain(self, key: str) -> None:
        """Raise ``UnsafePathError`` unless ``root/key`` stays inside the root (symlinks resolved)."""
        resolve_inside(self.root, key.strip("/"), source=self.root / GROUP_DOCUMENT)
