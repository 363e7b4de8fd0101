"""Frames <-> segment video files through PyAV, for :class:`~unibatch.storages.video.VideoStorage`.

:func:`parse_frame_format` checks that a space is a camera stream and fixes how its frames map to
PyAV frames; :class:`EncoderSettings` holds the codec options; :func:`encode_segment` writes one
segment file (temporary name, fsync, rename); :class:`DecoderCache` keeps a few segment files open
per process and reads frames with a keyframe-aware seek.

Frame numbers and timestamps: a segment's stream has ``time_base = 1/fps`` and frame ``i`` has
``pts = i``. A container may store another time base (Matroska keeps milliseconds), so a decoded
frame's number is ``round(pts * time_base * fps)``, exact while ``fps <= 1000``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from unibatch._optional import require
from unibatch.errors import UnibatchError, UnsupportedSpaceError
from unibatch.spaces import BoxSpace, Space
from unibatch.storages._leaves import leaf_table
from unibatch.storages._safe_paths import create_temporary

LAYOUTS = ("HW", "HWC", "CHW")
ACCEPTED = (
    "one BoxSpace leaf of uint8 (H, W), (H, W, C) or, with layout='CHW', (C, H, W) where C is 1 or 3, "
    "or of uint16 (H, W) / one channel (depth, lossless codecs only)"
)
MAX_FPS = 1000
"""Matroska stores milliseconds: above 1000 fps two frames would share a timestamp."""


class CorruptVideoError(UnibatchError, OSError):
    """A segment file exists but does not hold the frames the index says; names the file and frame."""


def _av() -> Any:
    return require("av", "video")


# ---------------------------------------------------------------------- codecs
@dataclass(frozen=True)
class Codec:
    """One supported encoder and how its segments are stored.

    Attributes:
        encoder: the FFmpeg encoder name (``"ffv1"``, ``"libx264"``, ``"libsvtav1"``).
        container: the FFmpeg muxer (``"matroska"``, ``"mp4"``).
        extension: the segment file extension.
        lossless: whether every pixel round-trips (with the default pixel formats).
        gop_size: default keyframe interval.
        crf: default constant-rate factor (None: the codec has none).
        crf_range: accepted ``crf`` values, inclusive.
        preset: default speed preset (None: the codec has none).
    """

    encoder: str
    container: str
    extension: str
    lossless: bool
    gop_size: int
    crf: int | None = None
    crf_range: tuple[int, int] = (0, 0)
    preset: str | None = None


CODECS = {
    "ffv1": Codec("ffv1", "matroska", ".mkv", True, 1),
    "libx264": Codec("libx264", "mp4", ".mp4", False, 10, 18, (0, 51), "veryfast"),
    "libsvtav1": Codec("libsvtav1", "mp4", ".mp4", False, 10, 30, (1, 63), "8"),
}
CODEC_ALIASES = {"ffv1": "ffv1", "h264": "libx264", "libx264": "libx264", "av1": "libsvtav1", "libsvtav1": "libsvtav1"}


def parse_codec(name: Any) -> Codec:
    """The codec for a user-facing name (``"ffv1"``, ``"h264"``/``"libx264"``, ``"av1"``/``"libsvtav1"``)."""
    if not isinstance(name, str) or name.lower() not in CODEC_ALIASES:
        raise ValueError(f"VideoStorage codec must be one of {sorted(CODEC_ALIASES)}, got {name!r}")
    return CODECS[CODEC_ALIASES[name.lower()]]


# ---------------------------------------------------------------------- frames
@dataclass(frozen=True)
class FrameFormat:
    """How a frame of the space maps to a PyAV frame.

    Attributes:
        layout: ``"HW"``, ``"HWC"`` or ``"CHW"``: the axes of a frame of the space.
        shape: the frame shape of the space.
        dtype: ``uint8`` or ``uint16``.
    """

    layout: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def channels(self) -> int:
        return 1 if self.layout == "HW" else self.shape[0 if self.layout == "CHW" else -1]

    @property
    def height(self) -> int:
        return self.shape[1] if self.layout == "CHW" else self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[2] if self.layout == "CHW" else self.shape[1]

    @property
    def av_format(self) -> str:
        """The PyAV format of a frame as handed to and taken from PyAV (``rgb24``, ``gray``, ``gray16le``)."""
        if self.channels == 3:
            return "rgb24"
        return "gray16le" if self.dtype == np.uint16 else "gray"

    @property
    def av_shape(self) -> tuple[int, ...]:
        """The shape of one frame in PyAV's layout: ``(H, W, 3)`` or ``(H, W)``."""
        return (self.height, self.width, 3) if self.channels == 3 else (self.height, self.width)

    def to_av(self, frames: np.ndarray) -> np.ndarray:
        """``(n, *shape)`` frames of the space as ``(n, *av_shape)``."""
        if self.layout == "CHW" and self.channels == 3:
            frames = frames.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(frames.reshape((len(frames), *self.av_shape)))

    def from_av(self, frames: np.ndarray) -> np.ndarray:
        """``(n, *av_shape)`` decoded frames as ``(n, *shape)`` frames of the space."""
        if self.layout == "CHW" and self.channels == 3:
            frames = frames.transpose(0, 3, 1, 2)
        return frames.reshape((len(frames), *self.shape))


