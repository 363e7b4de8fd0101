"""Where each slot's frame of a :class:`~unibatch.storages.video.VideoStorage` lives: pure index arithmetic.

Committed frames live in segment files. The segment index is a sorted list of non-overlapping
:class:`Segment` entries, each mapping the slots ``[start, stop)`` to consecutive frames of one file.
Rewriting slots never re-encodes a file: the entries they cover are split (:func:`place`), and a file
that no entry references any more can be deleted. Frames written since the last flush wait in
:class:`PendingFrames`. A slot found in neither reads as zeros.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

GROWTH = 2
"""Pending buffers grow by this factor, so appending one frame at a time costs amortised O(1)."""


@dataclass(frozen=True)
class Segment:
    """Slots ``[start, stop)`` hold frames ``first_frame, first_frame + 1, ...`` of the file ``file``."""

    start: int
    stop: int
    file: str
    first_frame: int

    def to_json(self) -> list[int | str]:
        return [self.start, self.stop, self.file, self.first_frame]

    @classmethod
    def from_json(cls, entry: Sequence[int | str]) -> Segment:
        start, stop, file, first_frame = entry
        return cls(int(start), int(stop), str(file), int(first_frame))


def place(segments: Iterable[Segment], new: Segment) -> list[Segment]:
    """The index after the slots of ``new`` are rewritten by ``new`` (covered entries are split or dropped)."""
    kept = []
    for old in segments:
        if old.stop <= new.start or old.start >= new.stop:
            kept.append(old)
            continue
        if old.start < new.start:
            kept.append(Segment(old.start, new.start, old.file, old.first_frame))
        if old.stop > new.stop:
            kept.append(Segment(new.stop, old.stop, old.file, old.first_frame + new.stop - old.start))
    kept.append(new)
    return sorted(kept, key=lambda segment: segment.start)


def truncate(segments: Iterable[Segment], length: int) -> list[Segment]:
    """The index of the first ``length`` slots only."""
    return [
        Segment(s.start, min(s.stop, length), s.file, s.first_frame) if s.stop > length else s
        for s in segments
        if s.start < length
    ]


def referenced_files(segments: Iterable[Segment]) -> set[str]:
    return {segment.file for segment in segments}


def contiguous_runs(slots: np.ndarray, limit: int) -> Iterator[slice]:
    """Positions of ``slots`` (sorted, distinct) split into runs of consecutive slots of at most ``limit``."""
    breaks = np.flatnonzero(np.diff(slots) != 1) + 1
    for start, stop in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(slots)].tolist(), strict=True):
        for chunk in range(start, stop, limit):
            yield slice(chunk, min(chunk + limit, stop))


class SegmentTable:
    """The segment index as arrays, for vectorised lookups of many slots at once."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        self.files = sorted(referenced_files(segments))
        number = {file: position for position, file in enumerate(self.files)}
        self._starts = np.array([s.start for s in segments], np.int64)
        self._stops = np.array([s.stop for s in segments], np.int64)
        self._first_frames = np.array([s.first_frame for s in segments], np.int64)
        self._file_ids = np.array([number[s.file] for s in segments], np.int64)

    def locate(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each slot: the position of its file in :attr:`files` (-1 when unwritten) and its frame number."""
        entry = np.searchsorted(self._starts, slots, side="right") - 1
        if not len(self._starts):
            return np.full(len(slots), -1, np.int64), np.zeros(len(slots), np.int64)
        safe = np.maximum(entry, 0)
        inside = (entry >= 0) & (slots < self._stops[safe])
        file_ids = np.where(inside, self._file_ids[safe], -1)
        frames = np.where(inside, self._first_frames[safe] + slots - self._starts[safe], 0)
        return file_ids, frames


class PendingFrames:
    """Frames written since the last flush, kept in memory by slot (in the space's frame layout).

    Args:
        frame_shape: the shape of one frame.
        dtype: the frame dtype.
    """

    def __init__(self, frame_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._frames = np.empty((0, *frame_shape), dtype)
        self._slots = np.empty(0, np.int64)
        self._row_of_slot = np.empty(0, np.int64)
        self.count = 0

    def rows(self, slots: np.ndarray) -> np.ndarray:
        """The pending row of each slot, -1 for slots with no pending frame."""
        rows = np.full(len(slots), -1, np.int64)
        if self.count:
            known = slots < len(self._row_of_slot)
            rows[known] = self._row_of_slot[slots[known]]
        return rows

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self._frames[rows]

    def put(self, slots: np.ndarray, frames: np.ndarray) -> None:
        """Keep ``frames`` for ``slots`` (distinct), replacing earlier pending frames of the same slots."""
        if not len(slots):
            return
        self._reserve_slots(int(slots.max()) + 1)
        rows = self.rows(slots)
        new = rows < 0
        added = int(new.sum())
        self._reserve_rows(self.count + added)
        rows[new] = np.arange(self.count, self.count + added)
        self._row_of_slot[slots[new]] = rows[new]
        self._slots[rows[new]] = slots[new]
        self.count += added
        self._frames[rows] = frames

    def sorted_slots(self) -> tuple[np.ndarray, np.ndarray]:
        """The pending slots in increasing order and their rows."""
        slots = self._slots[: self.count]
        order = np.argsort(slots, kind="stable")
        return slots[order], order

    def drop_from(self, length: int) -> None:
        """Forget pending frames of slots ``>= length``."""
        slots = self._slots[: self.count]
        keep = np.flatnonzero(slots < length)
        if len(keep) == self.count:
            return
        self._row_of_slot[slots] = -1
        kept_slots, kept_frames = slots[keep], self._frames[keep]
        self.count = len(keep)
        self._slots[: self.count] = kept_slots
        self._frames[: self.count] = kept_frames
        self._row_of_slot[kept_slots] = np.arange(self.count)

    def clear(self) -> None:
        self._row_of_slot[self._slots[: self.count]] = -1
        self.count = 0

    def _reserve_slots(self, size: int) -> None:
        if size > len(self._row_of_slot):
            grown = np.full(max(size, GROWTH * len(self._row_of_slot)), -1, np.int64)
            grown[: len(self._row_of_slot)] = self._row_of_slot
            self._row_of_slot = grown

    def _reserve_rows(self, size: int) -> None:
        if size > len(self._frames):
            capacity = max(size, GROWTH * len(self._frames))
            frames = np.empty((capacity, *self._frames.shape[1:]), self._frames.dtype)
            frames[: self.count] = self._frames[: self.count]
            slots = np.empty(capacity, np.int64)
            slots[: self.count] = self._slots[: self.count]
            self._frames, self._slots = frames, slots
