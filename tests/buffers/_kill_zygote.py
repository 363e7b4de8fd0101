"""A fork server of SIGKILL-able writers over every storage and composition (test_kill_every_storage.py).

The test starts this module once (``python _kill_zygote.py``): it imports NumPy, unibatch and the
format libraries once, then reads commands on stdin, one per line, and answers one line each:

* ``write CONFIG PATH LOG BASE FLUSH_EVERY MAX_CHUNK SEED`` forks a writer that reopens the buffer
  at PATH read-write and appends rows ``BASE + i`` forever (chunks of 1..MAX_CHUNK, ``flush()``
  every FLUSH_EVERY rows), logging like ``_workers.crash_writer`` (``R count``, ``B i n``, ``F i``);
  answers its pid.
* ``kill PID`` SIGKILLs the writer, reaps it and answers its wait status.

Forking from one warm process makes a kill cost milliseconds instead of a Python start (so a test
runs dozens of kills per storage in seconds). Every row carries its sequence number ``s`` in every
leaf (see :func:`encode`), so a torn or foreign row cannot go unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unibatch import BoxSpace, DictSpace, TrajectoryReplayBuffer
from unibatch.backends import backend_from_name
from unibatch.buffers import ReplayBuffer
from unibatch.spaces import Space, concatenate
from unibatch.storages import (
    DictStorage,
    HDF5Storage,
    ImageStorage,
    MemmapStorage,
    MemoryStorage,
    ParquetStorage,
    VideoStorage,
    ZarrStorage,
)

NP = backend_from_name("numpy")
FRAME = (8, 8, 3)


def leaf_space(kind: str) -> Space:
    if kind == "seq":
        return BoxSpace(NP, 0, 2**50, "int64", shape=(4,))
    if kind == "x":
        return BoxSpace(NP, -1e15, 1e15, "float64", shape=(16,))
    return BoxSpace(NP, 0, 255, "uint8", shape=FRAME)


def encode(kind: str, s: int) -> np.ndarray:
    """Leaf ``kind`` of row ``s``: ``seq`` all s, ``x`` s + arange/2, ``img`` s's 4 bytes then a pattern of s."""
    if kind == "seq":
        return np.full(4, s, np.int64)
    if kind == "x":
        return s + np.arange(16, dtype=np.float64) / 2
    frame = ((s * 31 + np.arange(int(np.prod(FRAME)))) % 256).astype(np.uint8)
    frame[:4] = np.frombuffer(int(s).to_bytes(4, "little"), np.uint8)
    return frame.reshape(FRAME)


def decode_leaf(kind: str, values: np.ndarray) -> list[int]:
    """The sequence numbers of a batch of one leaf; AssertionError on any row that is not ``encode(s)``."""
    values = np.asarray(values)
    if kind == "img":
        numbers = [int.from_bytes(bytes(frame.reshape(-1)[:4]), "little") for frame in values]
    else:
        numbers = [int(round(float(v))) for v in values[:, 0]]
    for s, value in zip(numbers, values, strict=True):
        assert np.array_equal(value, encode(kind, s)), f"torn or foreign {kind!r} leaf in row {s}"
    return numbers


@dataclass(frozen=True)
class Config:
    """A buffer to kill: its leaves, and how to create it."""

    leaves: tuple[str, ...]
    create: Callable[[Path, Space, int | None], Any]
    trajectory: bool = False

    def space(self) -> Space:
        if self.leaves == ("img",):
            return leaf_space("img")  # video and image storages hold one frame, not a dict
        return DictSpace(NP, {kind: leaf_space(kind) for kind in self.leaves})

    def row(self, s: int) -> Any:
        if self.leaves == ("img",):
            return encode("img", s)
        return {kind: encode(kind, s) for kind in self.leaves}

    def rows(self, seqs: list[int]) -> Any:
        return concatenate(self.space(), [self.row(s) for s in seqs])

    def decode(self, batch: Any) -> list[int]:
        if self.leaves == ("img",):
            return decode_leaf("img", batch)
        found = [decode_leaf(kind, batch[kind]) for kind in self.leaves]
        assert all(numbers == found[0] for numbers in found), f"leaves of different rows in one row: {found}"
        return found[0]

    def load(self, path: Path, read_only: bool) -> Any:
        if self.trajectory:
            return TrajectoryReplayBuffer.load_from(path, backend=NP, read_only=read_only)
        return ReplayBuffer.load_from(path, backend=NP, read_only=read_only)

    def read_all(self, buffer: Any) -> list[int]:
        """Every row of a reopened buffer, checked (raises on a torn row)."""
        if len(buffer) == 0:
            return []
        if not self.trajectory:
            return self.decode(buffer.get_at(slice(None)))
        sample, metadata = buffer.get_at_with_metadata(slice(None))
        seqs = self.decode(sample["step_data"])
        ids = np.asarray(metadata["episode_ids"]).tolist()
        assert _ids_follow(seqs, ids), f"episode ids {ids} do not follow the steps {seqs}"
        return seqs