def parse_frame_format(space: Space, layout: str | None) -> FrameFormat:
    """The frame format of a camera-stream space, or :class:`UnsupportedSpaceError` saying what is accepted.

    Args:
        space: a BoxSpace of uint8 (H, W), (H, W, C), (C, H, W) with C in {1, 3}, or uint16 single-channel.
        layout: ``"HWC"``, ``"CHW"``, ``"HW"``, or None to infer it (``HWC`` when only the last dim is 1 or
            3, ``CHW`` when only the first is, ``HW`` for two dims).
    """
    leaves = leaf_table(space)
    if len(leaves) != 1 or not isinstance(leaves[0].space, BoxSpace):
        names = [leaf.name or "<root>" for leaf in leaves]
        raise UnsupportedSpaceError(
            f"VideoStorage stores {ACCEPTED}; got a space with leaves {names} (use DictStorage with "
            "'video' for the image keys)"
        )
    shape, dtype = leaves[0].shape, leaves[0].numpy_dtype
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise UnsupportedSpaceError(f"VideoStorage stores {ACCEPTED}; got dtype {dtype.name} with shape {shape}")
    resolved = _resolve_layout(shape, layout)
    frame = FrameFormat(resolved, shape, dtype)
    if frame.channels not in (1, 3) or (dtype == np.uint16 and frame.channels != 1):
        raise UnsupportedSpaceError(f"VideoStorage stores {ACCEPTED}; got {dtype.name} {shape} as {resolved}")
    if frame.height < 1 or frame.width < 1:
        raise UnsupportedSpaceError(f"VideoStorage frames need a positive height and width, got shape {shape}")
    return frame


def _resolve_layout(shape: tuple[int, ...], layout: str | None) -> str:
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"VideoStorage layout must be one of {LAYOUTS} or None, got {layout!r}")
    if len(shape) == 2:
        if layout not in (None, "HW"):
            raise UnsupportedSpaceError(f"VideoStorage: a 2-D frame {shape} has layout 'HW', not {layout!r}")
        return "HW"
    if len(shape) != 3:
        raise UnsupportedSpaceError(f"VideoStorage stores {ACCEPTED}; got shape {shape}")
    if layout is not None:
        if layout == "HW":
            raise UnsupportedSpaceError(f"VideoStorage: a 3-D frame {shape} needs layout 'HWC' or 'CHW'")
        return layout
    last, first = shape[-1] in (1, 3), shape[0] in (1, 3)
    if last and first:
        raise UnsupportedSpaceError(
            f"VideoStorage: frame shape {shape} could be (H, W, C) or (C, H, W); pass layout='HWC' or layout='CHW'"
        )
    if not (last or first):
        raise UnsupportedSpaceError(f"VideoStorage stores {ACCEPTED}; got shape {shape}")
    return "HWC" if last else "CHW"


