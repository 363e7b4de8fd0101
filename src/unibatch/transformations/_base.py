"""``DataTransformation``: a map from values of a source space to values of a target space.

Transformations accept data with any number of leading batch axes beyond the space they are
given (they act on trailing axes and broadcast bounds from the right), so the same object
serves one sample and a batch. They are stored in metadata by registered name:
``{"name": "rescale", "configuration": {...}}``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from typing_extensions import Self

from unibatch.errors import SpaceMismatchError, UnknownNameError, UnsupportedOperationError
from unibatch.spaces import Space

JsonDict = dict[str, Any]
_REGISTRY: dict[str, type[DataTransformation]] = {}
T = TypeVar("T", bound="type[DataTransformation]")


def register_transformation(name: str) -> Callable[[T], T]:
    """Class decorator: persist the class under ``name`` (never under its import path)."""

    def decorate(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"transformation name {name!r} is already registered by {_REGISTRY[name].__name__}")
        cls.registered_name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


class DataTransformation(ABC):
    """Maps values of a source space to values of a target space, maybe invertibly.

    Subclasses implement :meth:`get_target_space_from_source` and :meth:`transform`, set
    ``has_inverse`` and implement :meth:`direction_inverse` when it is True, and describe their
    constructor arguments in :meth:`config` so that the default serialization works.
    """

    has_inverse: ClassVar[bool] = False
    registered_name: ClassVar[str | None] = None

    @abstractmethod
    def get_target_space_from_source(self, source_space: Space) -> Space:
        """The space of transformed values; raises if ``source_space`` is not supported."""

    @abstractmethod
    def transform(self, source_space: Space, data: Any) -> Any:
        """Transform ``data`` (a value of ``source_space``, maybe with leading batch axes)."""

    def direction_inverse(self, source_space: Space | None = None) -> DataTransformation:
        """The transformation from the target space back to ``source_space``."""
        raise UnsupportedOperationError(f"{type(self).__name__} has no inverse")

    def config(self) -> JsonDict:
        """JSON-compatible constructor arguments: ``type(self)(**self.config())`` is equal."""
        return {}

    def serialize(self, source_space: Space | None = None) -> JsonDict:
        """``{"name": registered name, "configuration": config()}``."""
        if self.registered_name is None:
            raise UnsupportedOperationError(f"{type(self).__name__} is not registered; use @register_transformation")
        return {"name": self.registered_name, "configuration": self.config()}

    @classmethod
    def deserialize_from(cls, json: JsonDict, source_space: Space | None = None) -> Self:
        """Rebuild from :meth:`serialize` output."""
        return cls(**json.get("configuration", {}))

    def close(self) -> None:  # noqa: B027  (a default, not an abstract hook)
        """Release resources (none by default); idempotent."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataTransformation) and type(other) is type(self) and other.config() == self.config()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({arguments})"


def transformation_to_json(transformation: DataTransformation, source_space: Space | None = None) -> JsonDict:
    """The persisted form of ``transformation``."""
    return transformation.serialize(source_space)


def json_to_transformation(json: JsonDict, source_space: Space | None = None) -> DataTransformation:
    """Rebuild a transformation from :func:`transformation_to_json` output, by registered name."""
    if not isinstance(json, dict) or "name" not in json:
        raise SpaceMismatchError(f"not a serialized transformation (a dict with a 'name'): {json!r}")
    try:
        cls = _REGISTRY[json["name"]]
    except KeyError:
        raise UnknownNameError(f"unknown transformation {json['name']!r}; known: {sorted(_REGISTRY)}") from None
    return cls.deserialize_from(json, source_space)
