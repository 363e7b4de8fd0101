"""Processes for test_crash_and_processes.py, run as ``python _workers.py MODE ARGS...``.

Only NumPy and unibatch are imported here (no JAX or PyTorch threads), so forking is safe. Every
row encodes its sequence number ``s`` in every leaf, so a row mixing two writes is detectable:

* ``seq``: int64 ``(8,)`` all ``s``;  ``x``: float64 ``(2048,)`` = ``s + arange / 2`` (16 KiB, several pages);
* ``img``: uint8 ``(64, 64)`` all ``s % 251``;  ``flag``: ``s`` odd;  ``note``: ``str(s)``.

Modes:

* ``crash-writer PATH LOG BASE FLUSH_EVERY MAX_CHUNK SEED``: reopen the buffer at PATH writable and
  append rows ``BASE + i`` forever (chunks of 1..MAX_CHUNK rows, ``flush()`` every FLUSH_EVERY rows),
  logging ``R count`` once loaded, ``B i n`` before writing rows i..i+n-1 and ``F i`` after each
  completed flush. The parent SIGKILLs it.
* ``torn-writer PATH LOG BASE FLUSH_EVERY WRITES``: like crash-writer with single-row appends, but
  storage write number WRITES + 1 writes a row mixing new and poisoned leaves, then SIGKILLs itself.
* ``straddle-kill PATH``: flush at 6 rows of 10, extend 6 (wrapping into the committed rows), SIGKILL.
* ``announce-kill PATH KIND``: reopen the buffer at PATH writable (KIND ``ring``, ``ring-clear``:
  a ``ReplayBuffer``, ``trajectory``: a ``TrajectoryReplayBuffer``) and append one step to its full
  ring (or ``clear()`` it); the commit that drops its oldest rows announces them on ``commits.live``
  and SIGKILLs the writer before ``metadata.json`` says so (the state a writer that published the
  front before the commit left; the front is published after it now, so every opener must settle it).
* ``mp METHOD KIND CAPACITY ROWS``: with start method METHOD, one writer and one reader process share a
  ``multiprocessing=True`` buffer (KIND ``shared``: memory storage in shared memory, ``memmap``: a
  persistent buffer); the reader checks every row it sees. Exit status 0 when both succeed.
* ``fork-close``: a forked child closes its copy of a shared-memory buffer; prints whether the
  parent's storage directory still exists.
* ``grow-in-child``: a forked child extends a shared growable memmap buffer, the parent flushes it;
  prints what a reload gives.
* ``spawn-from-fork-default``: the default start method is 'fork'; a 'spawn' context process gets a
  shared buffer; prints what it read or the error.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from unibatch import BinarySpace, BoxSpace, DictSpace, TextSpace
from unibatch.backends import backend_from_name
from unibatch.buffers import ReplayBuffer
from unibatch.spaces import Space, concatenate
from unibatch.storages import MemoryStorage

NP = backend_from_name("numpy")
X_WIDTH = 2048


def row_space() -> Space:
    return DictSpace(
        NP,
        {
            "seq": BoxSpace(NP, 0, 2**50, "int64", shape=(8,)),
            "x": BoxSpace(NP, -1e15, 1e15, "float64", shape=(X_WIDTH,)),
            "img": BoxSpace(NP, 0, 255, "uint8", shape=(64, 64)),
            "flag": BinarySpace(NP, ()),
            "note": TextSpace(NP, 12, charset="0123456789"),
        },
    )


def row(s: int) -> dict[str, Any]:
    return {
        "seq": np.full(8, s, np.int64),
        "x": s + np.arange(X_WIDTH, dtype=np.float64) / 2,
        "img": np.full((64, 64), s % 251, np.uint8),
        "flag": np.asarray(bool(s % 2)),
        "note": str(s),
    }


def rows(seqs: list[int]) -> Any:
    return concatenate(row_space(), [row(s) for s in seqs])


def decode(batch: Any) -> list[int]:
    """The sequence numbers of a batch read with ``get_at``; raises on any torn or foreign row."""
    seq = np.asarray(batch["seq"])
    n = seq.shape[0]
    numbers = seq[:, 0].astype(np.int64)
    assert (seq == numbers[:, None]).all(), f"torn 'seq' leaf: {seq.tolist()}"
    x = np.asarray(batch["x"])
    assert (x == numbers[:, None] + np.arange(X_WIDTH) / 2).all(), f"torn 'x' leaf in rows {numbers.tolist()}"
    img = np.asarray(batch["img"]).reshape(n, -1)
    assert (img == (numbers % 251)[:, None]).all(), f"torn 'img' leaf in rows {numbers.tolist()}"
    flag = np.asarray(batch["flag"]).reshape(n)
    assert (flag == (numbers % 2 == 1)).all(), f"torn 'flag' leaf in rows {numbers.tolist()}"
    notes = [str(t) for t in np.asarray(batch["note"], dtype=object).reshape(n)]
    assert notes == [str(s) for s in numbers.tolist()], f"torn 'note' leaf: {notes} vs {numbers.tolist()}"
    return [int(s) for s in numbers]


def read_all(buffer: ReplayBuffer) -> list[int]:
    if len(buffer) == 0:
        return []
    return decode(buffer.get_at(slice(None)))


class Log:
    """Append-only line log; each line is one ``write`` system call (survives SIGKILL)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def line(self, text: str) -> None:
        os.write(self.fd, (text + "\n").encode())


