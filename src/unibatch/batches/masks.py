"""Valid-mask functions for stacked windows: which frames belong to the centre frame's episode.

A mask function is called as ``fn(stacked_batch, frames, data, metadata)`` with ``frames`` the
``(B, T)`` source indices and ``data``/``metadata`` the ``(B, T, ...)`` values read for them, and
returns a ``(B, T)`` boolean array. The two factories below are classes (so they pickle for
worker processes) and never write in place (so they run on JAX).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from array_api_compat import array_namespace

from unibatch._typing import Array
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import DictSpace

KeyPath = str | int | Sequence[str | int]


def _lookup(tree: Any, key: KeyPath, where: str) -> Array:
    keys = [key] if isinstance(key, (str, int)) else list(key)
    value = tree
    for part in keys:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            raise SpaceMismatchError(f"valid-mask key {key!r} is not in the {where}") from None
    return value


class ColumnMask(ABC):
    """A mask computed from one column (``key`` in data or metadata) of the ``(B, T)`` frames.

    Window views read that column alone first when the source offers cheap column reads,
    then read the full rows once at their final (filled) positions.
    """

    def __init__(self, key: KeyPath, is_in_metadata: bool = False) -> None:
        self.key = key
        self.is_in_metadata = is_in_metadata

    def column(self, data: Any, metadata: Any) -> Array:
        """The ``(B, T)`` values of the mask's column in the frames read."""
        if self.is_in_metadata:
            if metadata is None:
                raise SpaceMismatchError(f"valid-mask key {self.key!r} is expected in metadata, but there is none")
            return _lookup(metadata, self.key, "metadata")
        return _lookup(data, self.key, "data")

    def __call__(self, stacked: Any, frames: Array, data: Any, metadata: Any) -> Array:
        return self.mask_from_column(stacked, self.column(data, metadata))

    @abstractmethod
    def mask_from_column(self, stacked: Any, column: Array) -> Array:
        """``(B, T)`` validity from the ``(B, T)`` values of the column, in the column's own namespace.

        Window views pass a NumPy view of the column when their backend has host views.
        """

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, is_in_metadata={self.is_in_metadata})"


class EpisodeIdMask(ColumnMask):
    """A frame is valid when its episode id equals the centre frame's."""

    def mask_from_column(self, stacked: Any, ids: Array) -> Array:
        centre = stacked.centre_position
        return ids == ids[:, centre : centre + 1]


class EpisodeEndMask(ColumnMask):
    """A frame is valid when no episode-end flag lies between it and the centre frame.

    The frame that carries the flag belongs to its own (ending) episode.
    """

    def mask_from_column(self, stacked: Any, flags: Array) -> Array:
        xp = array_namespace(flags)
        ends = xp.astype(flags, xp.int32)  # counts of at most T
        before = xp.cumulative_sum(ends, axis=1) - ends  # number of ends strictly before each frame
        centre = stacked.centre_position
        return before == before[:, centre : centre + 1]


EPISODE_ID_KEYS = ("episode_ids", "episode_id")
"""Where sources keep episode ids: ``episode_ids`` is the metadata key of a ``TrajectoryReplayBuffer`` and of
the importers' datasets; ``episode_id`` is the reference page's default data key."""


def episode_mask_for(batch: Any) -> EpisodeIdMask:
    """The mask function that keeps a window inside its centre frame's episode, for the source ``batch``.

    Looks where sources keep episode ids, metadata first: ``episode_ids`` in the metadata of a
    ``TrajectoryReplayBuffer`` or an imported dataset (robomimic, LeRobot, Minari), then a data key
    ``episode_ids`` or ``episode_id`` of a dict sample.

    Raises:
        SpaceMismatchError: ``batch`` has none of these; the message lists what was looked for.

    >>> from unibatch.integrations.episodes import EpisodeDataset
    >>> from unibatch.testing import InMemoryBatch
    >>> episode_mask_for(EpisodeDataset(InMemoryBatch.from_range(5), [2, 3]))
    EpisodeIdMask(key='episode_ids', is_in_metadata=True)
    """
    for space, in_metadata in ((batch.single_metadata_space, True), (batch.single_space, False)):
        keys = space.keys() if isinstance(space, DictSpace) else ()
        for key in EPISODE_ID_KEYS:
            if key in keys:
                return EpisodeIdMask(key, is_in_metadata=in_metadata)
    raise SpaceMismatchError(
        f"{type(batch).__name__} carries no episode ids: looked for the metadata keys {list(EPISODE_ID_KEYS)} and "
        f"the data keys {list(EPISODE_ID_KEYS)}; pass get_valid_mask_function_with_episodeid_key(key, ...) or "
        "get_valid_mask_function_with_episode_end_key(key, ...) for a source that marks episodes another way"
    )
