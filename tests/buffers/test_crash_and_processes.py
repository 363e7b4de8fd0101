"""Crash consistency (SIGKILL of a writer process) and one writer + one reader process sharing a buffer.

DESIGN.md §5: a writer killed at any point leaves a buffer that reopens consistent: every row is a
complete row, rows keep their order, and every row committed by the last completed ``flush()`` that
has not been overwritten since is there. The writer processes live in ``_workers.py``; every row
carries its sequence number in every leaf (see there), so a torn row cannot go unnoticed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tests.buffers._workers import decode, read_all, row, row_space, rows

from unibatch import BoxSpace
from unibatch.backends import backend_from_name
from unibatch.buffers import ReplayBuffer, TrajectoryReplayBuffer
from unibatch.buffers.replay_buffer import COMMIT_RESERVE_FRACTION, COMMIT_RESERVE_LIMIT
from unibatch.cli import verify

NP = backend_from_name("numpy")
WORKERS = Path(__file__).with_name("_workers.py")
EPISODE = 4


# ---------------------------------------------------------------------------------------------- helpers


def start_worker(*args: object, stderr_path: Path) -> subprocess.Popen:
    with open(stderr_path, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, str(WORKERS), *map(str, args)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group: killed as a whole, never leaked
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def run_worker(*args: object, timeout: float = 90) -> subprocess.CompletedProcess:
    process = subprocess.Popen(
        [sys.executable, str(WORKERS), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"worker {args} did not finish in {timeout} s\n{out}\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def log_events(path: Path) -> list[tuple[str, ...]]:
    """The complete lines of a writer's log (a kill may leave half a line at the end)."""
    text = path.read_text() if path.exists() else ""
    return [tuple(line.split()) for line in text.split("\n")[:-1]]


