"""Buffers: ``ReplayBuffer`` (ring over a storage) and ``TrajectoryReplayBuffer`` (steps + episodes)."""

from unibatch.buffers.episodes import EpisodeCapacityError as EpisodeCapacityError
from unibatch.buffers.episodes import InvalidEpisodeIdError as InvalidEpisodeIdError
from unibatch.buffers.episodes import MissingEpisodeDataError as MissingEpisodeDataError
from unibatch.buffers.replay_buffer import ReplayBuffer as ReplayBuffer
from unibatch.buffers.trajectory import TrajectoryData as TrajectoryData
from unibatch.buffers.trajectory import TrajectoryReplayBuffer as TrajectoryReplayBuffer

__all__ = [
    "EpisodeCapacityError",
    "InvalidEpisodeIdError",
    "MissingEpisodeDataError",
    "ReplayBuffer",
    "TrajectoryData",
    "TrajectoryReplayBuffer",
]
