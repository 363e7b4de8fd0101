"""What the processes of the distributed tests run: producers and learners, as Ray actors and tasks.

Every row carries ``tag = [producer, episode, step]`` and an image filled from it, so a reader
can check that each row arrived exactly once and unchanged.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import numpy as np

from unibatch.backends import backend_from_name
from unibatch.batches import FrameStackedBatch
from unibatch.spaces import BoxSpace, DictSpace

NUMPY = backend_from_name("numpy")
PREFETCH = 2
"""Windows of the learners: frames t-2, t-1, t."""


def row_space():
    return DictSpace(
        NUMPY,
        {
            "image": BoxSpace(NUMPY, 0, 255, np.uint8, shape=(3, 24, 24)),
            "tag": BoxSpace(NUMPY, 0, 1 << 40, np.int64, shape=(3,)),
        },
    )


def image_value(producer, episode, step):
    return (producer * 31 + episode * 7 + step) % 256


def make_row(producer, episode, step):
    return {
        "image": np.full((3, 24, 24), image_value(producer, episode, step), np.uint8),
        "tag": np.array([producer, episode, step], np.int64),
    }


def check_rows(rows):
    """The tags of ``rows`` after checking that every image matches its tag."""
    tags = np.asarray(rows["tag"])
    expected = (tags[:, 0] * 31 + tags[:, 1] * 7 + tags[:, 2]) % 256
    images = np.asarray(rows["image"]).reshape(len(tags), -1)
    assert (images == expected[:, None]).all(), "an image does not match its tag"
    return tags


def window_view():
    mask = FrameStackedBatch.get_valid_mask_function_with_episodeid_key("episode_ids", is_in_metadata=True)
    return functools.partial(FrameStackedBatch, prefetch_horizon=PREFETCH, get_valid_mask_function=mask)


def check_windows(data, metadata, episodes_from_step_zero=True):
    """Check every window, return how many: where the mask says valid, a frame is the right step of
    the last frame's episode; the mask is exactly "the step exists" when episodes start at step 0
    (else, for pieces cut from episodes, the valid frames end the window without a gap)."""
    tags = np.asarray(data["step_data"]["tag"])  # (B, T, 3)
    valid = np.asarray(metadata["slice_valid_mask"])  # (B, T)
    last = tags[:, -1]
    assert valid[:, -1].all()
    assert (np.diff(valid.astype(np.int8), axis=1) >= 0).all(), "an invalid frame after a valid one"
    for frame in range(PREFETCH + 1):
        back = PREFETCH - frame
        if episodes_from_step_zero:
            assert (valid[:, frame] == (last[:, 2] >= back)).all(), "a window mask disagrees with the episode steps"
        same = tags[valid[:, frame], frame]
        assert (same[:, :2] == last[valid[:, frame], :2]).all(), "a valid frame comes from another episode"
        assert (same[:, 2] == last[valid[:, frame], 2] - back).all(), "a valid frame is not the right step"
    check_rows({k: np.asarray(v).reshape(-1, *np.asarray(v).shape[2:]) for k, v in data["step_data"].items()})
    return len(tags)


def write_progress(path, value):
    temporary = Path(f"{path}.tmp")
    temporary.write_text(json.dumps(value))
    os.replace(temporary, path)


class Producer:
    """A producer process: writes tagged rows through a remote buffer handle."""

    def __init__(self, buffer, producer):
        self.buffer = buffer  # a pickled handle: a new producer in this process
        self.producer = producer

    def pid(self):
        return os.getpid()

    def episodes(self, count, steps):
        """Write ``count`` episodes of ``steps`` steps, then flush; returns the rows written."""
        for episode in range(count):
            for step in range(steps):
                self.buffer.append(make_row(self.producer, episode, step))
            self.buffer.mark_episode_end()
        self.buffer.flush()
        return count * steps

    def rows(self, count, flush_every, progress, pause=0.0):
        """Write rows ``0..count-1`` (episode 0), flushing every ``flush_every`` and recording the
        number acknowledged in ``progress`` after each flush."""
        for step in range(count):
            self.buffer.append(make_row(self.producer, 0, step))
            if (step + 1) % flush_every == 0:
                self.buffer.flush()
                write_progress(progress, step + 1)
                time.sleep(pause)
        self.buffer.flush()
        write_progress(progress, count)
        return count


def learn(sampler_factory, batches):
    """A learner process: draw ``batches`` window batches and check each; returns windows checked."""
    sampler = sampler_factory()
    checked = 0
    for _ in range(batches):
        data, metadata = sampler.sample_with_metadata()
        checked += check_windows(data, metadata)
    sampler.close()
    return checked


def write_store_episodes(url, storage_options, producer, count, steps, stop_after_steps=None):
    """A producer process writing episodes to an EpisodeStore; with ``stop_after_steps`` it
    stages that many steps of one more episode and then kills itself (SIGKILL)."""
    import signal

    from unibatch.integrations.object_store import EpisodeStore

    writer = EpisodeStore.create(url, row_space(), storage_options=storage_options).writer(f"p{producer}")
    first = writer.seq
    for episode in range(first, first + count):
        for step in range(steps):
            writer.append(make_row(producer, episode, step))
        writer.end_episode()
    if stop_after_steps is not None:
        for step in range(stop_after_steps):
            writer.append(make_row(producer, first + count, step))
        os.kill(os.getpid(), signal.SIGKILL)
    return count * steps