# ---------------------------------------------------------------------- encoder settings
@dataclass(frozen=True)
class EncoderSettings:
    """Everything that decides how frames are encoded (persisted in the storage's sidecar).

    Attributes:
        codec: the encoder and its container.
        pixel_format: the pixel format inside the file (``bgr0``, ``gray``, ``gray16le``, ``yuv420p``, ...).
        crf: constant-rate factor of a lossy codec (None for ffv1).
        preset: speed preset of a lossy codec (None for ffv1).
        gop_size: keyframe interval (1: every frame is a keyframe).
        fps: frame rate written in the file (metadata only).
        encoder_options: further FFmpeg encoder options, e.g. ``{"tune": "fastdecode"}``.
    """

    codec: Codec
    pixel_format: str
    crf: int | None
    preset: str | None
    gop_size: int
    fps: int
    encoder_options: Mapping[str, str] = field(default_factory=dict)

    def av_options(self) -> dict[str, str]:
        """The options handed to the FFmpeg encoder."""
        options = dict(self.encoder_options)
        if self.crf is not None:
            options["crf"] = str(self.crf)
        if self.preset is not None:
            options["preset"] = self.preset
        return options

    def to_json(self) -> dict[str, Any]:
        return {
            "codec": self.codec.encoder,
            "pixel_format": self.pixel_format,
            "crf": self.crf,
            "preset": self.preset,
            "gop_size": self.gop_size,
            "fps": self.fps,
            "encoder_options": dict(self.encoder_options),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> EncoderSettings:
        return cls(
            parse_codec(payload["codec"]),
            str(payload["pixel_format"]),
            payload["crf"],
            payload["preset"],
            int(payload["gop_size"]),
            int(payload["fps"]),
            {str(k): str(v) for k, v in payload["encoder_options"].items()},
        )


def make_settings(
    codec_name: str,
    frame: FrameFormat,
    *,
    pixel_format: str | None,
    crf: int | None,
    preset: str | int | None,
    gop_size: int | None,
    fps: int,
    encoder_options: Mapping[str, Any] | None,
) -> EncoderSettings:
    """Validated encoder settings with per-codec defaults; the encoder is opened once to check them.

    Raises:
        ValueError: an option is out of range or unknown to the encoder.
        UnsupportedSpaceError: the frames do not fit the codec (depth with a lossy codec, odd sizes
            with a chroma-subsampled pixel format, a size the encoder refuses).
    """
    codec = parse_codec(codec_name)
    if frame.dtype == np.uint16 and not codec.lossless:
        raise UnsupportedSpaceError(
            f"VideoStorage: uint16 (depth) frames need the lossless codec 'ffv1', got codec {codec_name!r}"
        )
    settings = EncoderSettings(
        codec,
        pixel_format or _default_pixel_format(codec, frame),
        _parse_crf(codec, crf),
        _parse_preset(codec, preset),
        _positive("gop_size", codec.gop_size if gop_size is None else gop_size),
        _parse_fps(fps),
        {str(k): str(v) for k, v in (encoder_options or {}).items()},
    )
    _check_pixel_format(settings, frame)
    _check_encoder_opens(settings, frame)
    return settings


def _default_pixel_format(codec: Codec, frame: FrameFormat) -> str:
    if not codec.lossless:
        return "yuv420p"
    if frame.channels == 3:
        return "bgr0"  # ffv1 stores it losslessly (a reversible colour transform of RGB)
    return "gray16le" if frame.dtype == np.uint16 else "gray"


def _parse_crf(codec: Codec, crf: Any) -> int | None:
    if crf is None:
        return codec.crf
    if codec.crf is None:
        raise ValueError(f"VideoStorage: codec {codec.encoder!r} is lossless and takes no crf, got crf={crf!r}")
    low, high = codec.crf_range
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not low <= crf <= high:
        raise ValueError(f"VideoStorage: crf for {codec.encoder!r} must be an integer in [{low}, {high}], got {crf!r}")
    return int(crf)


def _parse_preset(codec: Codec, preset: Any) -> str | None:
    if preset is None:
        return codec.preset
    if codec.preset is None:
        raise ValueError(f"VideoStorage: codec {codec.encoder!r} takes no preset, got preset={preset!r}")
    return str(preset)


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"VideoStorage: {name} must be a positive integer, got {value!r}")
    return int(value)


def _parse_fps(fps: Any) -> int:
    value = _positive("fps", fps)
    if value > MAX_FPS:
        raise ValueError(f"VideoStorage: fps must be at most {MAX_FPS} (frame timestamps are milliseconds), got {fps}")
    return value


