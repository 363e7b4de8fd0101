"""TextSpace: Python strings of bounded length over an optional character set."""

from __future__ import annotations

import string
from typing import Any

from typing_extensions import Self

from unibatch._typing import RNG, Device
from unibatch.backends import ComputeBackend
from unibatch.errors import SpaceMismatchError
from unibatch.spaces._space import Space

DEFAULT_SAMPLE_CHARSET = string.ascii_letters + string.digits
"""Characters drawn by :meth:`TextSpace.sample` when the space has no charset."""


class TextSpace(Space[str, Any, Any, Any]):
    """Python ``str`` values with ``min_length <= len(x) <= max_length``.

    With a ``charset`` every character must belong to it, and the space can be flattened
    (each character becomes its index in the charset, padded with ``len(charset)``).

    >>> from unibatch import NumpyComputeBackend as np_backend
    >>> space = TextSpace(np_backend, 8, charset="abc")
    >>> "abca" in space, "abd" in space
    (True, False)
    """

    def __init__(
        self,
        backend: ComputeBackend,
        max_length: int,
        *,
        min_length: int = 0,
        charset: str | None = None,
        device: Device | None = None,
    ) -> None:
        if not 0 <= int(min_length) <= int(max_length):
            raise SpaceMismatchError(f"TextSpace needs 0 <= min_length <= max_length, got {min_length}, {max_length}")
        if charset is not None and (not charset or len(set(charset)) != len(charset)):
            raise SpaceMismatchError(f"TextSpace charset must be non-empty without repeats, got {charset!r}")
        super().__init__(backend, None, None, device)
        self.min_length = int(min_length)
        self.max_length = int(max_length)
        self.charset = charset
        self._charset_index = None if charset is None else {c: i for i, c in enumerate(charset)}

    def character_index(self, character: str) -> int:
        """Position of ``character`` in the charset (the flat encoding of a character)."""
        if self._charset_index is None or character not in self._charset_index:
            raise SpaceMismatchError(f"character {character!r} is not in the charset {self.charset!r}")
        return self._charset_index[character]

    def contains(self, x: Any) -> bool:
        if not isinstance(x, str) or not self.min_length <= len(x) <= self.max_length:
            return False
        return self._charset_index is None or all(c in self._charset_index for c in x)

    def sample(self, rng: RNG) -> tuple[RNG, str]:
        charset = self.charset or DEFAULT_SAMPLE_CHARSET
        rng, length = self.backend.random_discrete_uniform((), self.min_length, self.max_length + 1, rng=rng)
        rng, codes = self.backend.random_discrete_uniform((self.max_length,), 0, len(charset), rng=rng)
        codes = self.backend.to_numpy(codes)[: int(length)]
        return rng, "".join(charset[int(i)] for i in codes)

    def create_empty(self) -> str:
        return ""

    def to(self, backend: ComputeBackend | None = None, device: Device | None = None) -> Self:
        if self._unchanged(backend, device):
            return self
        return type(self)(
            backend or self.backend, self.max_length, min_length=self.min_length, charset=self.charset, device=device
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TextSpace)
            and other.backend is self.backend
            and (other.min_length, other.max_length, other.charset) == (self.min_length, self.max_length, self.charset)
        )

    def __repr__(self) -> str:
        return f"TextSpace({self.min_length}..{self.max_length}, charset={self.charset!r})"
