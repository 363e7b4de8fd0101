"""Batches: ``BatchBase`` and the lazy views over it."""

from unibatch.batches._base import BatchBase as BatchBase
from unibatch.batches.backend_compat import ToBackendOrDeviceBatch as ToBackendOrDeviceBatch
from unibatch.batches.combined import CombinedBatch as CombinedBatch
from unibatch.batches.subindex import SubIndexedBatch as SubIndexedBatch
from unibatch.batches.subitem import SubItemBatch as SubItemBatch
from unibatch.batches.transformed import TransformedBatch as TransformedBatch
from unibatch.batches.windows import FrameStackedBatch as FrameStackedBatch
from unibatch.batches.windows import SliceStackedBatch as SliceStackedBatch

__all__ = [
    "BatchBase",
    "CombinedBatch",
    "FrameStackedBatch",
    "SliceStackedBatch",
    "SubIndexedBatch",
    "SubItemBatch",
    "ToBackendOrDeviceBatch",
    "TransformedBatch",
]
