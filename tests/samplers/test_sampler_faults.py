"""MultiprocessingSampler under faults: slot directories of killed owners, a stopped worker."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from unibatch import BoxSpace, DictSpace, ReplayBuffer
from unibatch.backends import backend_from_name
from unibatch.samplers import MultiprocessingSampler, StepSampler, WorkerError
from unibatch.samplers._shared_slots import SHARED_MEMORY_ROOT, SLOTS_PREFIX, _owner_tag

NUMPY = backend_from_name("numpy")
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX warns; workers never use JAX

OWNER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from unibatch import BoxSpace, DictSpace, ReplayBuffer
    from unibatch.backends import backend_from_name
    from unibatch.samplers import MultiprocessingSampler, StepSampler

    np_ = backend_from_name("numpy")
    space = DictSpace(np_, {"x": BoxSpace(np_, 0, 10_000, "int64")})
    buffer = ReplayBuffer.create(None, space, capacity=16)
    buffer.extend({"x": np.arange(16)})
    sampler = MultiprocessingSampler(StepSampler(buffer, 4, seed=0), 1, 2)
    if sys.argv[1] == "before-first-task":
        sampler._start()
        sampler._kind(False, False)  # the directory exists; no worker has mapped it yet
    else:
        sampler.sample()  # the worker knows the directory (it removes it when only the parent dies)
    print(*[str(kind.directory) for kind in sampler._kinds.values()], flush=True)
    time.sleep(120)
    """
)


def slot_root() -> Path:
    import tempfile

    return SHARED_MEMORY_ROOT if SHARED_MEMORY_ROOT.is_dir() else Path(tempfile.gettempdir())


def buffer_of(n: int = 32) -> ReplayBuffer:
    space = DictSpace(NUMPY, {"x": BoxSpace(NUMPY, 0, 10_000, "int64")})
    buffer = ReplayBuffer.create(None, space, capacity=n)
    buffer.extend({"x": np.arange(n)})
    return buffer


def killed_owner_directory(group: bool) -> Path:
    """Start a sampler in a child process and SIGKILL it before its first task (or its whole process
    group after a batch): its slot directory stays behind."""
    mode = "after-a-batch" if group else "before-first-task"
    child = subprocess.Popen(
        [sys.executable, "-c", OWNER, mode], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        line = child.stdout.readline().strip()  # type: ignore[union-attr]
        assert line, "the owner did not start"
    finally:
        if group:
            os.killpg(child.pid, signal.SIGKILL)
        else:
            child.kill()  # the worker exits by itself: its task pipe reaches end-of-file
        child.wait(30)
        child.stdout.close()  # type: ignore[union-attr]
        time.sleep(0.2)  # let an orphaned worker exit
    directory = Path(line)
    assert directory.is_dir()  # leaked: nobody closed it
    return directory


@pytest.mark.parametrize("group", [False, True], ids=["owner", "process-group"])
def test_slot_directories_of_killed_owners_are_reclaimed_at_the_next_start(group):
    stale = killed_owner_directory(group)
    mine = slot_root() / f"{SLOTS_PREFIX}{_owner_tag(os.getpid())}-live"  # a live owner: this process
    reused = slot_root() / f"{SLOTS_PREFIX}{os.getpid()}-1-reused"  # a live pid, another start time
    foreign = slot_root() / f"{SLOTS_PREFIX}notours"
    for directory in (mine, reused, foreign):
        directory.mkdir()
    try:
        with MultiprocessingSampler(StepSampler(buffer_of(), 4, seed=0), 1, 2) as sampler:
            sampler.sample()
            assert not stale.exists()
            assert not reused.exists()  # the pid lives, but it is another process than the owner
            assert mine.is_dir() and foreign.is_dir()
            assert all(kind.directory.is_dir() for kind in sampler._kinds.values())
    finally:
        for directory in (stale, mine, reused, foreign):
            shutil.rmtree(directory, ignore_errors=True)


def test_a_stopped_worker_raises_a_worker_error_naming_it_after_the_timeout():
    sampler = MultiprocessingSampler(
        StepSampler(buffer_of(), 4, seed=0), 1, 2, multiprocessing.get_context("fork"), timeout=0.5
    )
    worker = None
    try:
        sampler.sample()
        (worker,) = sampler._workers
        os.kill(worker.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(WorkerError, match=rf"worker 0 \(pid {worker.pid}\).*0.5 s"):
            for _ in range(10):  # the batches already prefetched come first
                sampler.sample()
        assert time.monotonic() - started < 10
    finally:
        if worker is not None:
            os.kill(worker.pid, signal.SIGCONT)
        sampler.close()
    assert worker is not None and not worker.is_alive()


def test_the_timeout_is_validated_and_none_waits():
    with pytest.raises(ValueError, match="timeout"):
        MultiprocessingSampler(StepSampler(buffer_of(), 4, seed=0), 1, 2, timeout=0)
    with MultiprocessingSampler(StepSampler(buffer_of(), 4, seed=0), 1, 2, timeout=None) as sampler:
        assert sampler.timeout is None and len(sampler.sample()["x"]) == 4
