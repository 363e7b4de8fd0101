"""Readers beside a writer see committed, consistent rows, or a typed error (DESIGN.md §5).

The process tests run ``_readers.py``: one writer keeps a full ring busy while two readers read
it with one pattern, and every row carries its step number in every leaf; zero inconsistent reads
are allowed, typed errors are counted. The in-process tests pin the mechanism: the commit front
(``commits.live``), the reader's snapshot, its catch-up and ``refresh()``, and the bounded retry.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.buffers._readers import PATTERNS, rows, steps_of

from unibatch import BoxSpace, DictSpace
from unibatch.backends import backend_from_name
from unibatch.buffers import ReplayBuffer, TrajectoryReplayBuffer
from unibatch.buffers._live import LIVE_FILE, CommitFront
from unibatch.buffers.replay_buffer import READ_ATTEMPTS
from unibatch.errors import CorruptDataError, RowsOverwrittenError
from unibatch.storages import MemoryStorage

NP = backend_from_name("numpy")
READERS = Path(__file__).with_name("_readers.py")


def run_pattern(pattern: str, seconds: float) -> dict[str, Any]:
    process = subprocess.Popen(
        [sys.executable, str(READERS), pattern, str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: killed as a whole, never leaked
    )
    try:
        out, err = process.communicate(timeout=seconds + 90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"{pattern} did not finish\n{out}\n{err}")
    assert process.returncode == 0, f"{pattern} failed\n{out}\n{err}"
    return json.loads(out.strip().splitlines()[-1])


def check_outcome(result: dict[str, Any]) -> None:
    assert result["writer_exit"] == 0, result
    assert result["inconsistent"] == 0, result
    assert result["reads"] >= 20, result  # the readers did read (and mostly succeeded)
    assert sum(result["errors"].values()) <= result["reads"], result


@pytest.mark.parametrize("pattern", PATTERNS)
def test_readers_beside_a_writer_see_only_consistent_committed_rows(pattern):
    check_outcome(run_pattern(pattern, 3))


@pytest.mark.soak
@pytest.mark.parametrize("pattern", PATTERNS)
def test_readers_beside_a_writer_soak(pattern):
    check_outcome(run_pattern(pattern, 60))


# ---------------------------------------------------------------------------------------------- in process


def space() -> DictSpace:
    from tests.buffers._readers import row_space

    return row_space()  # type: ignore[return-value]


def ring(tmp_path: Path, capacity: int = 40, filled: int = 40) -> ReplayBuffer:
    writer = ReplayBuffer.create(None, space(), cache_path=tmp_path / "rb", capacity=capacity)
    writer.extend(rows(0, filled))
    writer.flush()
    return writer


def steps(batch: Any) -> list[int]:
    numbers, torn = steps_of(batch)
    assert not torn
    return numbers.tolist()


def test_a_reader_reads_its_snapshot_until_refresh(tmp_path):
    writer = ring(tmp_path, capacity=40, filled=20)
    reader = ReplayBuffer.load_from(tmp_path / "rb", backend=NP)
    writer.extend(rows(20, 10))
    writer.flush()
    assert len(reader) == 20  # a snapshot: a sampler's draws against len() stay valid
    assert steps(reader[-3:]) == [17, 18, 19]
    assert reader.refresh() == 30
    assert steps(reader[-3:]) == [27, 28, 29]
    writer.extend(rows(30, 5))  # not committed: a reader never sees it
    assert reader.refresh() == 30
    writer.close()
    reader.close()


def test_a_read_of_rows_the_writer_overwrote_catches_up_or_raises(tmp_path):
    writer = ring(tmp_path)
    reader = ReplayBuffer.load_from(tmp_path / "rb", backend=NP)
    writer.extend(rows(40, 8))  # overwrites the slots of steps 0..7 (and drops a few more first)
    writer.flush()
    # A public read resolves its index again against the rows still committed: consistent steps.
    oldest = steps(reader[np.array([0, 1, -1])])
    assert oldest[0] >= 8 and oldest[1] == oldest[0] + 1 and oldest[2] == 39
    # Indices made against an older snapshot (a sampler's) cannot be resolved again: typed error.
    reader.close()
    reader = ReplayBuffer.load_from(tmp_path / "rb", backend=NP)
    writer.extend(rows(48, 40))
    writer.flush()
    with pytest.raises(RowsOverwrittenError, match="refresh"):
        reader._get(np.array([0, 5]), False)
    reader.refresh()
    assert steps(reader[:])[:2] == [48, 49]
    writer.close()
    reader.close()


def test_rows_overwritten_during_every_attempt_raise_after_bounded_retries(tmp_path):
    writer = ring(tmp_path)
    reader = ReplayBuffer.load_from(tmp_path / "rb", backend=NP)
    get = reader.storage._get
    written = [40]

    def overtaken_during_the_read(index: Any) -> Any:
        value = get(index)
        writer.extend(rows(written[0], 40))  # the whole ring, while the reader reads
        written[0] += 40
        writer.flush()
        return value

    reader.storage._get = overtaken_during_the_read  # type: ignore[method-assign]
    with pytest.raises(RowsOverwrittenError, match=f"{READ_ATTEMPTS} times"):
        reader[0]
    assert written[0] == 40 + 40 * READ_ATTEMPTS
    writer.close()
    reader.close()


def test_rows_torn_by_a_write_during_the_read_are_never_returned(tmp_path, backend):
    """The writer rewrites the slots while the reader reads them: detected after the read, read again."""
    small = DictSpace(
        backend,
        {
            "seq": BoxSpace(backend, 0, 2**30, "int32", shape=(4,)),
            "x": BoxSpace(backend, 0, 2**20, "float32", shape=(64,)),
        },
    )

    def numbered(first: int, n: int) -> dict[str, Any]:
        numbers = np.arange(first, first + n)
        return {
            "seq": backend.asarray(np.repeat(numbers[:, None], 4, axis=1).astype(np.int32)),
            "x": backend.asarray(np.repeat(numbers[:, None], 64, axis=1).astype(np.float32)),
        }

    writer = ReplayBuffer.create(None, small, cache_path=tmp_path / "rb", capacity=20)
    writer.extend(numbered(0, 20))
    writer.flush()
    reader = ReplayBuffer.load_from(tmp_path / "rb", backend=backend)
    get = reader.storage._get
    calls = [0]

    def torn(index: Any) -> Any:
        calls[0] += 1
        value = get(index)
        if calls[0] == 1:
            writer.extend(numbered(20, 5))  # the slots of steps 0..4 change under the first read
            writer.flush()
        return value

    reader.storage._get = torn  # type: ignore[method-assign]
    data = reader[backend.asarray(np.array([0, 1, -1]), dtype=backend.default_index_dtype)]
    seq, x = backend.to_numpy(data["seq"]), backend.to_numpy(data["x"])
    assert (seq == seq[:, :1]).all() and (x == seq[:, :1]).all()
    numbers = seq[:, 0].tolist()
    assert calls[0] == 2 and numbers[0] >= 5 and numbers[1] == numbers[0] + 1 and numbers[2] == 19, numbers
    writer.close()
    reader.close()


def test_clear_by_the_writer_drops_every_row_of_a_reader(tmp_path):
    writer = ring(tmp_path)
    reader = ReplayBuffer.load_from(tmp_path / "rb", backend=NP)
    writer.clear()
    writer.extend(rows(100, 10))
    with pytest.raises(RowsOverwrittenError):
        reader._get(np.array([0]), False)
    assert len(reader[:]["seq"]) == 0 and len(reader) == 0  # caught up to the cleared commit
    writer.flush()
    assert reader.refresh() == 10 and steps(reader[:]) == list(range(100, 110))
    writer.close()
    reader.close()


def test_a_growable_reader_follows_the_writer(tmp_path):
    writer = ReplayBuffer.create(None, space(), cache_path=tmp_path / "rb", capacity=None, initial_rows=2)
    writer.extend(rows(0, 3))
    writer.flush()
    reader = ReplayBuffer.load_from(tmp_path / "rb", backend=NP)
    writer.extend(rows(3, 50))  # the files grow past what the reader mapped
    writer.flush()
    assert reader.refresh() == 53
    assert steps(reader[:]) == list(range(53))
    writer.close()
    reader.close()


def test_a_reopened_writer_keeps_the_committed_start(tmp_path):
    writer = ring(tmp_path)
    writer.extend(rows(40, 25))
    writer.flush()
    writer.close()
    reader = ReplayBuffer.load_from(tmp_path / "rb", backend=NP)
    writer = ReplayBuffer.load_from(tmp_path / "rb", backend=NP, read_only=False)
    writer.extend(rows(65, 5))  # drops the reader's oldest rows: the front must say so
    with pytest.raises(RowsOverwrittenError):
        reader._get(np.array([0]), False)
    writer.close()
    reader.close()


@pytest.mark.parametrize("kind", ["ring", "trajectory"])
def test_a_reader_opening_while_the_writer_passes_its_whole_commit_takes_the_newest(tmp_path, monkeypatch, kind):
    """Between the reader's metadata read and its front the writer overwrites every row: not an empty reader."""
    if kind == "ring":
        writer: Any = ring(tmp_path, capacity=40, filled=40)
        directory = tmp_path / "rb"
    else:
        writer = TrajectoryReplayBuffer.create(space(), None, step_data_capacity=40, cache_path=tmp_path)
        writer.extend(rows(0, 40))
        writer.flush()
        directory = tmp_path
    map_front = CommitFront.for_reader
    calls = [0]

    def overtaken_first(path: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:  # after this reader read metadata.json, before it loads the front
            writer.extend(rows(40, 45))
            writer.flush()
        return map_front(path)

    monkeypatch.setattr(CommitFront, "for_reader", staticmethod(overtaken_first))
    if kind == "ring":
        reader: Any = ReplayBuffer.load_from(directory, backend=NP)
        assert len(reader) == 40 and steps(reader[:]) == list(range(45, 85))
    else:
        reader = TrajectoryReplayBuffer.load_from(directory, backend=NP, read_only=True)
        assert len(reader) == 40 and steps(reader[:]["step_data"]) == list(range(45, 85))
    assert calls[0] == 2  # refreshed once
    writer.close()
    reader.close()


def test_a_corrupt_commit_front_is_a_typed_error(tmp_path):
    ring(tmp_path).close()
    (tmp_path / "rb" / LIVE_FILE).write_bytes(b"\0" * 64)
    with pytest.raises(CorruptDataError, match=LIVE_FILE):
        ReplayBuffer.load_from(tmp_path / "rb", backend=NP)
    (tmp_path / "rb" / LIVE_FILE).write_bytes(b"\0" * 7)
    with pytest.raises(CorruptDataError, match="64 bytes"):
        ReplayBuffer.load_from(tmp_path / "rb", backend=NP)
    ReplayBuffer.load_from(tmp_path / "rb", backend=NP, read_only=False).close()  # a writer makes a new one
    ReplayBuffer.load_from(tmp_path / "rb", backend=NP).close()


@pytest.mark.parametrize("kind", ["ring", "trajectory"])
def test_a_writer_never_adopts_a_front_past_every_committed_row(tmp_path, kind):
    """A front no killed writer can leave (past the whole commit) would make a writer give up every row."""
    if kind == "ring":
        ring(tmp_path).close()
        directory, opener = tmp_path / "rb", ReplayBuffer.load_from
    else:
        trajectory = TrajectoryReplayBuffer.create(space(), None, step_data_capacity=40, cache_path=tmp_path)
        trajectory.extend(rows(0, 40))
        trajectory.flush()
        trajectory.close()
        directory, opener = tmp_path, TrajectoryReplayBuffer.load_from  # type: ignore[assignment]
    live = directory / LIVE_FILE
    words = np.frombuffer(live.read_bytes(), np.int64).copy()
    words[1] = 41  # a kill inside clear() leaves at most start + count = 40
    live.write_bytes(words.tobytes())
    with pytest.raises(CorruptDataError, match="past the 40 committed rows"):
        opener(directory, backend=NP, read_only=False)
    words[1] = 40  # as a writer killed inside clear() leaves it: every row left, for every opener
    live.write_bytes(words.tobytes())
    for read_only in (True, False):
        with opener(directory, backend=NP, read_only=read_only) as buffer:
            assert len(buffer) == 0


def test_a_trajectory_reader_catches_up_and_refreshes(tmp_path):
    episode = DictSpace(NP, {"episode": BoxSpace(NP, 0, 2**50, "int64", shape=(4,))})
    writer = TrajectoryReplayBuffer.create(
        space(),
        None,
        step_data_capacity=30,
        episode_data_instance_space=episode,
        episode_data_capacity=6,
        cache_path=tmp_path,
    )

    def record(first_episode: int, episodes: int) -> None:
        for number in range(first_episode, first_episode + episodes):
            writer.set_current_episode_data({"episode": np.full(4, number, np.int64)})
            writer.extend(rows(number * 10, 10))
            writer.mark_episode_end()

    record(0, 3)
    reader = TrajectoryReplayBuffer.load_from(tmp_path, backend=NP, read_only=True)
    record(3, 1)  # steps 0..9 and episode 0 are gone
    data, metadata = reader.get_at_with_metadata(np.array([0, -1]))
    numbers = steps(data["step_data"])
    assert numbers[0] >= 10 and numbers[1] == 29
    assert np.asarray(data["episode_data"]["episode"])[:, 0].tolist() == [n // 10 for n in numbers]
    assert np.asarray(metadata["episode_ids"]).tolist() == [n // 10 for n in numbers]
    assert reader.refresh() == 30
    assert steps(reader[np.array([-1])]["step_data"]) == [39]
    writer.close()
    reader.close()


class MovingFront:
    """A reader's commit front whose writer acts right before the loads of ``start`` number ``at`` and ``at + 1``.

    The writer's front moves up (an append to a full ring drops the rows it overwrites and the
    commit reserve) and back (a ``flush()`` returns the reserve): a reader loading the word at
    different moments for different parts sees both.
    """

    def __init__(self, front: Any, at: int, actions: list[Any]) -> None:
        self._front, self._at, self._actions, self.loads = front, at, actions, 0

    @property
    def start(self) -> int:
        self.loads += 1
        if self._at <= self.loads < self._at + len(self._actions):
            self._actions[self.loads - self._at]()
        return self._front.start

    def close(self) -> None:
        self._front.close()


def test_a_reader_catching_up_while_the_front_moves_keeps_its_rows_and_front_paired(tmp_path):
    """The writer moves the front between any two loads of it: a read still returns consecutive steps."""
    writer = ring(tmp_path, capacity=40, filled=40)
    written = [40]

    def write(n: int) -> None:
        writer.extend(rows(written[0], n))
        written[0] += n
        writer.flush()

    checked = 0
    for at in range(1, 20):
        reader = ReplayBuffer.load_from(tmp_path / "rb", backend=NP)
        write(5)  # overtakes the reader's 5 oldest rows: its next read catches up
        front = MovingFront(reader._follows, at, [lambda: write(10)])
        reader._follows = front  # type: ignore[assignment]
        try:
            batch = reader[np.array([0, 1, -1])]
        except RowsOverwrittenError:
            pass
        else:
            numbers = steps(batch)
            assert numbers[1] == numbers[0] + 1 and numbers[2] == numbers[0] + len(reader) - 1, (at, numbers)
            checked += 1
        reader.close()
        if front.loads < at:
            break  # the read needed fewer loads: every moment was tried
    assert checked >= 3 and at > 3, (checked, at)
    writer.close()


def test_a_trajectory_reader_keeps_its_step_parts_at_the_same_rows_while_the_front_moves(tmp_path):
    """Between any two loads of the front the writer may move it up then back: steps and ids stay paired."""
    episode_space = DictSpace(NP, {"episode": BoxSpace(NP, 0, 2**50, "int64", shape=(4,))})
    writer = TrajectoryReplayBuffer.create(
        space(),
        None,
        step_data_capacity=48,  # a reserve of 3: one append drops 4 committed rows, a flush returns 3
        episode_data_instance_space=episode_space,
        episode_data_capacity=8,
        cache_path=tmp_path,
    )
    written = [0]

    def step() -> None:
        number = written[0]
        if number % 10 == 0:
            if number:
                writer.mark_episode_end()
            writer.set_current_episode_data({"episode": np.full(4, number // 10, np.int64)})
        writer.append({key: value[0] for key, value in rows(number, 1).items()})
        written[0] += 1

    for _ in range(60):
        step()
    writer.flush()
    checked = errors = 0
    for at in range(1, 40):
        reader = TrajectoryReplayBuffer.load_from(tmp_path, backend=NP, read_only=True)
        for _ in range(7):  # overtakes the reader's oldest rows: its next read catches up
            step()
        writer.flush()
        front = MovingFront(reader._follows, at, [step, writer.flush])
        for holder in (reader, reader.step_data_buffer, reader.step_episode_id_buffer):
            holder._follows = front  # type: ignore[assignment]
        try:
            data, metadata = reader.get_at_with_metadata(slice(None))
        except RowsOverwrittenError:
            errors += 1
        else:
            numbers = steps(data["step_data"])
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), (at, numbers)
            assert np.asarray(metadata["episode_ids"]).tolist() == [n // 10 for n in numbers], (at, numbers)
            assert np.asarray(data["episode_data"]["episode"])[:, 0].tolist() == [n // 10 for n in numbers]
            checked += 1
        reader.close()
        if front.loads < at:
            break  # the read needed fewer loads: every moment was tried
    assert checked >= 5 and at > 3, (checked, errors, at)
    writer.close()


def test_a_shared_ring_never_shows_a_shorter_length_during_a_write():
    """Processes sharing a ring read under its lock; its lock-free len() must not dip by one per write."""
    buffer = ReplayBuffer.create(MemoryStorage, space(), capacity=4, multiprocessing=True)
    buffer.extend(rows(0, 4))
    lengths = []
    set_leaves, set_rows = buffer.storage.set_leaves, buffer.storage.set

    def set_leaves_seen(index: Any, leaves: Any) -> None:
        lengths.append(len(buffer))
        set_leaves(index, leaves)

    def set_seen(index: Any, value: Any) -> None:
        lengths.append(len(buffer))
        set_rows(index, value)

    buffer.storage.set_leaves = set_leaves_seen  # type: ignore[method-assign]
    buffer.storage.set = set_seen  # type: ignore[method-assign]
    buffer.append({key: value[0] for key, value in rows(4, 1).items()})
    buffer.extend(rows(5, 2))
    assert lengths and set(lengths) == {4}, lengths
    directory = Path(buffer.storage.cache_filename)
    buffer.close()
    shutil.rmtree(directory.parent, ignore_errors=True)


@pytest.mark.parametrize("kind", ["ring", "trajectory"])
def test_a_writer_killed_inside_a_commit_leaves_one_view_for_every_opener(tmp_path, monkeypatch, kind):
    """Killed while a full ring's commit drops rows: readers and a reopened writer see the same committed rows.

    The commit front is published after ``metadata.json``; published before it, a kill in between left the
    front ahead of the commit, and readers dropped rows the last completed commit kept (they were intact).
    """
    import unibatch.buffers.replay_buffer as replay_module
    import unibatch.buffers.trajectory as trajectory_module

    path = tmp_path / "rb"
    if kind == "ring":
        writer: Any = ReplayBuffer.create(None, space(), cache_path=path, capacity=16)
    else:
        writer = TrajectoryReplayBuffer.create(space(), None, step_data_capacity=16, cache_path=path)
    writer.extend(rows(0, 16))
    writer.flush()

    class Killed(BaseException):
        """Stands in for SIGKILL: nothing after it runs (no except Exception catches it)."""

    def killed(*args: Any, **kwargs: Any) -> None:
        raise Killed

    monkeypatch.setattr(replay_module, "write_metadata", killed)
    monkeypatch.setattr(trajectory_module, "write_metadata", killed)
    with pytest.raises(Killed):
        writer.append({key: value[0] for key, value in rows(16, 1).items()})
    monkeypatch.undo()
    opened = []
    for read_only in (True, False, True):
        cls = ReplayBuffer if kind == "ring" else TrajectoryReplayBuffer
        with cls.load_from(path, backend=NP, read_only=read_only) as buffer:
            data = buffer.get_at(slice(None))
            opened.append(steps(data if kind == "ring" else data["step_data"]))
    assert opened[0] == opened[1] == opened[2] == list(range(16)), opened
