"""The ``Space`` base class: what one value (a sample) looks like."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic

from typing_extensions import Self, TypeVar

from unibatch._typing import RNG, Device
from unibatch.backends import ComputeBackend, convert_tree

DataT = TypeVar("DataT", default=Any)
DeviceT = TypeVar("DeviceT", default=Any)
DTypeT = TypeVar("DTypeT", default=Any)
RNGT = TypeVar("RNGT", default=Any)


class Space(ABC, Generic[DataT, DeviceT, DTypeT, RNGT]):
    """Describes one value: its structure, shape, dtype, backend and device.

    Spaces compare by structure (``==``) and never by device; ``x in space`` is
    :meth:`contains`. Randomness is explicit: ``sample(rng)`` returns ``(new_rng, value)``.
    """

    structure_version = 0
    """Bumped whenever a DictSpace changes its keys, so cached per-space plans are rebuilt."""

    def __init__(
        self,
        backend: ComputeBackend,
        shape: tuple[int, ...] | None,
        dtype: DTypeT | None,
        device: DeviceT | None,
    ) -> None:
        self.backend = backend
        self.shape = shape
        self.dtype = dtype
        self.device = device

    @abstractmethod
    def contains(self, x: Any) -> bool:
        """Whether ``x`` is a value of this space (structure, shape, dtype kind and range)."""

    def __contains__(self, x: Any) -> bool:
        return self.contains(x)

    @abstractmethod
    def sample(self, rng: RNG) -> tuple[RNG, DataT]:
        """A random value of this space; returns ``(new_rng, value)``."""

    @abstractmethod
    def create_empty(self) -> DataT:
        """An uninitialised value of this space (zeros on backends without ``empty``)."""

    @abstractmethod
    def to(self, backend: ComputeBackend | None = None, device: Device | None = None) -> Self:
        """The same space on another backend and/or device; ``self`` when nothing changes."""

    def data_to(self, data: DataT, backend: ComputeBackend | None = None, device: Device | None = None) -> Any:
        """Convert every array of ``data`` (a value of this space) to ``backend``/``device``."""
        return convert_tree(data, backend or self.backend, device)

    @abstractmethod
    def __eq__(self, other: object) -> bool: ...

    __hash__ = None  # type: ignore[assignment]  # spaces are mutable (DictSpace.__setitem__)

    def _unchanged(self, backend: ComputeBackend | None, device: Device | None) -> bool:
        """Whether ``to(backend, device)`` would give an equal space on the same device."""
        same_backend = backend is None or backend is self.backend
        same_device = device is None or (
            self.device is not None
            and self.backend.serialize_device(self.device) == self.backend.serialize_device(device)
        )
        return same_backend and same_device
