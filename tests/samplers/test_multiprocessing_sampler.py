"""MultiprocessingSampler: determinism across worker counts, epochs, errors, dead workers, contexts."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import to_numpy

from unibatch import BoxSpace, DictSpace, ReplayBuffer, TextSpace, ToBackendOrDeviceBatch, TransformedBatch
from unibatch.backends import backend_from_name
from unibatch.samplers import MultiprocessingSampler, StepSampler, WorkerError
from unibatch.transformations import DataTransformation

NUMPY = backend_from_name("numpy")
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX warns; workers never use JAX


def memmap_buffer(tmp_path, n=64):
    space = DictSpace(
        NUMPY, {"x": BoxSpace(NUMPY, 0, 10_000, "int64"), "v": BoxSpace(NUMPY, -1, 1, "float32", shape=(3,))}
    )
    buffer = ReplayBuffer.create(None, space, capacity=n, cache_path=tmp_path / "rb")
    buffer.extend({"x": np.arange(n), "v": np.linspace(-1, 1, 3 * n, dtype=np.float32).reshape(n, 3)})
    buffer.flush()
    return buffer


def xs(batch):
    return to_numpy(batch["x"]).tolist()


@pytest.mark.parametrize("context", ["fork", "forkserver", "spawn"])
def test_same_batches_for_any_worker_count_and_context(tmp_path, context):
    buffer = memmap_buffer(tmp_path)
    streams = []
    for workers in (1, 3):
        with MultiprocessingSampler(
            StepSampler(buffer, 8, seed=11), workers, 3, multiprocessing.get_context(context)
        ) as sampler:
            samples = [xs(sampler.sample()) for _ in range(6)]
            epoch = [xs(batch) for batch in sampler.epoch_iter()]
            assert all(sampler.sampled_space.contains(sampler.sample()) for _ in range(2))
        streams.append((samples, epoch))
    assert streams[0] == streams[1]
    samples, epoch = streams[0]
    assert len({tuple(s) for s in samples}) == len(samples)  # no duplicated stream between workers
    assert [len(b) for b in epoch] == [8] * 8 and sorted(sum(epoch, [])) == list(range(64))


def test_metadata_flat_and_another_backend(tmp_path, backend):
    buffer = memmap_buffer(tmp_path, 20)
    source = buffer if backend is NUMPY else ToBackendOrDeviceBatch(buffer, backend)
    context = multiprocessing.get_context("spawn" if backend.simplified_name == "jax" else "fork")
    with MultiprocessingSampler(StepSampler(source, 5, seed=0), 2, 2, context) as sampler:
        flat = sampler.sample_flat()
        assert backend.is_backendarray(flat) and tuple(flat.shape) == (5, 4)
        data, metadata = sampler.sample_with_metadata()
        assert metadata is None and backend.is_backendarray(data["v"])
        batches = list(sampler.epoch_flat_iter_with_metadata())
        assert sorted(int(v) for flat_batch, _ in batches for v in to_numpy(flat_batch)[:, -1]) == list(range(20))


def test_results_do_not_change_within_the_validity_window(tmp_path):
    buffer = memmap_buffer(tmp_path)
    with MultiprocessingSampler(StepSampler(buffer, 4, seed=3), 2, 2) as sampler:
        kept = [sampler.sample() for _ in range(3)]
        copies = [xs(batch) for batch in kept]
        for _ in range(2):
            sampler.sample()
        assert xs(kept[-1]) == copies[-1]  # valid for n_buffers further batches


class Explode(DataTransformation):
    def get_target_space_from_source(self, source_space):
        return source_space

    def transform(self, source_space, data):
        raise ValueError("boom in the transform")


def test_a_worker_exception_is_raised_in_the_parent(tmp_path):
    buffer = memmap_buffer(tmp_path)
    sampler = MultiprocessingSampler(StepSampler(TransformedBatch(buffer, Explode()), 4, seed=0), 2, 2)
    with pytest.raises(ValueError, match="boom in the transform") as raised:
        sampler._next_sample(False, False)  # the slot probe runs in the parent first
    sampler.close()
    probe_free = MultiprocessingSampler(StepSampler(buffer, 4, seed=0), 1, 1)
    probe_free._kind(False, False)  # size the slots with the good source
    probe_free.sampler = StepSampler(TransformedBatch(buffer, Explode()), 4, seed=0)
    with pytest.raises(ValueError, match="boom in the transform") as raised:
        probe_free.sample()
    assert "raised in a MultiprocessingSampler worker" in "".join(getattr(raised.value, "__notes__", [""]))
    probe_free.close()


def test_a_killed_worker_makes_the_parent_raise_not_hang(tmp_path):
    buffer = memmap_buffer(tmp_path)
    with MultiprocessingSampler(StepSampler(buffer, 4, seed=0), 1, 1, doze_time=0.01) as sampler:
        sampler.sample()
        os.kill(sampler._workers[0].pid, signal.SIGKILL)
        sampler._workers[0].join(timeout=10)
        with pytest.raises(WorkerError, match="exited with code"):
            for _ in range(5):
                sampler.sample()


def test_seed_checkpoint_close_and_pickled_size(tmp_path):
    buffer = memmap_buffer(tmp_path, 64)
    sampler = MultiprocessingSampler(StepSampler(buffer, 4, seed=5), 2, 2)
    first = [xs(sampler.sample()) for _ in range(3)]
    state = sampler.state_dict()
    following = [xs(sampler.sample()) for _ in range(2)]
    sampler.load_state_dict(state)
    assert [xs(sampler.sample()) for _ in range(2)] == following
    sampler.manual_seed(5)
    assert [xs(sampler.sample()) for _ in range(3)] == first
    sampler.close()
    sampler.close()
    with pytest.raises(WorkerError, match="closed"):
        sampler.sample()
    # A memmap-backed sampler travels to spawned workers as paths, not data.
    assert len(pickle.dumps(StepSampler(buffer, 4, seed=5))) < 20_000
    with pytest.raises(ValueError, match="positive"):
        MultiprocessingSampler(StepSampler(buffer, 4), n_workers=0)


def test_interleaved_epochs_and_samples_never_share_a_slot(tmp_path):
    from unibatch.samplers._indices import uniform_indices
    from unibatch.samplers._worker import request_seed

    buffer = memmap_buffer(tmp_path)
    with MultiprocessingSampler(StepSampler(buffer, 8, seed=21), 2, 2) as sampler:
        first = sampler.sample()
        held = xs(first)
        epoch = sampler.epoch_iter()
        for _ in range(2):
            next(epoch)
        assert xs(first) == held  # still inside its validity window of n_buffers batches
        next(epoch)
        second = sampler.sample()  # prefetched before the epoch started: its slot was never lent out
        rng = NUMPY.random_number_generator(request_seed(21, 1))
        assert xs(second) == uniform_indices(NUMPY, rng, 64, 8)[1].tolist()  # what the workers draw
        del epoch  # an abandoned epoch: its slots come back when their results arrive
        assert len(list(sampler.epoch_iter())) == 8


def test_sample_index_names_the_next_batch_and_reuse_outputs_gives_the_same_batches(tmp_path):
    buffer = memmap_buffer(tmp_path)
    streams = []
    for reuse in (0, 1):
        with MultiprocessingSampler(StepSampler(buffer, 8, seed=4, reuse_outputs=reuse), 2, 2) as sampler:
            expected = to_numpy(sampler.sample_index()).tolist()
            batches = [xs(sampler.sample()) for _ in range(4)]
            assert batches[0] == expected  # the parent computes what a worker draws
            streams.append(batches)
    assert streams[0] == streams[1]


def test_few_unreceived_tasks_allowed_still_gives_every_batch(tmp_path, monkeypatch):
    import unibatch.samplers.multiprocessing as module

    monkeypatch.setattr(module, "MAX_UNRECEIVED", 2)
    buffer = memmap_buffer(tmp_path)
    with MultiprocessingSampler(StepSampler(buffer, 8, seed=6), 2, 5) as sampler:
        assert len({tuple(xs(sampler.sample())) for _ in range(7)}) == 7
        assert sorted(sum((xs(batch) for batch in sampler.epoch_iter()), [])) == list(range(64))
        assert len(sampler._task_slots) - len(sampler._arrived) <= 2


class WithFunction(DataTransformation):
    """Adds a leaf that cannot be pickled back from a worker."""

    def get_target_space_from_source(self, source_space):
        return source_space

    def transform(self, source_space, data):
        return {**data, "f": lambda: 0}


def test_a_result_that_does_not_pickle_is_raised_not_waited_for(tmp_path):
    buffer = memmap_buffer(tmp_path)
    with MultiprocessingSampler(StepSampler(TransformedBatch(buffer, WithFunction()), 4, seed=0), 1, 1) as sampler:
        with pytest.raises(Exception, match="pickle|lambda"):
            sampler.sample()
        assert sampler._workers[0].is_alive()  # the worker reported it and goes on


PARENT_THAT_DIES = """
import os, signal, sys
import numpy as np
from unibatch import BoxSpace, DictSpace, ReplayBuffer
from unibatch.backends import backend_from_name
from unibatch.samplers import MultiprocessingSampler, StepSampler
NUMPY = backend_from_name("numpy")
space = DictSpace(NUMPY, {"x": BoxSpace(NUMPY, 0, 100, "int64")})
buffer = ReplayBuffer.create(None, space, capacity=16)
buffer.extend({"x": np.arange(16)})
sampler = MultiprocessingSampler(StepSampler(buffer, 4, seed=0), 2, 2)
sampler.sample()
print(" ".join(str(worker.pid) for worker in sampler._workers), flush=True)
print(sampler._kinds[(False, False)].directory, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_workers_exit_when_the_parent_is_killed(tmp_path):
    import time

    script = tmp_path / "parent.py"
    script.write_text(PARENT_THAT_DIES)
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]  # (the workers share this pipe)
        slots = Path(parent.stdout.readline().strip())
        parent.wait(timeout=60)
    assert len(pids) == 2 and parent.returncode == -signal.SIGKILL

    def running(pid):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        return state not in ("Z", "X")  # a zombie has exited (reaped by init whenever it likes)

    deadline = time.monotonic() + 30
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [pid for pid in pids if running(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "workers outlived their killed parent"
    assert not slots.exists()  # removed by the workers, as the parent could not


def receive_everything_sent(sampler):
    """Wait until every result still expected has arrived (abandoned ones are filed away on arrival)."""
    while any(task_id not in sampler._arrived for task_id in sampler._task_slots):
        sampler._receive()


def test_dropping_results_that_already_arrived_frees_their_slots(tmp_path):
    buffer = memmap_buffer(tmp_path)
    with MultiprocessingSampler(StepSampler(buffer, 4, seed=0), 1, 2) as sampler:
        for seed in range(6):
            sampler.sample()
            receive_everything_sent(sampler)  # the prefetched result is here when it is dropped
            sampler.manual_seed(seed)
        state = sampler.state_dict()
        for _ in range(3):
            sampler.sample()
            receive_everything_sent(sampler)
            sampler.load_state_dict(state)
        for _ in range(3):
            epoch = sampler.epoch_iter()
            next(epoch)
            receive_everything_sent(sampler)
            epoch.close()  # leaves the loop with a batch in flight that has arrived
        assert not sampler._arrived and not sampler._abandoned and not sampler._task_slots
        slots = sampler._kinds[(False, False)]
        assert slots.count == 4 and len(list(slots.directory.glob("slot_*"))) == 4  # 2 * n_buffers, none added
        assert [xs(batch) for batch in sampler.epoch_iter()]  # and the freed slots serve again


def big_text_sampler(context, workers):
    """Results of ~3 MB of text: pickled into the result pipe, much more than the pipe holds."""
    from unibatch.testing.memory_batch import InMemoryBatch

    texts = np.array([chr(ord("a") + row) * 200_000 for row in range(16)], dtype=object)
    source = InMemoryBatch(TextSpace(NUMPY, 200_000), texts)
    return MultiprocessingSampler(StepSampler(source, 16, seed=0), workers, 1, multiprocessing.get_context(context))


@pytest.mark.parametrize(("context", "workers"), [("fork", 2), ("spawn", 1)])
def test_a_worker_killed_while_sending_a_result_makes_the_parent_raise(context, workers):
    with big_text_sampler(context, workers) as sampler:
        sampler._submit(False, False, None)
        readers = sampler._result_readers
        started = multiprocessing.connection.wait(readers, timeout=60)  # the worker has begun to send
        assert started, "no worker started to send its result"
        sender = sampler._workers[readers.index(started[0])]
        os.kill(sender.pid, signal.SIGKILL)  # the message does not fit in the pipe: it is cut
        sender.join(timeout=10)
        outcome: list[BaseException] = []

        def receive():
            try:
                sampler._receive()
            except BaseException as error:  # noqa: BLE001 - checked below
                outcome.append(error)

        receiving = threading.Thread(target=receive, daemon=True)  # a regression blocks here, not the suite
        receiving.start()
        receiving.join(timeout=30)
        assert not receiving.is_alive(), "the parent waits forever for the rest of the message"
        assert len(outcome) == 1 and isinstance(outcome[0], WorkerError), outcome
        assert "exited with code -9" in str(outcome[0])


EXIT_WITHOUT_CLOSE = """
import multiprocessing, sys
import numpy as np
from unibatch import BoxSpace, DictSpace, ReplayBuffer
from unibatch.backends import backend_from_name
from unibatch.samplers import MultiprocessingSampler, StepSampler

if __name__ == "__main__":
    NUMPY = backend_from_name("numpy")
    buffer = ReplayBuffer.create(None, DictSpace(NUMPY, {"x": BoxSpace(NUMPY, 0, 100, "int64")}), capacity=16)
    buffer.extend({"x": np.arange(16)})
    context = multiprocessing.get_context(sys.argv[1])
    sampler = MultiprocessingSampler(StepSampler(buffer, 4, seed=0), 2, 2, context)
    sampler.sample()
    print(sampler._kinds[(False, False)].directory, flush=True)
    # no sampler.close()
"""


@pytest.mark.parametrize("context", ["fork", "forkserver", "spawn"])
def test_the_interpreter_exits_without_close(tmp_path, context):
    script = tmp_path / "exit.py"
    script.write_text(EXIT_WITHOUT_CLOSE)
    try:
        done = subprocess.run(
            [sys.executable, str(script), context], capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the interpreter waited for the workers at exit")
    assert done.returncode == 0, done.stderr
    assert not Path(done.stdout.strip()).exists()  # the exit close removed the slot files
