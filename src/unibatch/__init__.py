"""unibatch: typed, backend-agnostic (NumPy, PyTorch, JAX) collections of structured samples.

``import unibatch`` loads NumPy only; PyTorch, JAX and the format libraries load on first use.
"""

from typing import Any

from unibatch._typing import BatchT as BatchT
from unibatch._typing import IndexableType as IndexableType
from unibatch._typing import SamplerArrayType as SamplerArrayType
from unibatch._typing import SamplerBatchT as SamplerBatchT
from unibatch._typing import SamplerDeviceType as SamplerDeviceType
from unibatch._typing import SamplerDtypeType as SamplerDtypeType
from unibatch._typing import SamplerRNGType as SamplerRNGType
from unibatch.backends import ComputeBackend as ComputeBackend
from unibatch.backends import NumpyComputeBackend as NumpyComputeBackend
from unibatch.batches import BatchBase as BatchBase
from unibatch.batches import CombinedBatch as CombinedBatch
from unibatch.batches import FrameStackedBatch as FrameStackedBatch
from unibatch.batches import SliceStackedBatch as SliceStackedBatch
from unibatch.batches import SubIndexedBatch as SubIndexedBatch
from unibatch.batches import SubItemBatch as SubItemBatch
from unibatch.batches import ToBackendOrDeviceBatch as ToBackendOrDeviceBatch
from unibatch.batches import TransformedBatch as TransformedBatch
from unibatch.buffers import ReplayBuffer as ReplayBuffer
from unibatch.buffers import TrajectoryData as TrajectoryData
from unibatch.buffers import TrajectoryReplayBuffer as TrajectoryReplayBuffer
from unibatch.samplers import BatchSampler as BatchSampler
from unibatch.samplers import MultiprocessingSampler as MultiprocessingSampler
from unibatch.samplers import StepSampler as StepSampler
from unibatch.spaces import BatchedSpace as BatchedSpace
from unibatch.spaces import BinarySpace as BinarySpace
from unibatch.spaces import BoxSpace as BoxSpace
from unibatch.spaces import DictSpace as DictSpace
from unibatch.spaces import Space as Space
from unibatch.spaces import TextSpace as TextSpace
from unibatch.spaces import TupleSpace as TupleSpace
from unibatch.storages import SpaceStorage as SpaceStorage
from unibatch.transformations import DataTransformation as DataTransformation

__version__ = "0.1.0.dev0"

_LAZY_BACKENDS = ("PyTorchComputeBackend", "JaxComputeBackend")


def __getattr__(name: str) -> Any:
    if name in _LAZY_BACKENDS:
        from unibatch import backends

        return getattr(backends, name)
    raise AttributeError(f"module 'unibatch' has no attribute {name!r}")


__all__ = [
    "BatchBase",
    "BatchSampler",
    "BatchT",
    "BatchedSpace",
    "BinarySpace",
    "BoxSpace",
    "CombinedBatch",
    "ComputeBackend",
    "DataTransformation",
    "DictSpace",
    "FrameStackedBatch",
    "IndexableType",
    "JaxComputeBackend",
    "MultiprocessingSampler",
    "NumpyComputeBackend",
    "PyTorchComputeBackend",
    "ReplayBuffer",
    "SamplerArrayType",
    "SamplerBatchT",
    "SamplerDeviceType",
    "SamplerDtypeType",
    "SamplerRNGType",
    "SliceStackedBatch",
    "Space",
    "SpaceStorage",
    "StepSampler",
    "SubIndexedBatch",
    "SubItemBatch",
    "TextSpace",
    "ToBackendOrDeviceBatch",
    "TrajectoryData",
    "TrajectoryReplayBuffer",
    "TransformedBatch",
    "TupleSpace",
]