def _check_pixel_format(settings: EncoderSettings, frame: FrameFormat) -> None:
    av = _av()
    supported = [f.name for f in av.codec.Codec(settings.codec.encoder, "w").video_formats or ()]
    if settings.pixel_format not in supported:
        raise ValueError(
            f"VideoStorage: codec {settings.codec.encoder!r} takes pixel formats {supported}, "
            f"got pixel_format={settings.pixel_format!r}"
        )
    pixel = av.VideoFormat(settings.pixel_format)
    step_w = max(1, -(-64 // pixel.chroma_width(64)))
    step_h = max(1, -(-64 // pixel.chroma_height(64)))
    if frame.width % step_w or frame.height % step_h:
        raise UnsupportedSpaceError(
            f"VideoStorage: pixel format {settings.pixel_format!r} needs a width divisible by {step_w} and a height "
            f"divisible by {step_h}; got frames of height {frame.height} and width {frame.width}"
        )


def _check_encoder_opens(settings: EncoderSettings, frame: FrameFormat) -> None:
    """Open the encoder once with the real settings: unknown options, bad presets and sizes fail here."""
    av = _av()
    context = av.CodecContext.create(settings.codec.encoder, "w")
    known = {option.name for option in (*context.supported_options.generic, *context.supported_options.private)}
    unknown = sorted(set(settings.encoder_options) - known)
    if unknown:
        raise ValueError(f"VideoStorage: encoder {settings.codec.encoder!r} has no options {unknown}")
    _configure(context, settings, frame)
    context.options = settings.av_options()
    try:
        context.open()
    except av.FFmpegError as error:
        raise UnsupportedSpaceError(
            f"VideoStorage: encoder {settings.codec.encoder!r} refuses {frame.height}x{frame.width} frames in "
            f"{settings.pixel_format!r} with options {settings.av_options()}: {error}"
        ) from error


def _configure(context: Any, settings: EncoderSettings, frame: FrameFormat) -> None:
    context.width, context.height = frame.width, frame.height
    context.pix_fmt = settings.pixel_format
    context.time_base = Fraction(1, settings.fps)
    context.framerate = settings.fps
    context.gop_size = settings.gop_size


# ---------------------------------------------------------------------- encoding
def encode_segment(path: Path, frames: np.ndarray, settings: EncoderSettings, frame: FrameFormat) -> None:
    """Write ``frames`` (``(n, *frame.av_shape)``) as the segment file ``path``: temporary file, fsync, rename.

    On any failure the temporary file is removed and ``path`` is left as it was.
    """
    av = _av()
    descriptor, temporary = create_temporary(path)  # exclusive, random name; PyAV then writes that new file
    os.close(descriptor)
    try:
        with av.open(str(temporary), "w", format=settings.codec.container) as container:
            stream = container.add_stream(settings.codec.encoder, rate=settings.fps, options=settings.av_options())
            _configure(stream.codec_context, settings, frame)
            stream.time_base = Fraction(1, settings.fps)
            for number, array in enumerate(frames):
                video_frame = av.VideoFrame.from_ndarray(array, format=frame.av_format)
                video_frame = video_frame.reformat(format=settings.pixel_format, threads=1)
                video_frame.pts = number
                container.mux(stream.encode(video_frame))
            container.mux(stream.encode(None))
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------- decoding
class SegmentReader:
    """One open segment file that decodes requested frames in increasing order.

    It keeps decoding forward while the next wanted frame is not past a keyframe it could seek to,
    and otherwise seeks back to the keyframe at or before that frame. Decoding and pixel conversion
    are single-threaded: small frames gain nothing from threads, and FFmpeg objects that own threads
    deadlock when a forked child frees them (its copy of the threads does not exist).
    """

    def __init__(self, path: Path, settings: EncoderSettings, frame: FrameFormat) -> None:
        self.path = path
        self._frame = frame
        self._gop_size = settings.gop_size
        av = _av()
        try:
            self._container = av.open(str(path))
        except FileNotFoundError:
            raise
        except av.FFmpegError as error:
            raise CorruptVideoError(f"{path} is not a readable video: {error}") from error
        self._stream = self._container.streams.video[0]
        self._stream.codec_context.thread_count = 1
        frames_per_tick = self._stream.time_base * settings.fps  # a Fraction: frame = pts * frames_per_tick
        self._per_tick = (frames_per_tick.numerator, frames_per_tick.denominator)
        self._decoded: Iterator[Any] | None = None
        self._next = 0

    def read(self, numbers: np.ndarray) -> np.ndarray:
        """The frames ``numbers`` (sorted, distinct) of this file: ``(len(numbers), *av_shape)``."""
        out = np.empty((len(numbers), *self._frame.av_shape), self._frame.dtype)
        for position, number in enumerate(numbers.tolist()):
            try:
                decoded = self._decode(number)
            except _av().FFmpegError as error:
                self._decoded = None
                raise CorruptVideoError(f"{self.path}: frame {number} cannot be decoded: {error}") from error
            out[position] = decoded.to_ndarray(format=self._frame.av_format, threads=1)
        return out

    def _decode(self, number: int) -> Any:
        continuing = self._decoded is not None and self._can_continue_to(number)
        found = self._advance(self._decoded if continuing else self._seek(number), number)
        if found is None:  # the seek landed past the frame or the stream ended early: decode from the start
            found = self._advance(self._seek(0), number)
        if found is None:
            raise CorruptVideoError(f"{self.path}: frame {number} is missing (the segment is truncated or corrupt)")
        return found

    def _advance(self, decoded_frames: Iterator[Any] | None, number: int) -> Any | None:
        """Decode forward to frame ``number``; None when a later frame (or the end) comes first."""
        for decoded in decoded_frames or ():
            found = _rounded_ratio(decoded.pts * self._per_tick[0], self._per_tick[1])
            self._next = found + 1
            if found == number:
                return decoded
            if found > number:
                break
        self._decoded = None
        return None

    def _can_continue_to(self, number: int) -> bool:
        """Whether decoding on is no slower than seeking: no keyframe lies between the position and ``number``."""
        keyframe = number - number % self._gop_size
        return keyframe <= self._next <= number

    def _seek(self, number: int) -> Iterator[Any]:
        """Seek to the keyframe at or before frame ``number``; the decoded frames from there."""
        timestamp = _rounded_ratio(number * self._per_tick[1], self._per_tick[0])
        self._container.seek(timestamp, backward=True, any_frame=False, stream=self._stream)
        self._decoded = self._container.decode(self._stream)
        return self._decoded

    def close(self) -> None:
        self._decoded = None
        self._container.close()


def _rounded_ratio(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest integer (halves up), in integer arithmetic."""
    return (2 * numerator + denominator) // (2 * denominator)


class DecoderCache:
    """Per-process open :class:`SegmentReader` s (least recently used first out) and decoding threads.

    Readers and threads inherited through ``fork`` do not work in the child (readers share file
    offsets with the parent, threads do not exist), so a new process starts afresh, never touching
    what it inherited.

    Args:
        size: open files kept.
        threads: files decoded at once (PyAV releases the GIL while decoding); 1 decodes in the caller.
    """

    def __init__(self, size: int, threads: int) -> None:
        self.size = size
        self.threads = threads
        self._readers: OrderedDict[str, SegmentReader] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = os.getpid()

    def read(
        self, requests: Sequence[tuple[Path, np.ndarray]], settings: EncoderSettings, frame: FrameFormat
    ) -> list[np.ndarray]:
        """For each ``(path, numbers)``: frames ``numbers`` (sorted, distinct) of that file, ``(n, *av_shape)``."""
        if self._pid != os.getpid():
            self._readers, self._pool, self._pid = OrderedDict(), None, os.getpid()
        results: list[np.ndarray] = []
        for start in range(0, len(requests), self.size):  # a chunk never evicts its own readers
            chunk = requests[start : start + self.size]
            jobs = [(self._reader(path, settings, frame), numbers) for path, numbers in chunk]
            results.extend(self._map(jobs))
        return results

    def _map(self, jobs: list[tuple[SegmentReader, np.ndarray]]) -> list[np.ndarray]:
        if self.threads == 1 or len(jobs) == 1:
            return [reader.read(numbers) for reader, numbers in jobs]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="unibatch-video")
        return list(self._pool.map(lambda job: job[0].read(job[1]), jobs))

    def _reader(self, path: Path, settings: EncoderSettings, frame: FrameFormat) -> SegmentReader:
        key = str(path)
        reader = self._readers.pop(key, None)
        if reader is None:
            try:
                reader = SegmentReader(path, settings, frame)
            except FileNotFoundError as error:
                raise FileNotFoundError(f"segment file {path} is missing") from error
        self._readers[key] = reader
        while len(self._readers) > self.size:
            self._readers.popitem(last=False)[1].close()
        return reader

    def discard(self, path: Path) -> None:
        """Close the reader of ``path`` (the file was deleted)."""
        reader = self._readers.pop(str(path), None)
        if reader is not None and self._pid == os.getpid():
            reader.close()

    def close(self) -> None:
        readers, pool, self._readers, self._pool = self._readers, self._pool, OrderedDict(), None
        if self._pid == os.getpid():
            for reader in readers.values():
                reader.close()
            if pool is not None:
                pool.shutdown()
