"""TupleSpace: an ordered tuple of sub-spaces; values are Python tuples."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from typing_extensions import Self

from unibatch._typing import RNG, Device
from unibatch.backends import ComputeBackend
from unibatch.errors import SpaceMismatchError
from unibatch.spaces._space import Space


class TupleSpace(Space[tuple[Any, ...], Any, Any, Any]):
    """A fixed-length tuple of sub-spaces (all on one backend).

    >>> from unibatch import BinarySpace, NumpyComputeBackend as np_backend
    >>> space = TupleSpace(np_backend, [BinarySpace(np_backend, ()), BinarySpace(np_backend, (2,))])
    >>> len(space), space[1].shape
    (2, (2,))
    """

    def __init__(self, backend: ComputeBackend, spaces: Sequence[Space], device: Device | None = None) -> None:
        children = []
        for position, sub in enumerate(spaces):
            if not isinstance(sub, Space):
                raise SpaceMismatchError(f"TupleSpace[{position}] must be a Space, got {type(sub).__name__}")
            if sub.backend is not backend:
                raise SpaceMismatchError(
                    f"TupleSpace[{position}] is on backend {sub.backend.simplified_name}, "
                    f"expected {backend.simplified_name}"
                )
            children.append(sub if device is None else sub.to(device=device))
        super().__init__(backend, None, None, device)
        self.spaces: tuple[Space, ...] = tuple(children)
        self._requested_device = device

    def __getitem__(self, position: int) -> Space:
        return self.spaces[position]

    def __iter__(self) -> Iterator[Space]:
        return iter(self.spaces)

    def __len__(self) -> int:
        return len(self.spaces)

    def contains(self, x: Any) -> bool:
        return (
            isinstance(x, tuple)
            and len(x) == len(self.spaces)
            and all(sub.contains(value) for sub, value in zip(self.spaces, x, strict=True))
        )

    def sample(self, rng: RNG) -> tuple[RNG, tuple[Any, ...]]:
        values = []
        for sub in self.spaces:
            rng, value = sub.sample(rng)
            values.append(value)
        return rng, tuple(values)

    def create_empty(self) -> tuple[Any, ...]:
        return tuple(sub.create_empty() for sub in self.spaces)

    def to(self, backend: ComputeBackend | None = None, device: Device | None = None) -> Self:
        if backend is None and device is None:
            return self
        children = [sub.to(backend, device) for sub in self.spaces]
        return type(self)(backend or self.backend, children, device=device or self._requested_device)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TupleSpace) and other.backend is self.backend and other.spaces == self.spaces

    def __repr__(self) -> str:
        return f"TupleSpace({list(self.spaces)!r})"
