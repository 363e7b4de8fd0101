"""``VideoStorage``: camera streams as video segment files (PyAV), lossless ffv1 or lossy h264/AV1.

Layout of the storage directory::

    video.json        {"format_version", "capacity", "length", "leaf": {"dtype", "shape"}, "layout",
                       "codec", "pixel_format", "crf", "preset", "gop_size", "fps", "encoder_options",
                       "segment_frames", "decoder_cache_size", "read_threads", "next_segment",
                       "segments": [[slot_start, slot_stop, file_name, first_frame_in_file], ...]}
    seg-000000.mkv    frames of consecutive slots (``.mkv`` for ffv1, ``.mp4`` for h264 and AV1)
    seg-000001.mkv    ...

Writes collect in memory (and are read back from there) until :meth:`VideoStorage.flush`, which
encodes each run of consecutive pending slots into new segment files (written under a temporary
name, fsynced, renamed) and then replaces ``video.json`` atomically: that is the commit point, so a
writer killed at any moment leaves the previous index and its files intact. Pending frames are also
flushed when ``segment_frames`` of them have gathered, so a file holds an episode or a committed
run of rows, never a single step. Rewriting slots (a full ring) never re-encodes a file: the index
entries covering them are split, and a file that no entry references any more is deleted after
the index that drops it is written. Slots never written read as zeros.

A read-only instance re-reads ``video.json`` whenever it changed (one ``stat`` per read), so readers
in other processes follow the writer's commits; rows the writer has not flushed do not exist for
them. A batched read decodes each distinct slot once: slots are grouped by file, and each file's
frames are decoded in increasing order, with a seek to the keyframe at or before a frame when that
is cheaper than decoding on (ffv1 files have a keyframe per frame). Open files stay in a small
per-process cache, which a forked process never inherits.

One process writes. ``close()`` drops frames not yet flushed (like a buffer's uncommitted rows).
The storage pickles as its path and unpickles as a read-only reader; pickling a storage that holds
unflushed frames raises instead of silently leaving them behind.

Codecs: ``"ffv1"`` (default) is lossless: RGB uint8 as ``bgr0``, gray uint8 as ``gray`` and uint16
depth as ``gray16le`` round-trip bit-exactly. ``"h264"`` (libx264, crf 18, preset veryfast) and
``"av1"`` (libsvtav1, crf 30, preset 8) store ``yuv420p``, whose 4:2:0 chroma dominates the error
on small frames. On a synthetic camera stream (moving shapes on gradients, noise sigma 2) the mean
absolute error per channel is about 3.7 (84x84) and 2.6 (224x224) levels out of 255 for both, PSNR
about 30 dB and 34 dB; single pixels on sharp colour edges can be off by far more. Pass
``pixel_format="yuv444p"`` with h264 for about 2.7 levels / 35 dB at 84x84.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import Self

from unibatch.backends import get_backend_or_none
from unibatch.errors import FormatVersionError, IndexOutOfRangeError, SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import Space
from unibatch.storages._atomic import atomic_write_json, read_sidecar
from unibatch.storages._base import PathLike, SpaceStorage, StorageIndex
from unibatch.storages._directories import new_directory, parse_capacity, removes_on_failure
from unibatch.storages._leaves import host_index, leaf_table
from unibatch.storages._registry import register_storage
from unibatch.storages._safe_paths import (
    create_temporary,
    is_temporary,
    resolve_all_inside,
    temporary_name,
)
from unibatch.storages._video_codec import CorruptVideoError as CorruptVideoError
from unibatch.storages._video_codec import (
    DecoderCache,
    EncoderSettings,
    FrameFormat,
    encode_segment,
    make_settings,
    parse_frame_format,
)
from unibatch.storages._video_index import (
    PendingFrames,
    Segment,
    SegmentTable,
    contiguous_runs,
    place,
    referenced_files,
    truncate,
)

SIDECAR = "video.json"
FORMAT_VERSION = 1
DEFAULT_FPS = 30
DEFAULT_SEGMENT_FRAMES = 1000
DEFAULT_DECODER_CACHE_SIZE = 16
_CHANGING_KEYS = ("format_version", "length", "next_segment", "segments")
"""Sidecar keys a flush rewrites."""
_FIXED_KEYS = (
    "capacity", "leaf", "layout", "codec", "pixel_format", "crf", "preset", "gop_size", "fps", "encoder_options",
    "segment_frames", "decoder_cache_size", "read_threads"
)  # fmt: skip
"""Sidecar keys fixed at creation."""


@register_storage("video")
class VideoStorage(SpaceStorage):
    """Frames of one image space in video segment files, fixed or growable capacity.

    Use :meth:`create` and :meth:`load_from`; the constructor opens an existing directory. One
    process writes; any number of read-only instances (also in other processes) read the
    committed segments and follow new commits.
    """

    is_persistent = True
    has_expensive_reads = True
    cache_filename: Path

    def __init__(
        self,
        single_instance_space: Space,
        path: PathLike,
        *,
        read_only: bool = True,
        decoder_cache_size: int | None = None,
        read_threads: int | None = None,
    ) -> None:
        super().__init__(single_instance_space)
        self.cache_filename = Path(path)
        self.is_mutable = not read_only
        self.is_multiprocessing_safe = read_only
        self._signature = _sidecar_signature(self.cache_filename)
        sidecar = _read_sidecar(self.cache_filename)
        self._frame = _check_leaf(sidecar, single_instance_space, self.cache_filename)
        self._settings = EncoderSettings.from_json(sidecar)
        self._fixed = {key: sidecar[key] for key in _FIXED_KEYS}
        self.capacity = sidecar["capacity"]
        self._segment_frames = int(sidecar["segment_frames"])
        self._decoders = DecoderCache(
            _positive(
                "decoder_cache_size",
                sidecar["decoder_cache_size"] if decoder_cache_size is None else decoder_cache_size,
            ),
            _positive("read_threads", sidecar["read_threads"] if read_threads is None else read_threads),
        )
        self._pending = PendingFrames(self._frame.shape, self._frame.dtype)
        self._adopt(sidecar)

    def _adopt(self, sidecar: Mapping[str, Any]) -> None:
        """Take length and segment index from a sidecar read from disk."""
        self._length = int(sidecar["length"]) if self.capacity is None else int(self.capacity)
        self._next_segment = int(sidecar["next_segment"])
        self._set_segments([Segment.from_json(entry) for entry in sidecar["segments"]])
        self._committed_files = referenced_files(self._segments)
        self._length_changed = False

    def _set_segments(self, segments: list[Segment]) -> None:
        self._segments = segments
        self._table = SegmentTable(segments)

    # ------------------------------------------------------------------ construction
    @classmethod
    @removes_on_failure
    def create(
        cls,
        single_instance_space: Space,
        *args: Any,
        capacity: int | None,
        cache_path: PathLike | None = None,
        multiprocessing: bool = False,
        codec: str = "ffv1",
        pixel_format: str | None = None,
        crf: int | None = None,
        preset: str | int | None = None,
        gop_size: int | None = None,
        fps: int = DEFAULT_FPS,
        layout: str | None = None,
        segment_frames: int = DEFAULT_SEGMENT_FRAMES,
        decoder_cache_size: int = DEFAULT_DECODER_CACHE_SIZE,
        read_threads: int = 1,
        encoder_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Create the directory ``cache_path`` holding an empty video storage.

        Args:
            single_instance_space: a BoxSpace of uint8 ``(H, W, 3)``, ``(H, W, 1)``, ``(H, W)``,
                ``(3, H, W)``/``(1, H, W)`` (channel-first), or uint16 ``(H, W)`` depth (ffv1 only).
            capacity: number of slots, or None for a growable storage.
            cache_path: the directory to create (must not exist or be empty).
            multiprocessing: must be False: one process writes (readers use ``load_from``).
            codec: ``"ffv1"`` (lossless), ``"h264"``/``"libx264"`` or ``"av1"``/``"libsvtav1"``.
            pixel_format: pixel format inside the files; default ``bgr0``/``gray``/``gray16le`` for
                ffv1 (bit-exact) and ``yuv420p`` for h264 and AV1 (frame sides must then be even).
            crf: quality of a lossy codec (h264: 0-51, default 18; AV1: 1-63, default 30).
            preset: speed preset of a lossy codec (default ``"veryfast"`` for h264, ``8`` for AV1).
            gop_size: keyframe interval (default 1 for ffv1, 10 for lossy codecs); a random read
                decodes up to this many frames.
            fps: frame rate recorded in the files (metadata only), at most 1000.
            layout: ``"HWC"``, ``"CHW"`` or ``"HW"``; None infers it from the shape.
            segment_frames: the most frames per segment file; also flushes when that many are pending.
            decoder_cache_size: open segment files kept per process.
            read_threads: segment files one read decodes in parallel (PyAV releases the GIL while
                decoding); 1 decodes in the calling thread.
            encoder_options: further FFmpeg encoder options, e.g. ``{"tune": "fastdecode"}``.
            *args: refused (the signature is the reference's).
            **kwargs: refused (the signature is the reference's).
        """
        if args or kwargs:
            raise TypeError(f"VideoStorage.create got unexpected arguments {args or ''} {sorted(kwargs)}")
        if cache_path is None:
            raise UnsupportedOperationError("VideoStorage needs a cache_path (a directory for its segment files)")
        if multiprocessing:
            raise UnsupportedOperationError(
                "VideoStorage has one writing process; share it by opening readers with load_from(read_only=True)"
            )
        capacity = parse_capacity(capacity)
        for name, value in (
            ("segment_frames", segment_frames),
            ("decoder_cache_size", decoder_cache_size),
            ("read_threads", read_threads),
        ):
            _positive(name, value)
        frame = parse_frame_format(single_instance_space, layout)
        settings = make_settings(
            codec,
            frame,
            pixel_format=pixel_format,
            crf=crf,
            preset=preset,
            gop_size=gop_size,
            fps=fps,
            encoder_options=encoder_options,
        )
        path = new_directory(cache_path)
        fixed = {
            "capacity": capacity,
            "leaf": {"dtype": frame.dtype.str, "shape": list(frame.shape)},
            "layout": frame.layout,
            **settings.to_json(),
            "segment_frames": segment_frames,
            "decoder_cache_size": decoder_cache_size,
            "read_threads": read_threads,
        }
        _write_sidecar(path, fixed, 0, 0, [])
        return cls(single_instance_space, path, read_only=False)

    @classmethod
    def load_from(
        cls,
        path: PathLike,
        single_instance_space: Space,
        *,
        capacity: int | None = None,
        read_only: bool = True,
        multiprocessing: bool = False,
        decoder_cache_size: int | None = None,
        read_threads: int | None = None,
        **kwargs: Any,
    ) -> Self:
        """Open the storage at ``path``; its frames must match ``single_instance_space``.

        Args:
            path: the storage directory.
            single_instance_space: the space of one frame.
            capacity: the expected capacity (checked when given).
            read_only: False reopens for appending and removes files a killed writer left behind.
            multiprocessing: readers only (a writer is never shared).
            decoder_cache_size: open segment files kept per process (default: the stored value).
            read_threads: segment files one read decodes in parallel (default: the stored value).
            **kwargs: refused: every format option is read from ``video.json``.
        """
        if kwargs:
            raise TypeError(f"VideoStorage.load_from got unexpected arguments {sorted(kwargs)}")
        if multiprocessing and not read_only:
            raise UnsupportedOperationError("a writable VideoStorage cannot be shared between processes")
        storage = cls(
            single_instance_space,
            path,
            read_only=read_only,
            decoder_cache_size=decoder_cache_size,
            read_threads=read_threads,
        )
        if capacity is not None and storage.capacity != capacity:
            raise SpaceMismatchError(f"{path} holds capacity {storage.capacity}, expected {capacity}")
        if not read_only:
            storage._remove_leftovers()
        return storage

    # ------------------------------------------------------------------ size
    def __len__(self) -> int:
        return self._length

    @property
    def pending_count(self) -> int:
        """Frames written since the last flush (held in memory, not yet in any file)."""
        return self._pending.count

    def _resize(self, length: int) -> None:
        if length < self._length:
            self._pending.drop_from(length)
            self._set_segments(truncate(self._segments, length))
        self._length_changed |= length != self._length
        self._length = length

    # ------------------------------------------------------------------ reads
    def _get(self, index: StorageIndex) -> Any:
        on_host = host_index(index)
        frames = self._read(self._slots(on_host))
        value = frames[0] if _is_single(on_host) else frames
        return self.backend.from_numpy(value, device=self.device)

    def _slots(self, index: Any) -> np.ndarray:
        if isinstance(index, slice):
            start = 0 if index.start is None else index.start
            return np.arange(start, len(self) if index.stop is None else index.stop, dtype=np.int64)
        return np.asarray(index, dtype=np.int64).reshape(-1)

    def _read(self, slots: np.ndarray) -> np.ndarray:
        """Frames of ``slots`` in request order: ``(len(slots), *frame shape)``."""
        if not self.is_mutable:
            self._follow_writer(slots)
        unique, inverse = np.unique(slots, return_inverse=True)
        frames = np.zeros((len(unique), *self._frame.shape), self._frame.dtype)
        rows = self._pending.rows(unique)
        pending = rows >= 0
        frames[pending] = self._pending.take(rows[pending])
        stored = np.flatnonzero(~pending)
        try:
            self._decode_into(frames, unique, stored)
        except FileNotFoundError:
            if self.is_mutable or not self._reload():
                raise
            self._decode_into(frames, unique, stored)  # the writer replaced those slots' segments
        return frames if np.array_equal(unique, slots) else frames[inverse]

    def _decode_into(self, frames: np.ndarray, slots: np.ndarray, positions: np.ndarray) -> None:
        """Decode the committed frames of ``slots[positions]`` into ``frames[positions]``, one pass per file."""
        file_ids, numbers = self._table.locate(slots[positions])
        written = file_ids >= 0
        order = np.lexsort((numbers[written], file_ids[written]))
        positions, file_ids, numbers = positions[written][order], file_ids[written][order], numbers[written][order]
        if not len(file_ids):
            return
        bounds = np.flatnonzero(np.diff(file_ids)) + 1
        groups = list(zip(np.r_[0, bounds].tolist(), np.r_[bounds, len(file_ids)].tolist(), strict=True))
        files = [self.cache_filename / self._table.files[file_ids[start]] for start, _ in groups]
        requests = [(path, numbers[start:stop]) for path, (start, stop) in zip(files, groups, strict=True)]
        decoded = self._decoders.read(requests, self._settings, self._frame)
        for (start, stop), group in zip(groups, decoded, strict=True):
            frames[positions[start:stop]] = self._frame.from_av(group)

    def _follow_writer(self, slots: np.ndarray) -> None:
        """A reader adopts the latest committed index (one ``stat`` per read); its slots must be committed."""
        self._reload()
        if len(slots) and int(slots.max()) >= self._length:
            raise IndexOutOfRangeError(
                f"VideoStorage: slot {int(slots.max())} is not committed; {self.cache_filename} holds {self._length}"
            )

    def refresh(self) -> None:
        """Read-only: adopt the frames and files a writer committed since this storage last looked."""
        if not self.is_mutable:
            self._reload()

    def _reload(self) -> bool:
        """Adopt the index on disk if it changed since it was read; whether it did."""
        signature = _sidecar_signature(self.cache_filename)
        if signature == self._signature:
            return False
        self._signature = signature
        old_files = self._committed_files
        self._adopt(_read_sidecar(self.cache_filename))
        for name in old_files - self._committed_files:
            self._decoders.discard(self.cache_filename / name)
        return True

    # ------------------------------------------------------------------ writes
    def _set(self, index: StorageIndex, value: Any) -> None:
        """Keep frames for ``index`` in memory until the next flush (checked first: nothing changes on error)."""
        self._check_writable("set")
        on_host = host_index(index)
        slots = self._slots(on_host)
        frames = self._frames_to_store(value, len(slots), single=_is_single(on_host))
        if len(slots) and (int(slots.min()) < 0 or int(slots.max()) >= len(self)):
            raise IndexOutOfRangeError(f"VideoStorage: slots {slots.min()}..{slots.max()} outside [0, {len(self)})")
        unique, last = np.unique(slots[::-1], return_index=True)
        if len(unique) < len(slots):  # duplicated slots: the last write wins, as in NumPy
            slots, frames = unique, frames[::-1][last]
        self._pending.put(slots, frames)
        if self._pending.count >= self._segment_frames:
            self.flush()

    def _frames_to_store(self, value: Any, count: int, single: bool) -> np.ndarray:
        """``value`` as ``(count, *frame shape)`` frames of the storage dtype, or an error saying what is wrong."""
        backend = get_backend_or_none(value)
        array = np.asarray(backend.to_numpy(value) if backend is not None else value)
        shape, dtype = self._frame.shape, self._frame.dtype
        expected = shape if single else (count, *shape)
        if array.shape != expected:
            raise SpaceMismatchError(
                f"VideoStorage: expected frames of shape {expected} ({dtype.name}), got shape {array.shape}"
            )
        if array.dtype != dtype:
            if not np.can_cast(array.dtype, dtype, "same_kind"):
                raise SpaceMismatchError(f"VideoStorage: expected {dtype.name} frames, got dtype {array.dtype}")
            limits = np.iinfo(dtype)
            if array.size and (array.min() < limits.min or array.max() > limits.max):
                raise SpaceMismatchError(
                    f"VideoStorage: {dtype.name} frames hold values in [{limits.min}, {limits.max}], "
                    f"got values in [{array.min()}, {array.max()}]"
                )
        return array.astype(dtype, copy=False).reshape(count, *shape)

    def clear(self) -> None:
        if self.capacity is None:
            self._check_writable("clear")
            self._resize(0)

    # ------------------------------------------------------------------ persistence
    def flush(self) -> None:
        """Encode the pending frames into new segment files, then commit the index (``video.json``)."""
        if not self.is_mutable or not (self._pending.count or self._length_changed):
            return
        created = self._encode_pending()
        segments = self._segments
        for segment in created:
            segments = place(segments, segment)
        next_segment = self._next_segment + len(created)
        # The commit point. Should it fail, the new files stay: either the index names them (the rename
        # happened) or they are orphans, which the next flush overwrites and a writable reopen deletes.
        _write_sidecar(self.cache_filename, self._fixed, self._length, next_segment, segments)
        self._signature = _sidecar_signature(self.cache_filename)
        self._set_segments(segments)
        self._next_segment = next_segment
        self._pending.clear()
        self._length_changed = False
        referenced = referenced_files(segments)
        unreferenced, self._committed_files = self._committed_files - referenced, referenced
        for name in unreferenced:
            self._decoders.discard(self.cache_filename / name)
        _unlink_all(self.cache_filename, unreferenced)

    def _encode_pending(self) -> list[Segment]:
        """One new segment file per run of consecutive pending slots (at most ``segment_frames`` each)."""
        slots, rows = self._pending.sorted_slots()
        created: list[Segment] = []
        try:
            for run in contiguous_runs(slots, self._segment_frames):
                name = f"seg-{self._next_segment + len(created):06d}{self._settings.codec.extension}"
                created.append(Segment(int(slots[run.start]), int(slots[run.stop - 1]) + 1, name, 0))
                frames = self._frame.to_av(self._pending.take(rows[run]))
                encode_segment(self.cache_filename / name, frames, self._settings, self._frame)
        except BaseException:
            _unlink_all(self.cache_filename, [segment.file for segment in created])
            raise
        return created

    def dumps(self, path: PathLike) -> None:
        """Flush in place, or write a complete copy (segment files hard-linked where possible) to ``path``."""
        self.flush()
        target = Path(path)
        if target.resolve() == self.cache_filename.resolve():
            return
        target.mkdir(parents=True, exist_ok=True)
        for name in self._committed_files:
            _link_or_copy(self.cache_filename / name, target / name)
        _write_sidecar(target, self._fixed, self._length, self._next_segment, self._segments)
        stale = [p.name for p in target.glob("seg-*") if p.name not in self._committed_files]
        _unlink_all(target, stale)

    def _remove_leftovers(self) -> None:
        """Delete what a killed writer left: temporary files and segment files no committed index names."""
        for entry in self.cache_filename.iterdir():
            name = entry.name
            orphan = name.startswith("seg-") and name not in self._committed_files
            if orphan or is_temporary(name):
                entry.unlink(missing_ok=True)

    def close(self) -> None:
        """Close open files and drop pending frames (call :meth:`flush` first to keep them); idempotent."""
        super().close()
        self._decoders.close()
        self._pending.clear()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle as the path: the copy is a read-only view of the committed segments."""
        if self._pending.count:
            raise UnsupportedOperationError(
                f"VideoStorage at {self.cache_filename} has {self._pending.count} frames not flushed; "
                "call flush() before pickling (a pickled copy reads committed segments only)"
            )
        return {
            "space": self.single_instance_space,
            "path": str(self.cache_filename),
            "decoder_cache_size": self._decoders.size,
            "read_threads": self._decoders.threads,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        VideoStorage.__init__(
            self,
            state["space"],
            state["path"],
            read_only=True,
            decoder_cache_size=state["decoder_cache_size"],
            read_threads=state["read_threads"],
        )


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"VideoStorage: {name} must be a positive integer, got {value!r}")
    return int(value)


def _is_single(index: Any) -> bool:
    """Whether a host index names one slot (an int or a 0-d array) rather than a batch."""
    return not isinstance(index, slice) and np.ndim(index) == 0


def _check_leaf(sidecar: Mapping[str, Any], space: Space, path: Path) -> FrameFormat:
    """The frame format of ``space``, after checking it is the one stored at ``path``."""
    stored_leaf = sidecar["leaf"]
    stored = [("", np.dtype(stored_leaf["dtype"]).str, tuple(stored_leaf["shape"]))]
    expected = [(leaf.name, leaf.numpy_dtype.str, leaf.shape) for leaf in leaf_table(space)]
    if stored != expected:
        raise SpaceMismatchError(f"{path} stores frames {stored}, but the space has {expected}")
    return parse_frame_format(space, sidecar["layout"])


def _read_sidecar(path: Path) -> dict[str, Any]:
    """``video.json`` of the storage at ``path``, checked to hold every key and a well-formed index."""
    sidecar = read_sidecar(path / SIDECAR, "video", FORMAT_VERSION)
    missing = [key for key in (*_FIXED_KEYS, *_CHANGING_KEYS) if key not in sidecar]
    entries = sidecar.get("segments")
    well_formed = isinstance(entries, list) and all(isinstance(e, list) and len(e) == 4 for e in entries)
    if missing or not well_formed:
        raise FormatVersionError(f"{path / SIDECAR} is not a video storage index (missing {missing or 'segments'})")
    resolve_all_inside(path, [entry[2] for entry in sidecar["segments"]], source=path / SIDECAR)
    return sidecar


def _write_sidecar(
    path: Path, fixed: Mapping[str, Any], length: int, next_segment: int, segments: list[Segment]
) -> None:
    atomic_write_json(
        path / SIDECAR,
        {
            **fixed,
            "format_version": FORMAT_VERSION,
            "length": length,
            "next_segment": next_segment,
            "segments": [segment.to_json() for segment in segments],
        },
    )


def _sidecar_signature(path: Path) -> tuple[int, int, int] | None:
    """Identifies one version of ``video.json`` (it is replaced by rename, so the inode changes)."""
    try:
        status = os.stat(path / SIDECAR)
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def _unlink_all(directory: Path, names: Any) -> None:
    for name in names:
        (directory / name).unlink(missing_ok=True)


def _link_or_copy(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` atomically: a hard link (segment files never change) or a synced copy."""
    temporary = temporary_name(target)
    try:
        os.link(source, temporary)  # refuses an existing name, never follows a symlink there
    except OSError:
        descriptor, temporary = create_temporary(target)
        with os.fdopen(descriptor, "wb") as handle, open(source, "rb") as original:
            shutil.copyfileobj(original, handle)
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, target)