EPISODE_STEPS = 7
"""The trajectory writer ends an episode after every row whose number ``s`` has ``s % 7 == 6``."""
ROUND = 1_000_000
"""Row numbers of kill round ``k`` start at ``k * ROUND``."""


def _ids_follow(seqs: list[int], ids: list[int]) -> bool:
    """Episode ids go up by one exactly after an episode end (by 0 or 1 where a new writer took over)."""
    for s, following, a, b in zip(seqs, seqs[1:], ids, ids[1:], strict=False):
        if s // ROUND != following // ROUND:
            if b - a not in (0, 1):
                return False
        elif b - a != (s % EPISODE_STEPS == EPISODE_STEPS - 1):
            return False
    return True


def _plain(storage_cls: type, **kwargs: Any) -> Callable[[Path, Space, int | None], Any]:
    def create(path: Path, space: Space, capacity: int | None) -> Any:
        return ReplayBuffer.create(storage_cls, space, cache_path=path, capacity=capacity, **kwargs)

    return create


def _dict(mapping: dict[str, type], **kwargs: Any) -> Callable[[Path, Space, int | None], Any]:
    def create(path: Path, space: Space, capacity: int | None) -> Any:
        return ReplayBuffer.create(DictStorage, space, mapping, cache_path=path, capacity=capacity, **kwargs)

    return create


def _trajectory(path: Path, space: Space, capacity: int | None) -> Any:
    return TrajectoryReplayBuffer.create(
        space,
        DictStorage,
        step_data_capacity=capacity,
        cache_path=path,
        storage_cls_map={"seq": MemmapStorage, "img": VideoStorage},
        step_episode_id_storage_cls=MemmapStorage,
    )


CONFIGS: dict[str, Config] = {
    "memory": Config(("seq", "x"), _plain(MemoryStorage)),
    "memmap": Config(("seq", "x"), _plain(MemmapStorage, initial_rows=4)),
    "hdf5": Config(("seq", "x"), _plain(HDF5Storage)),
    "zarr": Config(("seq", "x"), _plain(ZarrStorage)),
    "parquet": Config(("seq", "x"), _plain(ParquetStorage)),
    "video": Config(("img",), _plain(VideoStorage, segment_frames=8)),
    "image": Config(("img",), _plain(ImageStorage)),
    "dict-memmap-video": Config(("img", "seq"), _dict({"seq": MemmapStorage, "img": VideoStorage})),
    "dict-memmap-memmap": Config(("seq", "x"), _dict({"seq": MemmapStorage, "x": MemmapStorage})),
    "trajectory-dict": Config(("img", "seq"), _trajectory, trajectory=True),
}


# ---------------------------------------------------------------------------------------------- the writer


class Log:
    """Append-only line log; each line is one ``write`` system call (survives SIGKILL)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def line(self, text: str) -> None:
        os.write(self.fd, (text + "\n").encode())


def write_forever(config: Config, path: str, log_path: str, base: int, flush_every: int, max_chunk: int, seed: int):
    buffer = config.load(Path(path), read_only=False)
    log = Log(log_path)
    rng = random.Random(seed)
    log.line(f"R {len(buffer)}")
    written = since_flush = 0
    deadline = time.monotonic() + 60  # the test kills us long before; never run forever
    while time.monotonic() < deadline:
        n = rng.randint(1, max_chunk)
        log.line(f"B {written} {n}")
        first = base + written
        if config.trajectory:  # episodes end after rows with s % 7 == 6; an episode end also commits
            for s in range(first, first + n):
                buffer.append(config.row(s))
                if s % EPISODE_STEPS == EPISODE_STEPS - 1:
                    buffer.mark_episode_end()
                    log.line(f"F {s - base + 1}")
        elif n == 1:
            buffer.append(config.row(first))
        else:
            buffer.extend(config.rows(list(range(first, first + n))))
        written += n
        since_flush += n
        if since_flush >= flush_every:
            buffer.flush()
            log.line(f"F {written}")
            since_flush = 0
    os._exit(3)


def serve() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "write":
            name, path, log, base, flush_every, max_chunk, seed = args
            pid = os.fork()
            if pid == 0:
                try:
                    stderr = os.open(f"{log}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(stderr, 2)
                    os.dup2(os.open(os.devnull, os.O_RDWR), 0)
                    os.dup2(os.open(os.devnull, os.O_RDWR), 1)
                    write_forever(CONFIGS[name], path, log, int(base), int(flush_every), int(max_chunk), int(seed))
                except BaseException:  # reported through the .err file and the exit status
                    import traceback

                    traceback.print_exc()
                    sys.stderr.flush()
                os._exit(4)
            print(pid, flush=True)
        elif command == "kill":
            pid = int(args[0])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            print(status, flush=True)
        else:
            print(f"unknown command {command!r}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    serve()
