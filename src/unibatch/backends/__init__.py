"""Compute backends: NumPy, PyTorch and JAX behind one :class:`ComputeBackend` contract.

``import unibatch.backends`` loads neither PyTorch nor JAX: their backends are created on
first access (``unibatch.backends.PyTorchComputeBackend``), and :func:`get_backend` only looks
at libraries that are already imported.
"""

from __future__ import annotations

import sys
from typing import Any

from unibatch.backends._base import ComputeBackend as ComputeBackend
from unibatch.backends._base import dtype_to_name as dtype_to_name
from unibatch.backends._numpy import NumpyComputeBackend as NumpyComputeBackend
from unibatch.backends.transfer import convert as convert
from unibatch.backends.transfer import convert_tree as convert_tree
from unibatch.errors import UnknownNameError

_LAZY = {
    "PyTorchComputeBackend": ("unibatch.backends._torch", "torch"),
    "JaxComputeBackend": ("unibatch.backends._jax", "jax"),
}
_NAMES = {
    "numpy": "NumpyComputeBackend",
    "pytorch": "PyTorchComputeBackend",
    "torch": "PyTorchComputeBackend",
    "jax": "JaxComputeBackend",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        from unibatch._optional import require

        module_name, extra = _LAZY[name]
        require(extra, extra)
        return getattr(importlib.import_module(module_name), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_RESOLVED: dict[str, ComputeBackend] = {"numpy": NumpyComputeBackend}
"""Backends by name once loaded: lookups on hot paths (every array's backend) cost one dict access."""


def backend_from_name(name: str) -> ComputeBackend:
    """The backend persisted as ``name`` (``"numpy"``, ``"pytorch"`` or ``"torch"``, ``"jax"``)."""
    backend = _RESOLVED.get(name)
    if backend is not None:
        return backend
    try:
        attribute = _NAMES[name]
    except KeyError:
        raise UnknownNameError(f"unknown backend {name!r}; known: numpy, pytorch, jax") from None
    backend = NumpyComputeBackend if attribute == "NumpyComputeBackend" else __getattr__(attribute)
    _RESOLVED[name] = backend
    return backend


def get_backend_or_none(x: Any) -> ComputeBackend | None:
    """The backend whose array type ``x`` is, or None; never imports a library."""
    if isinstance(x, sys.modules["numpy"].ndarray):
        return NumpyComputeBackend
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return backend_from_name("pytorch")
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.Array):
        return backend_from_name("jax")
    return None


def get_backend(*arrays: Any) -> ComputeBackend:
    """The one backend all ``arrays`` belong to.

    Raises:
        TypeError: if an argument is not an array of a supported backend, or if the arrays
            belong to different backends.

    >>> import numpy as np
    >>> get_backend(np.zeros(3)).simplified_name
    'numpy'
    """
    if len(arrays) == 1:  # the common call: no set
        backend = get_backend_or_none(arrays[0])
        if backend is not None:
            return backend
    backends = {get_backend_or_none(x) for x in arrays}
    if None in backends or not arrays:
        bad = next((type(x).__name__ for x in arrays if get_backend_or_none(x) is None), "nothing")
        raise TypeError(f"expected arrays of numpy, torch or jax, got {bad}")
    if len(backends) > 1:
        names = sorted(b.simplified_name for b in backends if b is not None)
        raise TypeError(f"arrays of different backends: {', '.join(names)}")
    return backends.pop()  # type: ignore[return-value]


__all__ = [
    "ComputeBackend",
    "JaxComputeBackend",
    "NumpyComputeBackend",
    "PyTorchComputeBackend",
    "backend_from_name",
    "convert",
    "convert_tree",
    "dtype_to_name",
    "get_backend",
    "get_backend_or_none",
]