def wait_for_ready(log: Path, process: subprocess.Popen, stderr_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(event[0] == "R" for event in log_events(log)):
            return
        if process.poll() is not None:
            pytest.fail(f"the writer exited with {process.returncode} before starting:\n{stderr_path.read_text()}")
        time.sleep(0.01)
    pytest.fail("the writer did not start in time")


def check_after_kill(
    seqs: list[int], previous: list[int], events: list[tuple[str, ...]], capacity: int | None, base: int
) -> None:
    """The reliability contract, given what the writer logged before it was killed.

    The writer's stream is ``previous`` (what it loaded) followed by rows ``base + i``; ``B i n``
    is logged before rows i..i+n-1 are written, ``F i`` after a flush of the first i rows returned.
    """
    assert events and events[0][0] == "R", f"no start line in the log: {events[:3]}"
    assert int(events[0][1]) == len(previous), f"the writer loaded {events[0][1]} rows, the parent {len(previous)}"
    starts = [(int(e[1]), int(e[2])) for e in events if e[0] == "B"]
    flushes = [int(e[1]) for e in events if e[0] == "F"]
    written = max((i + n for i, n in starts), default=0)  # rows begun, the last write maybe unfinished
    stream = previous + [base + i for i in range(written)]
    committed = stream[: len(previous) + (flushes[-1] if flushes else 0)]
    end = len(stream)
    if capacity is not None:
        committed = committed[-capacity:]
        # Not overwritten, even by the write in flight, nor among the oldest rows a full ring drops
        # from the committed range ahead of time (the commit reserve of ReplayBuffer).
        reserve = min(capacity // COMMIT_RESERVE_FRACTION, COMMIT_RESERVE_LIMIT)
        alive = set(stream[max(0, end - capacity + reserve) : end])
    else:
        alive = set(stream)
    required = [s for s in committed if s in alive]

    assert all(a < b for a, b in zip(seqs, seqs[1:])), f"rows out of order: {seqs}"
    if capacity is not None:
        assert len(seqs) <= capacity
    if seqs:
        assert seqs[0] in stream, f"row {seqs[0]} was never written by the writer"
        first = stream.index(seqs[0])
        assert stream[first : first + len(seqs)] == seqs, f"{seqs} is not a run of the writer's rows"
    missing = [s for s in required if s not in set(seqs)]
    assert not missing, (
        f"committed rows {missing} are missing after the kill (flushes={flushes[-3:]}, written={written}, "
        f"reload holds {seqs})"
    )


def create_buffer(path: Path, capacity: int | None, fill: int = 0) -> None:
    buffer = ReplayBuffer.create(None, row_space(), cache_path=path, capacity=capacity, initial_rows=4)
    if fill:
        buffer.extend(rows(list(range(fill))))
        buffer.flush()
    buffer.close()


def reload(path: Path) -> list[int]:
    with ReplayBuffer.load_from(path, backend=NP) as loaded:
        return read_all(loaded)  # raises on any torn row


# ---------------------------------------------------------------------------------------------- crash


def sigkill_rounds(
    tmp_path: Path, capacity: int | None, rounds: int, seed: int, max_chunk: int, flush_choices: tuple[int, ...]
) -> None:
    path = tmp_path / "rb"
    create_buffer(path, capacity)
    rng = random.Random(seed)
    previous: list[int] = []
    kills_with_rows = flushes = 0
    for round_index in range(1, rounds + 1):
        log = tmp_path / f"round{round_index}.log"
        stderr_path = tmp_path / f"round{round_index}.err"
        base = round_index * 1_000_000
        writer = start_worker(
            "crash-writer",
            path,
            log,
            base,
            rng.choice(flush_choices),
            max_chunk,
            rng.randrange(2**31),
            stderr_path=stderr_path,
        )
        try:
            wait_for_ready(log, writer, stderr_path)
            # Mostly long enough to wrap the ring several times; sometimes right after the start.
            time.sleep(rng.choice([0.0, 0.003]) if rng.random() < 0.2 else rng.uniform(0.05, 0.4))
            assert writer.poll() is None, f"the writer stopped on its own:\n{stderr_path.read_text()}"
        finally:
            stop(writer)
        assert writer.returncode == -signal.SIGKILL, f"writer exit {writer.returncode}:\n{stderr_path.read_text()}"
        seqs = reload(path)
        check_after_kill(seqs, previous, log_events(log), capacity, base)
        kills_with_rows += bool(seqs)
        flushes += sum(event[0] == "F" for event in log_events(log))
        previous = seqs
    assert kills_with_rows and flushes, "the rounds never committed a row: the test checked nothing"


@pytest.mark.slow
@pytest.mark.parametrize(("capacity", "seed"), [(13, 1), (24, 2)])
def test_sigkill_of_an_appending_writer_leaves_a_consistent_ring(tmp_path, capacity, seed):
    """Appends wrap a small ring many times; random kills, each round resuming from the reload."""
    sigkill_rounds(tmp_path, capacity, rounds=8, seed=seed, max_chunk=1, flush_choices=(1, 3, 8, 50))


@pytest.mark.slow
def test_sigkill_of_a_growable_writer_leaves_a_consistent_buffer(tmp_path):
    sigkill_rounds(tmp_path, None, rounds=5, seed=3, max_chunk=5, flush_choices=(1, 4, 9))


@pytest.mark.parametrize(
    ("capacity", "writes"),
    [(12, 0), (12, 3), (12, 7), (12, 12), (12, 19), (None, 0), (None, 6)],
)
def test_kill_in_the_middle_of_a_row_write(tmp_path, capacity, writes):
    """Deterministic: storage write number ``writes + 1`` leaves a torn row, then SIGKILL."""
    path = tmp_path / "rb"
    create_buffer(path, capacity, fill=12)
    log = tmp_path / "torn.log"
    done = run_worker("torn-writer", path, log, 1_000_000, 5, writes)
    assert done.returncode == -signal.SIGKILL, done.stderr
    seqs = reload(path)
    events = log_events(log)
    check_after_kill(seqs, list(range(12)), events, capacity, 1_000_000)
    if capacity is not None:
        assert len(seqs) >= capacity - 1 - 5  # at most the torn slot and the unflushed appends are out
    else:
        assert seqs[:12] == list(range(12))


def test_sigkill_after_a_write_wrapping_into_a_partial_committed_range(tmp_path):
    path = tmp_path / "rb"
    create_buffer(path, 10)
    done = run_worker("straddle-kill", path)
    assert done.returncode == -signal.SIGKILL, done.stderr
    seqs = reload(path)  # complete rows only, in order
    assert {2, 3, 4, 5} <= set(seqs), f"rows 2..5 were committed and never overwritten; reload holds {seqs}"


def verify_ok(path: Path) -> None:
    with contextlib.redirect_stdout(None):
        assert verify.run(argparse.Namespace(path=path, chunk=64)) == 0, f"unibatch verify {path} reports problems"


def opened_rows(path: Path, kind: str, **options: object) -> list[int]:
    """The rows a buffer opened with ``options`` reads; ``len()`` at open must already count them."""
    if kind == "trajectory":
        with TrajectoryReplayBuffer.load_from(path, backend=NP, **options) as trajectory:  # type: ignore[arg-type]
            length = len(trajectory)
            data, metadata = trajectory.get_at_with_metadata(slice(None))
            seqs = decode(data["step_data"]) if length else []
            assert np.asarray(metadata["episode_ids"]).tolist() == [s // EPISODE for s in seqs]
            assert np.asarray(data["episode_data"]).tolist() == [s // EPISODE for s in seqs]
    else:
        with ReplayBuffer.load_from(path, backend=NP, **options) as buffer:  # type: ignore[arg-type]
            length = len(buffer)
            seqs = read_all(buffer)
    assert len(seqs) == length, f"opened with {options}: len() said {length}, a read of every row gave {seqs}"
    return seqs


@pytest.mark.parametrize("kind", ["ring", "ring-clear", "trajectory"])
def test_every_opener_sees_the_same_rows_after_a_kill_between_the_front_and_the_metadata(tmp_path, kind):
    """The writer announced dropped rows on ``commits.live``, then died before ``metadata.json`` said so.

    A reader (at open and after reading), ``unibatch verify``, a writer reopening read-write (also
    ``multiprocessing=True``) and a reader after that writer must all see the same rows: the
    committed ones without those the front announced (at most the commit reserve of a full ring).
    """
    path, capacity = tmp_path / "buffer", 16
    if kind == "trajectory":
        trajectory = TrajectoryReplayBuffer.create(
            row_space(),
            None,
            step_data_capacity=capacity,
            episode_data_instance_space=BoxSpace(NP, 0, 2**40, "int64", shape=()),
            episode_data_capacity=8,
            cache_path=path,
        )
        for episode in range(5):
            trajectory.set_current_episode_data(np.asarray(episode, np.int64))
            trajectory.extend(rows([episode * EPISODE + k for k in range(EPISODE)]))
            trajectory.mark_episode_end()
        trajectory.close()
    else:
        create_buffer(path, capacity, fill=capacity + 3)
    committed = opened_rows(path, kind)
    assert len(committed) == capacity
    done = run_worker("announce-kill", path, kind)
    assert done.returncode == -signal.SIGKILL, f"{done.stdout}\n{done.stderr}"

    announced = capacity if kind == "ring-clear" else 1 + min(capacity // COMMIT_RESERVE_FRACTION, COMMIT_RESERVE_LIMIT)
    expected = committed[announced:]
    assert opened_rows(path, kind, read_only=True) == expected
    if kind != "trajectory":
        assert ReplayBuffer.get_length_from_path(path) == len(expected)
    verify_ok(path)
    assert opened_rows(path, kind, read_only=False) == expected
    assert opened_rows(path, kind, read_only=False, multiprocessing=True) == expected
    assert opened_rows(path, kind, read_only=True) == expected  # the reopened writers republished the same front
    if kind != "trajectory":  # a writer resumes from the same rows, and readers follow it
        with ReplayBuffer.load_from(path, backend=NP, read_only=False) as writer:
            reader = ReplayBuffer.load_from(path, backend=NP)
            writer.append(row(7))
            writer.flush()
            assert read_all(reader) == expected  # the ring had room: the new row took a slot it had dropped
            assert reader.refresh() == len(expected) + 1 and read_all(reader) == [*expected, 7]
            reader.close()


# ---------------------------------------------------------------------------------------------- processes


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize(("kind", "capacity"), [("shared", 16), ("shared", None), ("memmap", 16), ("memmap", None)])
def test_one_writer_and_one_reader_process(method, kind, capacity):
    """The reader checks every row it sees is complete and in order; bounded loops and timeouts.

    Runs in a fresh interpreter whose default start method is ``method`` (the buffer's shared
    counters and lock must work whatever the default; mixing contexts is the next test).
    """
    done = run_worker("mp", method, kind, capacity, 400)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    reads = int(done.stdout.split("reads=")[1].split()[0])
    assert reads >= 1


def test_a_shared_buffer_can_be_handed_to_a_spawn_context_process():
    """The default start method is 'fork', the reader a 'spawn' context process: the ring state still shares."""
    done = run_worker("spawn-from-fork-default")
    assert "child read 5" in done.stdout, f"{done.stdout}\n{done.stderr}"


def test_a_forked_child_closing_a_shared_memory_buffer_keeps_the_parents_data():
    done = run_worker("fork-close")
    assert "exitcode=0" in done.stdout, done.stderr
    assert "exists=True" in done.stdout


def test_flush_in_another_process_than_the_growing_writer():
    done = run_worker("grow-in-child")
    assert "child exitcode=0" in done.stdout, done.stderr
    assert "reloaded [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in done.stdout, done.stdout
