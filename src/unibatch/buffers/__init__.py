"""Buffers: ``ReplayBuffer`` (ring over a storage) and ``TrajectoryReplayBuffer`` (steps + episodes)."""

from unibatch.buffers.replay_buffer import ReplayBuffer as ReplayBuffer

__all__ = ["ReplayBuffer"]
