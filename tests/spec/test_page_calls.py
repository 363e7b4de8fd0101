"""Calls written against the reference page, by keyword, as ported code makes them."""

from __future__ import annotations

import typing
from typing import Any

import numpy as np
from tests.batches.test_windows import EPISODES, episode_source
from tests.conftest import to_numpy

from unibatch import (
    BatchT,
    FrameStackedBatch,
    ReplayBuffer,
    SamplerBatchT,
    SliceStackedBatch,
    StepSampler,
    TrajectoryReplayBuffer,
    TransformedBatch,
)
from unibatch.testing.memory_batch import InMemoryBatch
from unibatch.transformations import IdentityTransformation


def test_window_helpers_by_their_page_keywords(backend):
    stacked = FrameStackedBatch(
        episode_source(backend),
        prefetch_horizon=2,
        get_valid_mask_function=SliceStackedBatch.get_valid_mask_function_with_episodeid_key(
            episode_id_key="episode_id", is_in_metadata=False
        ),
        fill_invalid_data=False,
    )
    expanded = stacked.expand_index(index=backend.asarray(np.array([3, 4])))
    data = stacked.batch.get_at(backend.asarray(np.clip(to_numpy(expanded), 0, None).reshape(-1)))
    data = {key: value.reshape((2, 3)) for key, value in data.items()}
    valid = stacked.get_valid_mask(expanded_idx=expanded, data=data, metadata=None)
    assert to_numpy(valid).tolist() == [[False, False, True], [False, True, True]]
    flat = stacked.get_flattened_at([3, 4])
    assert to_numpy(stacked.get_valid_mask_flattened(expanded_idx=expanded, data=flat, metadata=None)).tolist() == (
        to_numpy(valid).tolist()
    )
    filled = stacked.fill_data_with_stack_mask(space=None, data=data["x"], valid_mask=valid)  # None: one array
    assert to_numpy(filled).tolist() == [[3, 3, 3], [3, 3, 4]]  # nearest valid frame toward the centre
    ends = SliceStackedBatch.get_valid_mask_function_with_episode_end_key(episode_end_key="episode_end")
    by_end = FrameStackedBatch(episode_source(backend, ends=True), 1, get_valid_mask_function=ends)
    assert to_numpy(by_end.get_at_with_metadata(3)[1]["slice_valid_mask"]).tolist() == [False, True]
    assert len(EPISODES) == len(stacked)


def test_transformed_get_at_without_an_index_reads_every_sample():
    batch = TransformedBatch(InMemoryBatch.from_range(4, start=5), IdentityTransformation())
    assert batch.get_at()["x"].tolist() == [5, 6, 7, 8]
    assert batch.get_at(idx=None)["x"].tolist() == batch.get_at(...)["x"].tolist()


def helper(buffer: ReplayBuffer[Any, Any, Any, Any, Any]) -> StepSampler[Any, Any, Any, Any, Any]:
    """Annotations as the original tests write them."""
    return StepSampler(buffer, 2, seed=0)


def test_generic_annotations_and_type_variables_at_runtime():
    hints = typing.get_type_hints(helper)  # evaluates the annotations: a class that is not generic raises
    assert hints["buffer"] == ReplayBuffer[Any, Any, Any, Any, Any]
    alias = TrajectoryReplayBuffer[dict, dict, np.ndarray, str, np.dtype, np.random.Generator]
    assert alias.__origin__ is TrajectoryReplayBuffer
    assert BatchT.__name__ == "BatchT" and SamplerBatchT.__name__ == "SamplerBatchT"
