"""A DictStorage commits as one unit: a writer dying between its children's flushes (issue 16 §4).

The first child flushes its new rows, the next one fails (the process dies there); the buffer
must reopen read-only, read-write and under ``unibatch verify`` with exactly the committed rows.
"""

from __future__ import annotations

import argparse
import contextlib

import numpy as np
import pytest
from tests.buffers._kill_zygote import CONFIGS, NP

from unibatch import TrajectoryReplayBuffer
from unibatch.buffers import ReplayBuffer
from unibatch.cli import verify

MAPS = ["dict-memmap-memmap", "dict-memmap-video"]


def die_in_last_child_flush(storage) -> None:
    """Make the last child's flush fail as a process killed right there would (the others flushed)."""
    last = list(storage.children.values())[-1]

    def dead(*args, **kwargs):
        raise SystemExit("killed between the children's flushes")

    last.flush = dead


def verify_ok(path) -> None:
    with contextlib.redirect_stdout(None):
        assert verify.run(argparse.Namespace(path=path, chunk=4)) == 0


@pytest.mark.parametrize("name", MAPS)
def test_growable_dict_storage_killed_between_children_flushes_reopens(tmp_path, name):
    config = CONFIGS[name]
    path = tmp_path / "rb"
    buffer = config.create(path, config.space(), None)
    buffer.extend(config.rows(list(range(5))))
    buffer.flush()
    buffer.extend(config.rows(list(range(5, 9))))
    die_in_last_child_flush(buffer.storage)
    with pytest.raises(SystemExit):
        buffer.flush()
    # The process is gone: nothing is closed. Its children now disagree on their lengths.
    with ReplayBuffer.load_from(path, backend=NP) as reader:
        assert {len(child) for child in reader.storage.children.values()} == {5, 9}
        assert config.read_all(reader) == list(range(5))
        assert len(reader.storage) == 5
    verify_ok(path)
    with ReplayBuffer.load_from(path, backend=NP, read_only=False) as writer:
        assert config.read_all(writer) == list(range(5))
        writer.extend(config.rows([100, 101]))
        writer.flush()
    with ReplayBuffer.load_from(path, backend=NP) as reader:
        assert config.read_all(reader) == [0, 1, 2, 3, 4, 100, 101]
    verify_ok(path)


def test_trajectory_buffer_on_dict_storage_killed_between_children_flushes(tmp_path):
    config = CONFIGS["trajectory-dict"]
    path = tmp_path / "trb"
    buffer = config.create(path, config.space(), None)
    for s in range(7):
        buffer.append(config.row(s))
    buffer.mark_episode_end()  # commits 7 steps of episode 0
    for s in range(7, 10):
        buffer.append(config.row(s))
    die_in_last_child_flush(buffer.step_data_buffer.storage)
    with pytest.raises(SystemExit):
        buffer.flush()
    with TrajectoryReplayBuffer.load_from(path, backend=NP, read_only=True) as reader:
        assert config.read_all(reader) == list(range(7))
        assert reader.current_episode_id == 1
    verify_ok(path)
    with TrajectoryReplayBuffer.load_from(path, backend=NP) as writer:
        writer.append(config.row(20))
        writer.flush()
    with TrajectoryReplayBuffer.load_from(path, backend=NP, read_only=True) as reader:
        assert config.read_all(reader) == [*range(7), 20]
        assert np.asarray(reader.get_at_with_metadata(-1)[1]["episode_ids"]).item() == 1
