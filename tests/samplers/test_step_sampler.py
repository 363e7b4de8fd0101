"""StepSampler on every backend: spaces, determinism, epochs, checkpoints, devices, errors."""

from __future__ import annotations

import pickle

import pytest
from tests.batches.sources import robot_batch
from tests.conftest import to_numpy

from unibatch import FrameStackedBatch, ReplayBuffer, ToBackendOrDeviceBatch
from unibatch.errors import IndexOutOfRangeError, ReadOnlyError, SpaceMismatchError
from unibatch.samplers import StepSampler
from unibatch.spaces import flat_dim
from unibatch.storages import MemoryStorage
from unibatch.testing.conformance import assert_tree_equal


def states(batch):
    return to_numpy(batch["obs"]["state"])[..., 0].astype(int).tolist()


def test_samples_are_in_the_sampled_space(backend):
    source, _ = robot_batch(backend, 20)
    sampler = StepSampler(source, batch_size=8, seed=1)
    for _ in range(3):
        batch = sampler.sample()
        assert sampler.sampled_space.contains(batch)
    flat = sampler.sample_flat()
    assert tuple(flat.shape) == (8, flat_dim(source.single_space))
    assert len(sampler) == 20 and sampler.sampled_metadata_space is None
    data, metadata = sampler.sample_with_metadata()
    assert metadata is None and sampler.sampled_space.contains(data)


def test_a_seed_gives_the_same_stream(backend):
    source, _ = robot_batch(backend, 50)
    first, second = StepSampler(source, 16, seed=7), StepSampler(source, 16, seed=7)
    for _ in range(3):
        assert states(first.sample()) == states(second.sample())
    first.manual_seed(3)
    second.manual_seed(3)
    assert to_numpy(first.sample_index()).tolist() == to_numpy(second.sample_index()).tolist()
    other = StepSampler(source, 16, seed=8)
    assert states(other.sample()) != states(StepSampler(source, 16, seed=7).sample())


def test_sampling_is_with_replacement_and_covers_the_data(backend):
    source, _ = robot_batch(backend, 5)
    sampler = StepSampler(source, batch_size=200, seed=0)
    drawn = to_numpy(sampler.sample_index())
    assert drawn.min() == 0 and drawn.max() == 4 and len(set(drawn.tolist())) == 5


@pytest.mark.parametrize("flat", [False, True])
def test_an_epoch_covers_every_index_once_with_a_smaller_last_batch(backend, flat):
    source, _ = robot_batch(backend, 10)
    sampler = StepSampler(source, batch_size=4, seed=2)
    batches = list(sampler.epoch_flat_iter() if flat else sampler.epoch_iter())
    sizes = [int(b.shape[0]) if flat else len(states(b)) for b in batches]
    assert sizes == [4, 4, 2]
    seen = [int(v) for b in batches for v in (to_numpy(b)[:, -3] if flat else states(b))]
    assert sorted(seen) == list(range(10))
    again = [states(b) for b in sampler.epoch_iter()]
    assert sum(again, []) != seen or len(seen) == 1  # a new permutation per epoch


def test_epochs_with_metadata(backend):
    from unibatch import CombinedBatch

    first, _ = robot_batch(backend, 3)
    second, _ = robot_batch(backend, 3, start=3)
    sampler = StepSampler(CombinedBatch([first, second]), batch_size=4, seed=0)
    seen = []
    for data, metadata in sampler.epoch_iter_with_metadata():
        seen += [(s, int(b)) for s, b in zip(states(data), to_numpy(metadata["batch_index"]))]
    assert sorted(seen) == [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1)]
    flat, metadata = next(iter(sampler.epoch_flat_iter_with_metadata()))
    assert tuple(flat.shape)[0] == 4 and tuple(metadata["batch_index"].shape) == (4,)


def test_state_dict_resumes_the_stream_and_the_epoch(backend):
    source, _ = robot_batch(backend, 10)
    sampler = StepSampler(source, batch_size=3, seed=4)
    sampler.sample()
    epoch = sampler.epoch_iter()
    next(epoch)
    checkpoint = pickle.loads(pickle.dumps(sampler.state_dict()))
    expected_epoch = [states(b) for b in epoch]
    expected_samples = [states(sampler.sample()) for _ in range(2)]
    restored = StepSampler(source, batch_size=3, seed=999)
    restored.load_state_dict(checkpoint)
    assert [states(b) for b in restored.epoch_iter()] == expected_epoch
    assert [states(restored.sample()) for _ in range(2)] == expected_samples


def test_output_on_another_backend_and_device(backend, other_backend):
    source, _ = robot_batch(backend, 6)
    sampler = StepSampler(ToBackendOrDeviceBatch(source, other_backend), batch_size=2, seed=0)
    assert other_backend.is_backendarray(sampler.sample()["obs"]["state"])
    on_device = StepSampler(source, batch_size=2, seed=0, device=backend.default_device)
    assert backend.serialize_device(backend.device(on_device.sample()["done"])) == backend.serialize_device(
        backend.default_device
    )


def test_frame_stacked_windows_through_a_sampler(backend):
    source, _ = robot_batch(backend, 12, episodes=[0] * 6 + [1] * 6)
    buffer = ReplayBuffer.create(MemoryStorage, source.single_space, capacity=12)
    buffer.extend(source.get_at(slice(None)))
    mask = FrameStackedBatch.get_valid_mask_function_with_episodeid_key("episode_id")
    sampler = StepSampler(FrameStackedBatch(buffer, prefetch_horizon=2, get_valid_mask_function=mask), 5, seed=0)
    data, metadata = sampler.sample_with_metadata()
    assert tuple(metadata["slice_valid_mask"].shape) == (5, 3)
    assert sampler.sampled_space.contains(data)


def test_errors(backend):
    source, samples = robot_batch(backend, 3)
    sampler = StepSampler(source, batch_size=2, seed=0)
    with pytest.raises(ReadOnlyError):
        sampler.append(samples[0])
    with pytest.raises(SpaceMismatchError, match="batch_size must be positive"):
        StepSampler(source, batch_size=0)
    empty, _ = robot_batch(backend, 0)
    with pytest.raises(IndexOutOfRangeError, match="empty"):
        StepSampler(empty, batch_size=2).sample()
    assert_tree_equal(sampler.get_at(1), samples[1])
