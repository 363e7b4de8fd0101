"""unibatch: typed, backend-agnostic (NumPy, PyTorch, JAX) collections of structured samples.

``import unibatch`` loads NumPy only; PyTorch, JAX and the format libraries load on first use.
"""

from typing import Any

from unibatch._typing import IndexableType as IndexableType
from unibatch.backends import ComputeBackend as ComputeBackend
from unibatch.backends import NumpyComputeBackend as NumpyComputeBackend
from unibatch.spaces import BatchedSpace as BatchedSpace
from unibatch.spaces import BinarySpace as BinarySpace
from unibatch.spaces import BoxSpace as BoxSpace
from unibatch.spaces import DictSpace as DictSpace
from unibatch.spaces import Space as Space
from unibatch.spaces import TextSpace as TextSpace
from unibatch.spaces import TupleSpace as TupleSpace
from unibatch.transformations import DataTransformation as DataTransformation

__version__ = "0.1.0.dev0"

_LAZY_BACKENDS = ("PyTorchComputeBackend", "JaxComputeBackend")


def __getattr__(name: str) -> Any:
    if name in _LAZY_BACKENDS:
        from unibatch import backends

        return getattr(backends, name)
    raise AttributeError(f"module 'unibatch' has no attribute {name!r}")


__all__ = [
    "BatchedSpace",
    "BinarySpace",
    "BoxSpace",
    "ComputeBackend",
    "DataTransformation",
    "DictSpace",
    "IndexableType",
    "JaxComputeBackend",
    "NumpyComputeBackend",
    "PyTorchComputeBackend",
    "Space",
    "TextSpace",
    "TupleSpace",
]
