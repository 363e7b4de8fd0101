"""MultiprocessingSampler outputs: owned by default, reused every N calls only with ``reuse_outputs=N``."""

from __future__ import annotations

import gc
import multiprocessing

import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch import BoxSpace, DictSpace, ReplayBuffer, ToBackendOrDeviceBatch
from unibatch.backends import backend_from_name
from unibatch.samplers import MultiprocessingSampler, StepSampler

NUMPY = backend_from_name("numpy")
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX warns; workers never use JAX


def buffer_of(rows: int) -> ReplayBuffer:
    space = DictSpace(NUMPY, {"x": BoxSpace(NUMPY, 0, 10_000, "int64"), "v": BoxSpace(NUMPY, -1, 1, "float32")})
    buffer = ReplayBuffer.create(None, space, capacity=rows)
    buffer.extend({"x": np.arange(rows), "v": np.linspace(-1, 1, rows, dtype=np.float32)})
    return buffer


def context_for(backend):
    return multiprocessing.get_context("spawn" if backend.simplified_name == "jax" else "fork")


def test_kept_epoch_batches_own_their_memory_on_every_backend(backend):
    buffer = buffer_of(46)
    source = buffer if backend is NUMPY else ToBackendOrDeviceBatch(buffer, backend)
    step = StepSampler(source, 4, seed=11)
    sampler = MultiprocessingSampler(step, n_workers=1, n_buffers=4, ctx=context_for(backend))
    with sampler:
        batches = list(sampler.epoch_iter())
        flat = list(sampler.epoch_flat_iter())
        samples = [sampler.sample() for _ in range(12)]
        copies = [to_numpy(batch["x"]).copy() for batch in samples]
        for _ in range(12):
            sampler.sample()  # would overwrite reused slots
    rows = [int(x) for batch in batches for x in to_numpy(batch["x"])]  # read after the sampler is closed
    assert sorted(rows) == list(range(46))
    assert sorted(int(x) for batch in flat for x in to_numpy(batch)[:, -1]) == list(range(46))
    assert all(np.array_equal(to_numpy(batch["x"]), copy) for batch, copy in zip(samples, copies, strict=True))


def test_a_slot_comes_back_when_its_batch_is_collected():
    with MultiprocessingSampler(StepSampler(buffer_of(64), 8, seed=0), n_workers=1, n_buffers=2) as sampler:
        for _ in range(20):  # dropped at once: the slots serve again, no new slot file
            assert len(sampler.sample()["x"]) == 8
        slots = sampler._kinds[(False, False)]
        assert slots.count == 4
        kept = [sampler.sample() for _ in range(6)]  # kept: their slots are not reused, more are made
        assert slots.count > 4 and len({int(batch["x"].ctypes.data) for batch in kept}) == 6
        count = slots.count
        leaf = kept[0]["v"][2:]  # a view of one leaf keeps its slot
        del kept
        gc.collect()
        for _ in range(20):
            sampler.sample()
        assert slots.count == count  # the released slots served the later batches
        before = leaf.copy()
        for _ in range(10):
            sampler.sample()
        assert np.array_equal(leaf, before)


@pytest.mark.parametrize("reuse", [1, 3])
def test_reuse_outputs_keeps_a_batch_valid_for_n_calls_then_reuses_its_slot(reuse):
    sampler = StepSampler(buffer_of(64), 8, seed=0)
    with MultiprocessingSampler(sampler, n_workers=1, n_buffers=2, reuse_outputs=reuse) as reusing:
        first = reusing.sample()
        held = first["x"].copy()
        later = [reusing.sample() for _ in range(reuse)]
        assert np.array_equal(first["x"], held)  # valid for reuse_outputs further batches
        shared = [np.shares_memory(first["x"], batch["x"]) for batch in [*later, *(reusing.sample() for _ in range(4))]]
        assert not any(shared[:reuse]) and any(shared[reuse:])  # then its slot serves again
    with pytest.raises(ValueError, match="reuse_outputs must be non-negative"):
        MultiprocessingSampler(sampler, reuse_outputs=-1)


def test_reuse_outputs_gives_the_same_batches_as_owned_outputs():
    streams = []
    for reuse in (0, 2):
        with MultiprocessingSampler(StepSampler(buffer_of(30), 4, seed=5), 2, 2, reuse_outputs=reuse) as sampler:
            samples = [to_numpy(sampler.sample()["x"]).tolist() for _ in range(5)]
            epoch = [to_numpy(batch["x"]).tolist() for batch in sampler.epoch_iter()]
        streams.append((samples, epoch))
    assert streams[0] == streams[1]
