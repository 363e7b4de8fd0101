"""Column views of leaf-array storages: one field of every row, sharing the parent's arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from unibatch.errors import SpaceMismatchError
from unibatch.spaces import DictSpace, Space, TupleSpace
from unibatch.storages._base import PathLike, SpaceStorage, StorageIndex
from unibatch.storages._leaves import Leaf, assemble, split_value


class LeafArrayStorage(Protocol):
    """What a storage with one array per leaf offers its column views."""

    _leaves: list[Leaf]

    def _get_leaves(self, positions: Sequence[int], index: StorageIndex) -> list[Any]: ...

    def _set_leaves(self, positions: Sequence[int], index: StorageIndex, values: list[Any]) -> None: ...


class LeafColumnStorage(SpaceStorage):
    """The field at ``nested_keys`` of a leaf-array storage: reads and writes touch only its leaves."""

    def __init__(self, parent: SpaceStorage, nested_keys: Sequence[str]) -> None:
        space, prefix = _sub_space(parent.single_instance_space, list(nested_keys))
        super().__init__(space)
        self.parent = parent
        leaves: list[Leaf] = parent._leaves  # type: ignore[attr-defined]
        self._positions = [
            i for i, leaf in enumerate(leaves) if leaf.name == prefix or leaf.name.startswith(prefix + "/")
        ]
        self.capacity = parent.capacity
        self.is_mutable = parent.is_mutable
        self.is_multiprocessing_safe = parent.is_multiprocessing_safe

    def __len__(self) -> int:
        return len(self.parent)

    def _get(self, index: StorageIndex) -> Any:
        return assemble(self.single_instance_space, self.parent._get_leaves(self._positions, index))  # type: ignore[attr-defined]

    def _set(self, index: StorageIndex, value: Any) -> None:
        self._check_writable("set")
        values = split_value(self.single_instance_space, value)
        self.parent._set_leaves(self._positions, index, values)  # type: ignore[attr-defined]

    def dumps(self, path: PathLike) -> None:
        self.parent.dumps(path)

    def flush(self) -> None:
        self.parent.flush()


def _sub_space(space: Space, keys: list[str]) -> tuple[Space, str]:
    """The sub-space at a key path and its leaf-name prefix (``"obs/image"``)."""
    for position, key in enumerate(keys):
        if isinstance(space, DictSpace) and key in space.spaces:
            space = space[key]
        elif isinstance(space, TupleSpace) and key.lstrip("-").isdigit() and -len(space) <= int(key) < len(space):
            space = space[int(key)]
        else:
            raise SpaceMismatchError(f"column {'/'.join(keys[: position + 1])!r} does not exist in the storage")
    return space, "/".join(keys)