# ---------------------------------------------------------------------------------------------- crash writers


def crash_writer(path: str, log_path: str, base: int, flush_every: int, max_chunk: int, seed: int) -> None:
    buffer = ReplayBuffer.load_from(path, backend=NP, read_only=False, single_instance_space=row_space())
    log = Log(log_path)
    rng = random.Random(seed)
    log.line(f"R {len(buffer)}")
    written = since_flush = 0
    deadline = time.monotonic() + 60  # the parent kills us long before; never run forever
    while time.monotonic() < deadline:
        n = rng.randint(1, max_chunk)
        log.line(f"B {written} {n}")
        if n == 1:
            buffer.append(row(base + written))
        else:
            buffer.extend(rows([base + written + k for k in range(n)]))
        written += n
        since_flush += n
        if since_flush >= flush_every:
            buffer.flush()
            log.line(f"F {written}")
            since_flush = 0
    sys.exit(3)


def torn_writer(path: str, log_path: str, base: int, flush_every: int, writes: int) -> None:
    buffer = ReplayBuffer.load_from(path, backend=NP, read_only=False, single_instance_space=row_space())
    log = Log(log_path)
    storage = buffer.storage
    original_set = storage._set  # what the buffer writes through (normalised indices)
    calls = 0

    def set_then_die(index: Any, value: Any) -> None:
        nonlocal calls
        calls += 1
        if calls <= writes:
            original_set(index, value)
            return
        # A row torn between two writes: the first leaves new, the others poisoned, then a kill.
        poisoned = dict(value)
        poisoned["x"] = np.full_like(np.asarray(value["x"]), -1.0)
        poisoned["note"] = (
            "9" * 12 if np.ndim(value["note"]) == 0 else np.full(np.shape(value["note"]), "9" * 12, dtype=object)
        )
        original_set(index, poisoned)
        os.kill(os.getpid(), signal.SIGKILL)

    storage._set = set_then_die  # type: ignore[method-assign]
    log.line(f"R {len(buffer)}")
    written = 0
    while True:
        log.line(f"B {written} 1")
        buffer.append(row(base + written))
        written += 1
        if written % flush_every == 0:
            buffer.flush()
            log.line(f"F {written}")


def straddle_kill(path: str) -> None:
    buffer = ReplayBuffer.load_from(path, backend=NP, read_only=False, single_instance_space=row_space())
    buffer.extend(rows(list(range(6))))
    buffer.flush()  # committed: rows 0..5 of a capacity-10 ring
    buffer.extend(rows(list(range(6, 12))))  # overwrites the slots of rows 0 and 1 only
    os.kill(os.getpid(), signal.SIGKILL)


