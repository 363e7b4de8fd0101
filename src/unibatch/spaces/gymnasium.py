"""Conversion between unibatch spaces and Gymnasium spaces (optional dependency ``gym``).

Gymnasium ``Discrete``/``MultiDiscrete`` become integer ``BoxSpace`` (inclusive bounds
``start .. start + n - 1``), ``MultiBinary`` becomes ``BinarySpace``. Going back, a
``BinarySpace`` becomes ``MultiBinary`` (whose values are ``int8`` 0/1, not ``bool``) and
every ``BoxSpace`` a Gymnasium ``Box``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unibatch._optional import require
from unibatch._typing import Device
from unibatch.backends import ComputeBackend, NumpyComputeBackend
from unibatch.errors import UnsupportedSpaceError
from unibatch.spaces._space import Space
from unibatch.spaces.binary import BinarySpace
from unibatch.spaces.box import BoxSpace
from unibatch.spaces.dict import DictSpace
from unibatch.spaces.text import TextSpace
from unibatch.spaces.tuple import TupleSpace


def from_gymnasium_space(
    space: Any, backend: ComputeBackend = NumpyComputeBackend, device: Device | None = None
) -> Space:
    """The unibatch space equivalent to a Gymnasium space.

    >>> import gymnasium
    >>> from_gymnasium_space(gymnasium.spaces.Discrete(3))
    BoxSpace(0, 2, (), int64)
    """
    spaces = require("gymnasium", "gym").spaces
    if isinstance(space, spaces.Box):
        return BoxSpace(backend, space.low, space.high, space.dtype, device, shape=space.shape)
    if isinstance(space, spaces.Discrete):
        start = int(space.start)
        return BoxSpace(backend, start, start + int(space.n) - 1, space.dtype, device, shape=())
    if isinstance(space, spaces.MultiDiscrete):
        return BoxSpace(backend, space.start, space.start + space.nvec - 1, space.dtype, device, shape=space.shape)
    if isinstance(space, spaces.MultiBinary):
        return BinarySpace(backend, space.shape, device=device)
    if isinstance(space, spaces.Dict):
        return DictSpace(
            backend, {k: from_gymnasium_space(s, backend, device) for k, s in space.spaces.items()}, device
        )
    if isinstance(space, spaces.Tuple):
        return TupleSpace(backend, [from_gymnasium_space(s, backend, device) for s in space.spaces], device)
    if isinstance(space, spaces.Text):
        charset = "".join(sorted(space.character_set))
        return TextSpace(backend, space.max_length, min_length=space.min_length, charset=charset, device=device)
    raise UnsupportedSpaceError(f"no unibatch equivalent for Gymnasium {type(space).__name__}")


def to_gymnasium_space(space: Space) -> Any:
    """The Gymnasium space equivalent to a unibatch space (NumPy dtypes)."""
    spaces = require("gymnasium", "gym").spaces
    if isinstance(space, BoxSpace):
        low, high = (np.broadcast_to(b, space.shape) for b in space.host_bounds())
        return spaces.Box(low, high, shape=space.shape, dtype=space.backend.numpy_dtype(space.dtype))
    if isinstance(space, BinarySpace):
        return spaces.MultiBinary(list(space.shape) if space.shape else 1)
    if isinstance(space, DictSpace):
        return spaces.Dict({key: to_gymnasium_space(sub) for key, sub in space.items()})
    if isinstance(space, TupleSpace):
        return spaces.Tuple([to_gymnasium_space(sub) for sub in space.spaces])
    if isinstance(space, TextSpace):
        if space.charset is None:
            return spaces.Text(space.max_length, min_length=space.min_length)
        return spaces.Text(space.max_length, min_length=space.min_length, charset=space.charset)
    raise UnsupportedSpaceError(f"no Gymnasium equivalent for {space!r}")
