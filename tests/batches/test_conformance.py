"""The BatchBase conformance suite on the in-memory source and on every view, on all backends."""

from __future__ import annotations

import numpy as np
from tests.batches.sources import robot_batch, robot_sample

from unibatch.backends import backend_from_name
from unibatch.batches import (
    CombinedBatch,
    FrameStackedBatch,
    SliceStackedBatch,
    SubIndexedBatch,
    SubItemBatch,
    ToBackendOrDeviceBatch,
    TransformedBatch,
)
from unibatch.spaces import batch_space, flatten_data
from unibatch.testing.conformance import BatchCase, BatchTests, host, stack_samples
from unibatch.transformations import DictTransformation, RescaleTransformation


class TestInMemoryBatch(BatchTests):
    def make_case(self, backend):
        batch, samples = robot_batch(backend, 7, text=True)
        return BatchCase(batch, samples, new_sample=robot_sample(backend, 50, text=True))


class TestEmptyInMemoryBatch(BatchTests):
    def make_case(self, backend):
        batch, samples = robot_batch(backend, 0)
        return BatchCase(batch, samples)


class TestReadOnlyInMemoryBatch(BatchTests):
    def make_case(self, backend):
        batch, samples = robot_batch(backend, 4, mutable=False)
        return BatchCase(batch, samples, new_sample=robot_sample(backend, 9))


class TestSubIndexedBatch(BatchTests):
    def make_case(self, backend):
        batch, samples = robot_batch(backend, 9)
        view = SubIndexedBatch(batch, slice(7, 0, -2))
        return BatchCase(view, [samples[i] for i in range(7, 0, -2)], new_sample=robot_sample(backend, 99))


class TestSubIndexedMask(BatchTests):
    def make_case(self, backend):
        batch, samples = robot_batch(backend, 6)
        mask = np.array([True, False, True, True, False, True])
        view = SubIndexedBatch(batch, backend.asarray(mask))
        return BatchCase(view, [s for s, m in zip(samples, mask) if m], new_sample=robot_sample(backend, 17))


class TestSubIndexedLive(BatchTests):
    def make_case(self, backend):
        batch, samples = robot_batch(backend, 5)
        return BatchCase(SubIndexedBatch(batch, ...), samples, new_sample=robot_sample(backend, 42))


class TestSubItemBatch(BatchTests):
    def make_case(self, backend):
        batch, samples = robot_batch(backend, 6)
        return BatchCase(SubItemBatch(batch, ["obs", "state"]), [s["obs"]["state"] for s in samples])


class TestTransformedBatch(BatchTests):
    def make_case(self, backend):
        batch, samples = robot_batch(backend, 5)
        rescale = RescaleTransformation(0.0, 1.0, "float32")
        view = TransformedBatch(batch, DictTransformation({"episode_id": rescale}))
        expected = []
        for sample in samples:
            rescaled = dict(sample)
            rescaled["episode_id"] = backend.asarray(np.float32(float(host(sample["episode_id"])) / 1000))
            expected.append(rescaled)
        new = robot_sample(backend, 77)
        new["episode_id"] = backend.asarray(np.float32(0.5))
        return BatchCase(view, expected, new_sample=new)


class TestCombinedBatch(BatchTests):
    def make_case(self, backend):
        first, first_samples = robot_batch(backend, 3)
        empty, _ = robot_batch(backend, 0)
        second, second_samples = robot_batch(backend, 4, start=10)
        samples = first_samples + second_samples
        metadata = [{"batch_index": np.int64(0 if i < 3 else 2)} for i in range(7)]
        return BatchCase(CombinedBatch([first, empty, second]), samples, metadata, new_sample=robot_sample(backend, 5))


class TestToBackendOrDeviceBatch(BatchTests):
    def make_case(self, backend):
        source_backend = backend_from_name("numpy") if backend.simplified_name != "numpy" else backend
        batch, samples = robot_batch(source_backend, 5)
        view = ToBackendOrDeviceBatch(batch, backend)
        converted = [host(s) for s in samples]
        return BatchCase(view, converted, new_sample=robot_sample(backend, 31))


class TestDeviceOnlyBatch(BatchTests):
    def make_case(self, backend):
        batch, samples = robot_batch(backend, 4)
        view = ToBackendOrDeviceBatch(batch, device=backend.default_device)
        return BatchCase(view, samples, new_sample=robot_sample(backend, 8))


def window_oracle(samples, episodes):
    """Frames ``i - 2 .. i + 1`` of every row, invalid ones filled from their neighbour toward the centre."""
    expected, metadata = [], []
    for i in range(len(episodes)):
        frames = [i - 2, i - 1, i, i + 1]
        valid = [0 <= f < len(episodes) and episodes[f] == episodes[i] for f in frames]
        filled = list(frames)
        for t in (1, 0):
            if not valid[t]:
                filled[t] = filled[t + 1]
        if not valid[3]:
            filled[3] = filled[2]
        expected.append(stack_samples([samples[f] for f in filled]))
        metadata.append({"slice_valid_mask": np.array(valid)})
    return expected, metadata


class TestFrameStackedBatch(BatchTests):
    def expected_flat(self, case, data, single):
        frame = batch_space(case.batch.batch.single_space, 1)
        return (
            flatten_data(frame, data, start_dim=1) if single else flatten_data(batch_space(frame, 1), data, start_dim=2)
        )

    def make_case(self, backend):
        episodes = [0, 0, 0, 1, 1, 1, 1, 2]
        batch, samples = robot_batch(backend, len(episodes), episodes=episodes)
        mask = FrameStackedBatch.get_valid_mask_function_with_episodeid_key()
        view = FrameStackedBatch(batch, prefetch_horizon=2, postfetch_horizon=1, get_valid_mask_function=mask)
        return BatchCase(view, *window_oracle(samples, episodes))


class TestSliceStackedBatch(TestFrameStackedBatch):
    """The same windows through ``SliceStackedBatch`` with explicit offsets given as a backend array."""

    def make_case(self, backend):
        episodes = [0, 0, 0, 1, 1, 1, 1, 2]
        batch, samples = robot_batch(backend, len(episodes), episodes=episodes)
        mask = SliceStackedBatch.get_valid_mask_function_with_episodeid_key()
        offsets = backend.asarray(np.array([-2, -1, 0, 1]), dtype=backend.default_index_dtype)
        view = SliceStackedBatch(batch, offsets, get_valid_mask_function=mask)
        return BatchCase(view, *window_oracle(samples, episodes))