def announce_kill(path: str, kind: str) -> None:
    import unibatch.buffers.replay_buffer as replay_module
    import unibatch.buffers.trajectory as trajectory_module
    from unibatch.buffers import TrajectoryReplayBuffer

    def killed(directory: Any, payload: dict[str, Any]) -> None:
        # A writer publishes the front after metadata.json; one that published it first (as unibatch did
        # before) and died in between left the front ahead of the commit. Make that state, then die.
        from unibatch.buffers._live import LIVE_FILE, CommitFront

        start = payload["steps"]["start"] if "steps" in payload else payload["start"]
        CommitFront(Path(directory) / LIVE_FILE, writable=True).publish(start)
        os.kill(os.getpid(), signal.SIGKILL)  # the front says the rows left; the metadata never will

    if kind == "trajectory":
        trajectory = TrajectoryReplayBuffer.load_from(path, backend=NP)
        trajectory_module.write_metadata = killed  # type: ignore[assignment]
        trajectory.append(row(10**6))
    else:
        buffer = ReplayBuffer.load_from(path, backend=NP, read_only=False, single_instance_space=row_space())
        replay_module.write_metadata = killed  # type: ignore[assignment]
        if kind == "ring-clear":
            buffer.clear()
        else:
            buffer.append(row(10**6))
    raise SystemExit(f"{kind}: the writer was not killed: no commit dropped rows")


# ---------------------------------------------------------------------------------------------- two processes


def writer_process(buffer: ReplayBuffer, total: int, started: Any, flush_every: int) -> None:
    rng = random.Random(7)
    if not started.wait(30):
        raise SystemExit("the reader never started")
    written = 0
    while written < total:
        n = min(rng.choice([1, 1, 1, 2, 3, 5]), total - written)
        if n == 1:
            buffer.append(row(written))
        else:
            buffer.extend(rows(list(range(written, written + n))))
        written += n
        if flush_every and written % flush_every < n:
            buffer.flush()
        if written % 16 < n:
            time.sleep(0.002)  # let the reader in now and then
    buffer.flush()  # commits in the writing process (see grow_in_child for a flush elsewhere)


def reader_process(buffer: ReplayBuffer, total: int, started: Any, reads: Any, capacity: int | None) -> None:
    started.set()
    deadline = time.monotonic() + 45
    first = -1
    while time.monotonic() < deadline:
        seqs = read_all(buffer)
        if capacity is not None:
            assert len(seqs) <= capacity, f"{len(seqs)} rows in a ring of {capacity}"
        else:
            assert not seqs or seqs[0] == 0, f"a growable buffer lost its first rows: {seqs[:3]}"
        if seqs:
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"rows out of order: {seqs}"
            assert seqs[0] >= first, f"the oldest row went back from {first} to {seqs[0]}"
            first = seqs[0]
            (newest,) = decode(_one(buffer.get_at(-1)))
            assert newest >= seqs[-1], f"the newest row {newest} is older than {seqs[-1]} read before"
        reads.value += 1
        if seqs and seqs[-1] == total - 1 and len(buffer) == (total if capacity is None else min(total, capacity)):
            return
    raise AssertionError(f"the reader never saw row {total - 1} (last read {first}..)")


def _one(sample: dict[str, Any]) -> dict[str, Any]:
    """One sample as a batch of one (leaf-wise ``[None]``)."""
    return {
        key: (np.asarray(value, dtype=object)[None] if key == "note" else np.asarray(value)[None])
        for key, value in sample.items()
    }


