"""Readers beside a writer, for test_readers_under_writer.py: ``python _readers.py PATTERN SECONDS``.

One writer process keeps appending to a full ring while two reader processes read it with one
read pattern for SECONDS seconds; the driver prints one JSON line: reads, inconsistent reads,
typed errors (by class name) and a few examples. Every row carries its step number ``s`` in every
leaf (``seq``: int64 ``(8,)`` all ``s``; ``x``: float64 ``(512,)`` = ``s + arange / 2``, a page;
``img``: uint8 ``(32, 32)`` all ``s % 251``), so a read is *inconsistent* when

* a row mixes leaves of different steps (torn), or
* the rows read are not the consecutive steps their logical indices say, or
* a row is newer than everything the writer had committed when the read ended (uncommitted).

Patterns (DESIGN.md §5; README "Persistence and crashes"):

* ``reopen-200``, ``reopen-2000``: a persistent ring of that capacity, reopened read-only for
  every read of rows ``[0, random, newest]``;
* ``trajectory-300``: the same with a ``TrajectoryReplayBuffer`` of 300 steps (episodes of 10
  steps whose episode data holds the episode number, also checked);
* ``open-whole``, ``open-newest``: one read-only buffer kept open, ``refresh()`` then the whole
  buffer, or its 16 newest rows;
* ``shared-ring``, ``shared-growable``: a ``multiprocessing=True`` memory buffer (ring of 200, or
  growable) handed to forked readers, which read ``[0, random, newest]`` and the 16 newest rows.

Only NumPy and unibatch are imported (no JAX or PyTorch threads), so forking is safe.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from unibatch import BoxSpace, DictSpace
from unibatch.backends import backend_from_name
from unibatch.buffers import ReplayBuffer, TrajectoryReplayBuffer
from unibatch.errors import UnibatchError
from unibatch.spaces import Space
from unibatch.storages import MemoryStorage

NP = backend_from_name("numpy")
X_WIDTH = 512
EPISODE = 10
NEWEST = 16
READERS = 2
PATTERNS = (
    "reopen-200",
    "reopen-2000",
    "trajectory-300",
    "open-whole",
    "open-newest",
    "shared-ring",
    "shared-growable",
)


def row_space() -> Space:
    return DictSpace(
        NP,
        {
            "seq": BoxSpace(NP, 0, 2**50, "int64", shape=(8,)),
            "x": BoxSpace(NP, -1e15, 1e15, "float64", shape=(X_WIDTH,)),
            "img": BoxSpace(NP, 0, 255, "uint8", shape=(32, 32)),
        },
    )


def episode_space() -> Space:
    return DictSpace(NP, {"episode": BoxSpace(NP, 0, 2**50, "int64", shape=(4,))})


def rows(first: int, n: int) -> dict[str, np.ndarray]:
    steps = np.arange(first, first + n, dtype=np.int64)
    return {
        "seq": np.repeat(steps[:, None], 8, axis=1),
        "x": steps[:, None] + np.arange(X_WIDTH, dtype=np.float64) / 2,
        "img": np.broadcast_to((steps % 251).astype(np.uint8)[:, None, None], (n, 32, 32)).copy(),
    }


def steps_of(batch: dict[str, Any]) -> tuple[np.ndarray, bool]:
    """The step number of every row, and whether any row mixes leaves of different steps."""
    seq = np.asarray(batch["seq"])
    steps = seq[:, 0]
    torn = bool((seq != steps[:, None]).any())
    torn |= bool((np.asarray(batch["x"]) != steps[:, None] + np.arange(X_WIDTH) / 2).any())
    img = np.asarray(batch["img"]).reshape(len(steps), -1)
    torn |= bool((img != (steps % 251)[:, None]).any())
    return steps, torn


def problem(logical: np.ndarray, steps: np.ndarray, torn: bool, committed: int | None) -> str | None:
    """Why rows ``steps`` read at logical indices ``logical`` are inconsistent, or None."""
    if torn:
        return f"torn row among steps {steps.tolist()}"
    if not (steps - steps[0] == logical - logical[0]).all():
        return f"logical rows {logical.tolist()} hold steps {steps.tolist()}"
    if committed is not None and int(steps.max()) > committed:
        return f"step {int(steps.max())} read, the writer had committed up to {committed}"
    return None


# ---------------------------------------------------------------------------------------------- writers


def ring_writer(path: Path, committed: Any, stop: Any) -> None:
    """Append chunks of 1..8 rows forever, ``flush()`` every 10 rows or more."""
    buffer = ReplayBuffer.load_from(path, backend=NP, read_only=False)
    rng = random.Random(1)
    written, since = int(buffer[-1]["seq"][0]) + 1, 0
    while not stop.is_set():
        n = rng.choice([1, 1, 2, 3, 5, 8])
        if n == 1:
            buffer.append({key: value[0] for key, value in rows(written, 1).items()})
        else:
            buffer.extend(rows(written, n))
        written += n
        since += n
        if since >= 10:
            committed.value = written - 1  # before the commit: a reader may see these rows from now on
            buffer.flush()
            since = 0
    buffer.close()


def trajectory_writer(path: Path, committed: Any, stop: Any) -> None:
    """Episodes of 10 steps; each starts with its episode data and ends with ``mark_episode_end``."""
    buffer = TrajectoryReplayBuffer.load_from(path, backend=NP)
    step = int(buffer[-1]["step_data"]["seq"][0]) + 1
    while not stop.is_set():
        episode = buffer.current_episode_id
        buffer.set_current_episode_data({"episode": np.full(4, episode, np.int64)})
        for _ in range(EPISODE):
            buffer.append({key: value[0] for key, value in rows(step, 1).items()})
            step += 1
        committed.value = step - 1
        buffer.mark_episode_end()
    buffer.close()


def shared_writer(buffer: ReplayBuffer, stop: Any) -> None:
    rng = random.Random(1)
    written = int(buffer[-1]["seq"][0]) + 1
    while not stop.is_set():
        n = rng.choice([1, 1, 2, 3, 5, 8])
        if n == 1:
            buffer.append({key: value[0] for key, value in rows(written, 1).items()})
        else:
            buffer.extend(rows(written, n))
        written += n
        if buffer.capacity is None and written > 20_000:
            time.sleep(0.001)  # a growable buffer: keep its size bounded in a long run


# ---------------------------------------------------------------------------------------------- readers


class Tally:
    def __init__(self) -> None:
        self.reads = 0
        self.inconsistent = 0
        self.errors: dict[str, int] = {}
        self.examples: list[str] = []

    def check(
        self, logical: np.ndarray, batch: dict[str, Any], committed: int | None, extra: str | None = None
    ) -> None:
        steps, torn = steps_of(batch)
        why = problem(np.asarray(logical), steps, torn, committed) or extra
        self.reads += 1
        if why is not None:
            self.inconsistent += 1
            if len(self.examples) < 3:
                self.examples.append(why[:240])

    def error(self, error: Exception) -> None:
        name = type(error).__name__
        self.errors[name] = self.errors.get(name, 0) + 1
        if not isinstance(error, UnibatchError):
            raise error  # only typed errors are allowed

    def as_dict(self) -> dict[str, Any]:
        return {
            "reads": self.reads,
            "inconsistent": self.inconsistent,
            "errors": self.errors,
            "examples": self.examples,
        }


def three(n: int, rng: np.random.Generator) -> np.ndarray:
    """Row 0, a random row of the older half and the newest row (``-1``: still the newest after a catch-up)."""
    return np.array([0, int(rng.integers(0, max(n // 2, 1))), -1])


def logical_of(index: np.ndarray, n: int) -> np.ndarray:
    """The logical rows ``index`` addressed in a snapshot of ``n`` rows (read ``len()`` after the read)."""
    return np.where(index < 0, index + n, index)


def reader(pattern: str, target: Any, committed: Any, deadline: float, seed: int, results: Any) -> None:
    tally = Tally()
    rng = np.random.default_rng(seed)
    kept = None
    if pattern.startswith("open-"):
        kept = ReplayBuffer.load_from(target, backend=NP)
    while time.monotonic() < deadline:
        try:
            if pattern.startswith("reopen-"):
                with ReplayBuffer.load_from(target, backend=NP) as buffer:
                    index = three(len(buffer), rng)
                    batch = buffer[index]
                    tally.check(logical_of(index, len(buffer)), batch, committed.value)
            elif pattern.startswith("trajectory-"):
                with TrajectoryReplayBuffer.load_from(target, backend=NP, read_only=True) as trajectory:
                    index = three(len(trajectory), rng)
                    data, metadata = trajectory.get_at_with_metadata(index)
                    logical = logical_of(index, len(trajectory))
                    steps = np.asarray(data["step_data"]["seq"])[:, 0]
                    episodes = np.asarray(data["episode_data"]["episode"])[:, 0]
                    ids = np.asarray(metadata["episode_ids"])
                    wrong = None
                    if not ((episodes == steps // EPISODE) & (ids == steps // EPISODE)).all():
                        wrong = (
                            f"logical rows {logical.tolist()} of {len(trajectory)}: steps {steps.tolist()}, "
                            f"episode ids {ids.tolist()}, episode data {episodes.tolist()}"
                        )
                    tally.check(logical, data["step_data"], committed.value, wrong)
            elif kept is not None:
                kept.refresh()
                batch = kept[slice(None) if pattern == "open-whole" else slice(-NEWEST, None)]
                tally.check(np.arange(len(batch["seq"])), batch, committed.value)
            else:  # a shared buffer handed over by fork
                n = len(target)  # never shrinks while it is shared: ``n - 1`` stays valid
                index = np.array([0, int(rng.integers(0, n)), n - 1])
                tally.check(index, target[index], None)
                tally.check(np.arange(NEWEST), target[-NEWEST:], None)
        except Exception as error:  # noqa: BLE001 - typed errors are counted, others re-raised by error()
            tally.error(error)
    if kept is not None:
        kept.close()
    results.put(tally.as_dict())


# ---------------------------------------------------------------------------------------------- driver


def prepare(pattern: str, workdir: Path) -> Any:
    """Create and fill the buffer of ``pattern``; returns its path (or the shared buffer)."""
    if pattern.startswith("trajectory-"):
        capacity = int(pattern.split("-")[1])
        path = workdir / "trajectory"
        buffer = TrajectoryReplayBuffer.create(
            row_space(),
            None,
            step_data_capacity=capacity,
            episode_data_instance_space=episode_space(),
            episode_data_capacity=capacity // EPISODE + 4,
            cache_path=path,
        )
        for episode in range(capacity // EPISODE + 1):
            buffer.set_current_episode_data({"episode": np.full(4, episode, np.int64)})
            buffer.extend(rows(episode * EPISODE, EPISODE))
            buffer.mark_episode_end()
        buffer.close()
        return path
    if pattern.startswith("shared-"):
        capacity = 200 if pattern == "shared-ring" else None
        shared = ReplayBuffer.create(MemoryStorage, row_space(), capacity=capacity, multiprocessing=True)
        shared.extend(rows(0, 256))
        return shared
    capacity = 200 if pattern in ("open-whole", "open-newest") else int(pattern.split("-")[1])
    path = workdir / "ring"
    buffer = ReplayBuffer.create(None, row_space(), cache_path=path, capacity=capacity)
    buffer.extend(rows(0, capacity + capacity // 2))
    buffer.flush()
    buffer.close()
    return path


def drive(pattern: str, seconds: float) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    workdir = Path(tempfile.mkdtemp(prefix="unibatch-readers-"))
    target = prepare(pattern, workdir)
    committed = context.Value("q", 1 << 62, lock=False)
    stop = context.Event()
    results = context.Queue()
    if isinstance(target, ReplayBuffer):
        writer = context.Process(target=shared_writer, args=(target, stop), daemon=True)
    else:
        write = trajectory_writer if pattern.startswith("trajectory-") else ring_writer
        writer = context.Process(target=write, args=(target, committed, stop), daemon=True)
    deadline = time.monotonic() + seconds
    readers = [
        context.Process(target=reader, args=(pattern, target, committed, deadline, seed, results), daemon=True)
        for seed in range(READERS)
    ]
    try:
        writer.start()
        for process in readers:
            process.start()
        tallies = [results.get(timeout=seconds + 60) for _ in readers]
        stop.set()
        writer.join(30)
        writer_exit = writer.exitcode
    finally:
        for process in [writer, *readers]:
            if process.is_alive():
                process.kill()
                process.join(5)
        if isinstance(target, ReplayBuffer):
            directory = target.storage.cache_filename
            target.close()
            shutil.rmtree(Path(directory).parent, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    errors: dict[str, int] = {}
    for tally in tallies:
        for name, n in tally["errors"].items():
            errors[name] = errors.get(name, 0) + n
    return {
        "pattern": pattern,
        "reads": sum(t["reads"] for t in tallies),
        "inconsistent": sum(t["inconsistent"] for t in tallies),
        "errors": errors,
        "examples": [example for t in tallies for example in t["examples"]][:4],
        "writer_exit": writer_exit,
    }


if __name__ == "__main__":
    print(json.dumps(drive(sys.argv[1], float(sys.argv[2]))))
