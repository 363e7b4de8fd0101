"""DictSpace: named sub-spaces, keys always kept sorted (decision 2)."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from typing_extensions import Self

from unibatch._typing import RNG, Device
from unibatch.backends import ComputeBackend
from unibatch.errors import SpaceMismatchError
from unibatch.spaces._space import Space


class DictSpace(Space[dict[str, Any], Any, Any, Any]):
    """A mapping of string keys to sub-spaces; values are ``dict`` with exactly those keys.

    Keys are sorted at construction and after every ``space[key] = sub``, and every flat
    layout and concatenation follows that order. Nested plain mappings become DictSpaces.

    >>> from unibatch import BoxSpace, NumpyComputeBackend as np_backend
    >>> space = DictSpace(np_backend, {"state": BoxSpace(np_backend, -1, 1, "float32", shape=(3,))})
    >>> space["action"] = BoxSpace(np_backend, -1, 1, "float32", shape=(2,))
    >>> list(space.keys())
    ['action', 'state']
    """

    def __init__(
        self, backend: ComputeBackend, spaces: Mapping[str, Any] | None = None, device: Device | None = None
    ) -> None:
        super().__init__(backend, None, None, device)
        self._requested_device = device
        self.spaces: dict[str, Space] = {}
        self._set_all(dict(spaces or {}))

    def _set_all(self, spaces: dict[str, Any]) -> None:
        for key, sub in spaces.items():
            if not isinstance(key, str):
                raise SpaceMismatchError(f"DictSpace keys must be str, got {key!r} ({type(key).__name__})")
            spaces[key] = self._adopt(key, sub)
        self.spaces = {key: spaces[key] for key in sorted(spaces)}
        Space.structure_version += 1
        self.device = self._requested_device if self._requested_device is not None else _common_device(self.spaces)

    def _adopt(self, key: str, sub: Any) -> Space:
        if isinstance(sub, Mapping):
            sub = DictSpace(self.backend, sub, device=self._requested_device)
        if not isinstance(sub, Space):
            raise SpaceMismatchError(f"DictSpace[{key!r}] must be a Space, got {type(sub).__name__}")
        if sub.backend is not self.backend:
            raise SpaceMismatchError(
                f"DictSpace[{key!r}] is on backend {sub.backend.simplified_name}, "
                f"expected {self.backend.simplified_name}"
            )
        return sub if self._requested_device is None else sub.to(device=self._requested_device)

    # ------------------------------------------------------------------ mapping
    def __getitem__(self, key: str) -> Space:
        return self.spaces[key]

    def __setitem__(self, key: str, value: Space) -> None:
        self._set_all({**self.spaces, key: value})

    def __delitem__(self, key: str) -> None:
        spaces = dict(self.spaces)
        del spaces[key]
        self._set_all(spaces)

    def __iter__(self) -> Iterator[str]:
        return iter(self.spaces)

    def __len__(self) -> int:
        return len(self.spaces)

    def keys(self) -> KeysView[str]:
        return self.spaces.keys()

    def values(self) -> ValuesView[Space]:
        return self.spaces.values()

    def items(self) -> ItemsView[str, Space]:
        return self.spaces.items()

    # ------------------------------------------------------------------ Space
    def contains(self, x: Any) -> bool:
        return (
            isinstance(x, Mapping)
            and set(x.keys()) == set(self.spaces)
            and all(sub.contains(x[key]) for key, sub in self.spaces.items())
        )

    def sample(self, rng: RNG) -> tuple[RNG, dict[str, Any]]:
        result = {}
        for key, sub in self.spaces.items():
            rng, result[key] = sub.sample(rng)
        return rng, result

    def create_empty(self) -> dict[str, Any]:
        return {key: sub.create_empty() for key, sub in self.spaces.items()}

    def to(self, backend: ComputeBackend | None = None, device: Device | None = None) -> Self:
        if backend is None and device is None:
            return self
        children = {key: sub.to(backend, device) for key, sub in self.spaces.items()}
        return type(self)(backend or self.backend, children, device=device or self._requested_device)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DictSpace) and other.backend is self.backend and other.spaces == self.spaces

    def __repr__(self) -> str:
        inner = ", ".join(f"{key!r}: {sub!r}" for key, sub in self.spaces.items())
        return f"DictSpace({{{inner}}})"

    def __copy__(self) -> DictSpace:
        return DictSpace(self.backend, self.spaces, device=self._requested_device)


def _common_device(spaces: Mapping[str, Space]) -> Any:
    """The device all sub-spaces share, or None when they differ or have none."""
    devices = [sub.device for sub in spaces.values()]
    if not devices or any(d is None for d in devices):
        return None
    first = devices[0]
    backend = next(iter(spaces.values())).backend
    name = backend.serialize_device(first)
    return first if all(backend.serialize_device(d) == name for d in devices) else None
