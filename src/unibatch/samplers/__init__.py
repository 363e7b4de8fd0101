"""Samplers: mini-batches drawn from a batch (``StepSampler``), in worker processes, for DataLoaders."""

from unibatch.samplers.base import BatchSampler as BatchSampler
from unibatch.samplers.multiprocessing import MultiprocessingSampler as MultiprocessingSampler
from unibatch.samplers.multiprocessing import WorkerError as WorkerError
from unibatch.samplers.step import StepSampler as StepSampler

__all__ = ["BatchSampler", "MultiprocessingSampler", "StepSampler", "WorkerError"]