def mp_driver(method: str, kind: str, capacity: int | None, total: int) -> int:
    multiprocessing.set_start_method(method)  # the buffer's shared counters and lock follow it
    workdir = Path(tempfile.mkdtemp(prefix="unibatch-mp-"))
    if kind == "shared":
        buffer = ReplayBuffer.create(
            MemoryStorage, row_space(), capacity=capacity, multiprocessing=True, initial_rows=4
        )
    else:
        buffer = ReplayBuffer.create(
            None, row_space(), cache_path=workdir / "rb", capacity=capacity, multiprocessing=True, initial_rows=4
        )
    shared_dir = buffer.storage.cache_filename
    assert buffer.is_multiprocessing_safe
    context = multiprocessing.get_context(method)
    started = context.Event()
    reads = context.Value("q", 0)
    flush_every = 40 if kind == "memmap" else 0
    writer = context.Process(target=writer_process, args=(buffer, total, started, flush_every), daemon=True)
    reader = context.Process(target=reader_process, args=(buffer, total, started, reads, capacity), daemon=True)
    status = 0
    try:
        reader.start()
        writer.start()
        for process in (writer, reader):
            process.join(50)
            if process.exitcode is None:
                print(f"{process.name} hung", file=sys.stderr)
                status = 2
            elif process.exitcode != 0:
                print(f"{process.name} failed with exit code {process.exitcode}", file=sys.stderr)
                status = 1
        if status == 0:
            final = read_all(buffer)
            expected = list(range(total)) if capacity is None else list(range(max(0, total - capacity), total))
            if final != expected:
                print(f"the parent sees {final[:5]}..., expected {expected[:5]}...", file=sys.stderr)
                status = 1
            if kind == "memmap" and read_all(ReplayBuffer.load_from(workdir / "rb", backend=NP)) != expected:
                print("the buffer flushed by the writer does not reload", file=sys.stderr)
                status = 1
            print(f"reads={reads.value}")
    finally:
        for process in (writer, reader):
            if process.is_alive():
                process.kill()
                process.join(5)
        buffer.close()
        if kind == "shared":
            shutil.rmtree(Path(shared_dir).parent, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def _close_in_child(buffer: ReplayBuffer) -> None:
    buffer.get_at(0)
    buffer.close()


def fork_close() -> None:
    buffer = ReplayBuffer.create(MemoryStorage, row_space(), capacity=4, multiprocessing=True)
    buffer.append(row(1))
    directory = Path(buffer.storage.cache_filename)
    child = multiprocessing.get_context("fork").Process(target=_close_in_child, args=(buffer,))
    child.start()
    child.join(30)
    print(f"exists={directory.exists()} exitcode={child.exitcode}")
    buffer.close()
    shutil.rmtree(directory.parent, ignore_errors=True)


def _extend_in_child(buffer: ReplayBuffer) -> None:
    buffer.extend(rows(list(range(1, 10))))


def grow_in_child() -> None:
    """A forked child grows a shared growable memmap buffer; the parent reads it, flushes and reloads."""
    workdir = Path(tempfile.mkdtemp(prefix="unibatch-mp-"))
    try:
        buffer = ReplayBuffer.create(
            None, row_space(), cache_path=workdir / "rb", capacity=None, multiprocessing=True, initial_rows=4
        )
        buffer.append(row(0))
        child = multiprocessing.get_context("fork").Process(target=_extend_in_child, args=(buffer,))
        child.start()
        child.join(30)
        print(f"child exitcode={child.exitcode} parent sees {read_all(buffer)}")
        buffer.flush()
        try:
            print(f"reloaded {read_all(ReplayBuffer.load_from(workdir / 'rb', backend=NP))}")
        except Exception as error:  # noqa: BLE001 - reported to the test
            print(f"reload failed: {type(error).__name__}: {error}")
        buffer.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _put_last(buffer: ReplayBuffer, queue: Any) -> None:
    queue.put(read_all(buffer)[-1])


def spawn_from_fork_default() -> None:
    """With the default start method 'fork', hand a shared buffer to a 'spawn' context process."""
    multiprocessing.set_start_method("fork")
    buffer = ReplayBuffer.create(MemoryStorage, row_space(), capacity=4, multiprocessing=True)
    directory = Path(buffer.storage.cache_filename)
    buffer.append(row(5))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_put_last, args=(buffer, queue), daemon=True)
    try:
        process.start()
        print(f"child read {queue.get(timeout=60)}")
        process.join(30)
    except Exception as error:  # noqa: BLE001 - reported to the test
        print(f"failed: {type(error).__name__}: {error}")
    finally:
        if process.is_alive():
            process.kill()
        buffer.close()
        shutil.rmtree(directory.parent, ignore_errors=True)


def main(argv: list[str]) -> int:
    mode, args = argv[0], argv[1:]
    if mode == "crash-writer":
        path, log, base, flush_every, max_chunk, seed = args
        crash_writer(path, log, int(base), int(flush_every), int(max_chunk), int(seed))
    elif mode == "torn-writer":
        path, log, base, flush_every, writes = args
        torn_writer(path, log, int(base), int(flush_every), int(writes))
    elif mode == "straddle-kill":
        straddle_kill(args[0])
    elif mode == "announce-kill":
        announce_kill(*args)
    elif mode == "mp":
        method, kind, capacity, total = args
        return mp_driver(method, kind, None if capacity == "None" else int(capacity), int(total))
    elif mode == "fork-close":
        fork_close()
    elif mode == "grow-in-child":
        grow_in_child()
    elif mode == "spawn-from-fork-default":
        spawn_from_fork_default()
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
