"""Conversion of arrays between backends and devices: DLPack first, copies where needed.

Zero-copy DLPack exchange is used where the result may safely alias the source. A copy is
made instead when:

* the target is JAX (its arrays are immutable, so they must not alias memory that a buffer
  may later overwrite);
* the source is JAX and the target is PyTorch (a writable tensor over an immutable buffer);
* the source is a read-only NumPy array and the target is writable (e.g. a memmap opened
  read-only): the tensor would otherwise write into protected memory;
* DLPack cannot carry the dtype (NumPy ``bfloat16`` from ml_dtypes): the bytes are moved
  through NumPy and reinterpreted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unibatch._typing import Array, Device
from unibatch.backends._base import ComputeBackend


def convert(x: Array, target: ComputeBackend, device: Device | None = None) -> Array:
    """``x`` (an array of any backend) as an array of ``target`` on ``device``.

    Args:
        x: source array; NumPy, PyTorch or JAX.
        target: the backend of the result.
        device: target device; ``None`` keeps the source device where the target has it
            (always the default device when the source is NumPy).

    Returns:
        An array with the same values, shape and dtype (64-bit dtypes become 32-bit on JAX).
    """
    from unibatch.backends import get_backend

    source = get_backend(x)
    if source is target:
        return target.to_device(x, device)
    if source.simplified_name == "numpy":
        return target.from_numpy(x, device=device)
    if target.simplified_name == "numpy":
        result = source.to_numpy(x)
        target.to_device(result, device)
        return result
    return target.to_device(_between_accelerated(x, source, target), device)


def _between_accelerated(x: Array, source: ComputeBackend, target: ComputeBackend) -> Array:
    """PyTorch <-> JAX: DLPack keeps the data on its device; copies as the module docstring says."""
    must_copy = source.simplified_name == "jax" or target.simplified_name == "jax"
    narrowing = target.dtype_name(target.as_dtype(source.dtype_name(x.dtype))) != source.dtype_name(x.dtype)
    if narrowing:  # 64-bit into JAX's 32-bit: cast on the host like the NumPy path (checks, no FTZ)
        return target.from_numpy(source.to_numpy(x))
    try:
        if target.simplified_name == "jax":
            import jax.numpy as jnp

            # from_dlpack(copy=True) still aliases CPU tensors in jax 0.10: copy explicitly.
            return jnp.array(jnp.from_dlpack(x.detach()), copy=True)
        import torch

        result = torch.from_dlpack(x)
        return result.clone() if must_copy else result
    except (BufferError, RuntimeError, TypeError, ValueError):
        return target.from_numpy(np.array(source.to_numpy(x)))


def convert_tree(tree: Any, target: ComputeBackend, device: Device | None = None) -> Any:
    """Convert every array leaf of a nested dict/list/tuple; other leaves are kept as they are."""
    import optree

    from unibatch.backends import get_backend_or_none

    def leaf(value: Any) -> Any:
        if get_backend_or_none(value) is None or (isinstance(value, np.ndarray) and value.dtype == object):
            return value  # Python values and object arrays (texts) stay as they are on every backend
        return convert(value, target, device)

    return optree.tree_map(leaf, tree, none_is_leaf=True)
