"""Which episode ids a :class:`~unibatch.TrajectoryReplayBuffer` write may store (checked before writing).

Episode ids are assigned by the buffer: ``append`` and ``extend`` without ids use
``current_episode_id``, which starts at 0 and grows by one with ``mark_episode_end`` (or is
set forward). Ids given explicitly (``extend({"step_data", "episode_ids", ...})``,
``set_at(idx, {"episode_ids": ...})``) and ids set with ``current_episode_id = ...`` must keep
what the buffer relies on:

1. every id is an integer in ``[0, current_episode_id]``: no negative id (``-1`` marks a free
   episode slot) and no episode after the current one (end the current episode or set
   ``current_episode_id`` first);
2. ``current_episode_id`` never moves below the id of the newest step;
3. with an episode-data buffer only:

   * ids never decrease in logical order (oldest step first): episode slots are released
     by the id of the oldest step, so a smaller id after a larger one would lose its data;
   * every id written has episode data, is given its data in the same call, or is the
     current episode (whose data may come later, ``set_current_episode_data``).

Without an episode-data buffer ids may interleave (several producers recording at once):
nothing depends on their order.
"""

from __future__ import annotations

import numpy as np

from unibatch.buffers.episodes import InvalidEpisodeIdError


def check_range(ids: np.ndarray, current: int, operation: str) -> None:
    """Rule 1: every id in ``[0, current]``.

    Args:
        ids: the ids to write (any shape), as integers.
        current: the buffer's ``current_episode_id``.
        operation: the public call, for the message.
    """
    flat = np.asarray(ids).reshape(-1)
    bad = np.flatnonzero((flat < 0) | (flat > current))
    if bad.size:
        at = int(bad[0])
        raise InvalidEpisodeIdError(
            f"{operation}: episode_ids must lie in [0, current_episode_id={current}]; got {int(flat[at])} at "
            f"position {at} ({bad.size} invalid). Ids come from the current episode; call mark_episode_end() or "
            "set current_episode_id before writing a later episode"
        )


def check_order(ids: np.ndarray, operation: str, after: int | None = None, offset: int = 0) -> None:
    """Rule 3a: ``ids`` (logical order) never decrease, and the first is at least ``after``.

    Args:
        ids: 1-D ids in logical order.
        operation: the public call, for the message.
        after: the id of the step just before ``ids`` (None: no such step).
        offset: logical position of ``ids[0]``, for the message.
    """
    flat = np.asarray(ids).reshape(-1)
    previous = flat[:-1] if after is None else np.concatenate([[after], flat[:-1]])
    current = flat[1:] if after is None else flat
    bad = np.flatnonzero(current < previous)
    if bad.size:
        at = int(bad[0]) + (1 if after is None else 0)
        before = int(previous[int(bad[0])])
        raise InvalidEpisodeIdError(
            f"{operation}: episode ids must not decrease in a buffer with episode data; got episode "
            f"{int(flat[at])} at step {offset + at} after episode {before} (slots are released by the oldest "
            "step's id, so its data would be lost)"
        )


def check_has_data(ids: np.ndarray, known: np.ndarray, current: int, operation: str) -> None:
    """Rule 3b: every id has episode data (``known``) or is the current episode.

    Args:
        ids: the ids to write (1-D).
        known: whether each id has episode data.
        current: the buffer's ``current_episode_id``.
        operation: the public call, for the message.
    """
    flat = np.asarray(ids).reshape(-1)
    missing = np.flatnonzero(~np.asarray(known).reshape(-1) & (flat != current))
    if missing.size:
        at = int(missing[0])
        raise InvalidEpisodeIdError(
            f"{operation}: episode {int(flat[at])} (position {at}) has no episode data and is not the current "
            f"episode {current}; its steps could never be read. Give its episode_data in the same call or "
            "call set_episode_data_at first"
        )
