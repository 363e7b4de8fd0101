"""VideoStorage: the storage conformance suite (lossless ffv1), plus codecs, segments, crashes and readers."""

from __future__ import annotations

import fractions
import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from unibatch import BinarySpace, BoxSpace, DictSpace
from unibatch.buffers import ReplayBuffer
from unibatch.errors import (
    FormatVersionError,
    IndexOutOfRangeError,
    ReadOnlyError,
    SpaceMismatchError,
    UnsupportedOperationError,
    UnsupportedSpaceError,
)
from unibatch.storages import DictStorage, VideoStorage, storage_class
from unibatch.storages import video as video_module
from unibatch.storages._video_index import PendingFrames, Segment, SegmentTable, contiguous_runs, place, truncate
from unibatch.storages.video import CorruptVideoError
from unibatch.testing.conformance import assert_tree_equal
from unibatch.testing.storage_conformance import StorageTests

pytest.importorskip("av")


def pattern_frames(count: int, shape: tuple[int, ...], dtype: str = "uint8", start: int = 0) -> np.ndarray:
    """Distinct deterministic frames: frame ``i`` differs from frame ``j`` in every pixel."""
    base = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    top = np.iinfo(dtype).max + 1
    return np.stack([(base * 7 + 31 * i) % top for i in range(start, start + count)]).astype(dtype)


def numbered_frames(numbers: np.ndarray, size: int = 32) -> np.ndarray:
    """Gray RGB frames that carry their number in two flat halves (readable through a lossy codec)."""
    frames = np.empty((len(numbers), size, size, 3), np.uint8)
    frames[:, :, : size // 2] = ((numbers % 16) * 16 + 8)[:, None, None, None]
    frames[:, :, size // 2 :] = ((numbers // 16 % 16) * 16 + 8)[:, None, None, None]
    return frames


def read_numbers(frames: np.ndarray) -> np.ndarray:
    size = frames.shape[2]
    low = np.round((frames[:, :, : size // 2].mean(axis=(1, 2, 3)) - 8) / 16)
    high = np.round((frames[:, :, size // 2 :].mean(axis=(1, 2, 3)) - 8) / 16)
    return (low + 16 * high).astype(np.int64)


def camera(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A synthetic camera stream: gradients, a moving disc, sensor noise (sigma 2): ``(count, H, W, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    frames = np.empty((count, height, width, 3), np.float32)
    for t in range(count):
        frames[t] = np.stack(
            [90 + 60 * np.sin(2 * np.pi * (xx + t / 300)), 110 + 50 * np.cos(2 * np.pi * yy), 80 + 40 * (xx + yy)], -1
        )
        cx, cy = 0.5 + 0.3 * np.sin(t / 30), 0.5 + 0.25 * np.cos(t / 45)
        frames[t][(xx - cx) ** 2 + (yy - cy) ** 2 < 0.02] = (200, 60, 50)
    frames += rng.normal(0, 2, frames.shape)
    return np.clip(frames, 0, 255).astype(np.uint8)


def image_space(backend, shape=(6, 8, 3), dtype="uint8"):
    return BoxSpace(backend, 0, np.iinfo(dtype).max, dtype, shape=shape)


def segment_files(path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name != "video.json")


# ---------------------------------------------------------------------- conformance
class VideoSuite(StorageTests):
    text = False
    shape: tuple[int, ...] = (6, 8, 3)
    dtype = "uint8"
    options: dict = {}

    def make_space(self, backend, text):
        return image_space(backend, self.shape, self.dtype)

    def make_sample(self, backend, i, text):
        return backend.asarray(pattern_frames(1, self.shape, self.dtype, start=i)[0])

    def make_storage(self, backend, space, capacity, path):
        return VideoStorage.create(space, capacity=capacity, cache_path=path, **self.options)

    def buffer_storage(self):
        return VideoStorage, dict(self.options)


class TestVideoStorageRGB(VideoSuite):
    options = {"segment_frames": 4}


class TestVideoStorageChannelFirst(VideoSuite):
    shape = (3, 6, 8)


class TestVideoStorageDepth(VideoSuite):
    shape = (6, 8)
    dtype = "uint16"
    backends = ("numpy",)


# ---------------------------------------------------------------------- codecs
@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((16, 10, 3), "uint8"), ((3, 16, 10), "uint8"), ((16, 10), "uint8"), ((16, 10, 1), "uint8"), ((16, 10), "uint16")],
    ids=["rgb", "rgb-chw", "gray", "gray-hwc", "depth"],
)
def test_ffv1_is_bit_exact_on_noise(backend, tmp_path, shape, dtype):
    frames = np.random.default_rng(0).integers(0, np.iinfo(dtype).max + 1, (12, *shape), dtype=dtype)
    storage = VideoStorage.create(image_space(backend, shape, dtype), capacity=12, cache_path=tmp_path / "s")
    storage.set(slice(0, 12), backend.asarray(frames))
    storage.flush()
    reopened = VideoStorage.load_from(tmp_path / "s", storage.single_instance_space)
    assert_tree_equal(reopened.get(slice(0, 12)), frames)
    assert_tree_equal(reopened.get(5), frames[5])
    sidecar = json.loads((tmp_path / "s" / "video.json").read_text())
    expected_format = {"uint16": "gray16le", "uint8": "bgr0" if 3 in shape else "gray"}[dtype]
    assert sidecar["codec"] == "ffv1" and sidecar["pixel_format"] == expected_format


@pytest.mark.parametrize(
    ("codec", "gop_size"),
    [("ffv1", None), ("ffv1", 4), ("h264", 5), ("av1", 5), ("h264", 1)],
    ids=["ffv1", "ffv1-gop", "h264", "av1", "h264-intra"],
)
def test_random_access_is_frame_accurate(tmp_path, codec, gop_size):
    from unibatch.backends import backend_from_name

    backend = backend_from_name("numpy")
    space = image_space(backend, (32, 32, 3))
    storage = VideoStorage.create(
        space, capacity=None, cache_path=tmp_path / "s", codec=codec, gop_size=gop_size, segment_frames=20
    )
    storage.extend_length(50)
    storage.set(slice(0, 50), numbered_frames(np.arange(50)))
    storage.flush()  # segments of 20, 20 and 10 frames
    with VideoStorage.load_from(tmp_path / "s", space, decoder_cache_size=2, read_threads=2) as reader:
        rng = np.random.default_rng(1)
        for _ in range(3):  # unsorted, duplicated, across segments; the decoders stay open in between
            index = rng.integers(0, 50, 40)
            np.testing.assert_array_equal(read_numbers(reader.get(index)), index)
        backwards = np.arange(49, -1, -1)
        np.testing.assert_array_equal(read_numbers(reader.get(backwards)), backwards)
        assert int(read_numbers(reader.get(37)[None])[0]) == 37


@pytest.mark.parametrize("codec", ["h264", "av1"])
def test_lossy_codecs_stay_within_the_documented_tolerance(backend, tmp_path, codec):
    frames = camera(30, 64, 64)
    storage = VideoStorage.create(
        image_space(backend, (64, 64, 3)), capacity=30, cache_path=tmp_path / "s", codec=codec
    )
    storage.set(slice(0, 30), backend.asarray(frames))
    storage.flush()
    decoded = np.asarray(backend.to_numpy(storage.get(slice(0, 30)))).astype(np.float64)
    error = np.abs(decoded - frames)
    psnr = 10 * np.log10(255**2 / np.mean(error**2))
    assert error.mean() < 5.0 and psnr > 27.0, (error.mean(), psnr)  # measured: about 3.6 and 30 dB


def test_disk_size_is_far_below_raw(tmp_path):
    from unibatch.backends import backend_from_name

    frames = camera(60, 64, 64)
    sizes = {}
    for codec in ("ffv1", "h264"):
        storage = VideoStorage.create(
            image_space(backend_from_name("numpy"), (64, 64, 3)), capacity=60, cache_path=tmp_path / codec, codec=codec
        )
        storage.set(slice(0, 60), frames)
        storage.flush()
        sizes[codec] = sum(p.stat().st_size for p in (tmp_path / codec).glob("seg-*"))
    assert sizes["ffv1"] < frames.nbytes and sizes["h264"] < frames.nbytes / 10, sizes


# ---------------------------------------------------------------------- segments and the index
def test_pending_frames_are_read_from_memory_until_flush(backend, tmp_path):
    frames = pattern_frames(10, (6, 8, 3))
    storage = VideoStorage.create(image_space(backend), capacity=10, cache_path=tmp_path / "s")
    storage.set(slice(2, 6), backend.asarray(frames[2:6]))
    assert storage.pending_count == 4 and segment_files(tmp_path / "s") == []
    expected = np.zeros_like(frames)
    expected[2:6] = frames[2:6]
    assert_tree_equal(storage.get(slice(0, 10)), expected)  # never-written slots read as zeros
    other = VideoStorage.load_from(tmp_path / "s", storage.single_instance_space)
    assert_tree_equal(other.get(3), np.zeros((6, 8, 3), np.uint8))  # another instance sees committed frames only
    storage.set(backend.asarray(np.array([7, 3, 7])), backend.asarray(frames[[1, 3, 7]]))  # the last write wins
    expected[[3, 7]] = frames[[3, 7]]
    storage.flush()
    assert storage.pending_count == 0 and segment_files(tmp_path / "s") == ["seg-000000.mkv", "seg-000001.mkv"]
    assert json.loads((tmp_path / "s" / "video.json").read_text())["segments"] == [
        [2, 6, "seg-000000.mkv", 0],
        [7, 8, "seg-000001.mkv", 0],
    ]
    assert_tree_equal(storage.get(slice(0, 10)), expected)
    storage.flush()  # nothing pending: no new file
    assert len(segment_files(tmp_path / "s")) == 2


def test_ring_overwrite_splits_entries_and_deletes_unreferenced_files(backend, tmp_path):
    frames = pattern_frames(20, (6, 8, 3))
    storage = VideoStorage.create(image_space(backend), capacity=10, cache_path=tmp_path / "s")
    storage.set(slice(0, 10), backend.asarray(frames[:10]))
    storage.flush()
    storage.set(slice(4, 6), backend.asarray(frames[10:12]))
    storage.flush()
    sidecar = json.loads((tmp_path / "s" / "video.json").read_text())
    assert sidecar["segments"] == [
        [0, 4, "seg-000000.mkv", 0],
        [4, 6, "seg-000001.mkv", 0],
        [6, 10, "seg-000000.mkv", 6],
    ]
    expected = frames[:10].copy()
    expected[4:6] = frames[10:12]
    assert_tree_equal(storage.get(slice(0, 10)), expected)
    storage.set(slice(0, 4), backend.asarray(frames[12:16]))
    storage.set(slice(6, 10), backend.asarray(frames[16:20]))
    storage.flush()  # seg-000000 is no longer referenced: deleted after the new index is written
    assert segment_files(tmp_path / "s") == ["seg-000001.mkv", "seg-000002.mkv", "seg-000003.mkv"]
    expected[:4], expected[6:] = frames[12:16], frames[16:20]
    assert_tree_equal(VideoStorage.load_from(tmp_path / "s", storage.single_instance_space).get(slice(0, 10)), expected)


def test_growable_append_across_segment_boundaries_and_shrink(backend, tmp_path):
    frames = pattern_frames(23, (6, 8, 3))
    space = image_space(backend)
    storage = VideoStorage.create(space, capacity=None, cache_path=tmp_path / "s", segment_frames=4)
    for i in range(23):
        storage.extend_length(1)
        storage.set(i, backend.asarray(frames[i]))
        if i in (2, 9):
            storage.flush()
        assert storage.pending_count < 4  # reaching segment_frames flushes
    storage.flush()
    segments = json.loads((tmp_path / "s" / "video.json").read_text())["segments"]
    assert [(start, stop) for start, stop, _, _ in segments] == [
        (0, 3), (3, 7), (7, 10), (10, 14), (14, 18), (18, 22), (22, 23),
    ]  # fmt: skip
    reopened = VideoStorage.load_from(tmp_path / "s", space, read_only=False)
    assert len(reopened) == 23
    assert_tree_equal(reopened.get(slice(0, 23)), frames)
    reopened.shrink_length(8)
    reopened.flush()
    assert len(VideoStorage.load_from(tmp_path / "s", space)) == 15
    assert segment_files(tmp_path / "s") == [f"seg-00000{i}.mkv" for i in range(5)]
    reopened.clear()
    reopened.flush()
    assert segment_files(tmp_path / "s") == [] and len(VideoStorage.load_from(tmp_path / "s", space)) == 0


def test_reopen_after_dumps_and_copies_are_independent(backend, tmp_path):
    frames = pattern_frames(8, (6, 8, 3))
    space = image_space(backend)
    storage = VideoStorage.create(space, capacity=None, cache_path=tmp_path / "s")
    storage.extend_length(6)
    storage.set(slice(0, 6), backend.asarray(frames[:6]))
    storage.dumps(tmp_path / "s")
    assert storage.pending_count == 0
    storage.extend_length(2)
    storage.set(slice(6, 8), backend.asarray(frames[6:]))
    storage.dumps(tmp_path / "copy")  # flushes its own location too
    storage.set(slice(0, 6), backend.asarray(frames[2:8]))
    storage.flush()  # the original drops seg-000000; the copy keeps its own
    copy = VideoStorage.load_from(tmp_path / "copy", space, read_only=False)
    assert_tree_equal(copy.get(slice(0, 8)), frames)
    copy.extend_length(1)
    copy.set(8, backend.asarray(frames[0]))
    copy.flush()
    assert len(VideoStorage.load_from(tmp_path / "s", space)) == 8
    assert_tree_equal(VideoStorage.load_from(tmp_path / "copy", space).get(8), frames[0])


# ---------------------------------------------------------------------- errors
def test_bad_input_is_rejected_before_anything_changes(backend, tmp_path):
    frames = pattern_frames(4, (6, 8, 3))
    storage = VideoStorage.create(image_space(backend), capacity=4, cache_path=tmp_path / "s")
    storage.set(slice(0, 4), backend.asarray(frames))
    storage.flush()
    storage.set(1, backend.asarray(frames[3]))
    sidecar = (tmp_path / "s" / "video.json").read_bytes()
    bad = [
        (slice(0, 2), np.zeros((2, 6, 8), np.uint8), "shape"),
        (slice(0, 2), np.zeros((3, 6, 8, 3), np.uint8), "shape"),
        (0, np.zeros((6, 8, 3), np.float32), "dtype"),
        (0, np.zeros((6, 8, 3), np.int64), "dtype"),  # signed into unsigned is not NumPy same_kind
        (slice(0, 2), np.full((2, 6, 8, 3), 256, np.uint16), "values in"),
    ]
    for index, value, message in bad:
        with pytest.raises(SpaceMismatchError, match=message):
            storage.set(index, backend.asarray(value) if backend.simplified_name != "jax" else value)
    with pytest.raises(IndexOutOfRangeError):
        storage.set(backend.asarray(np.array([1, 4])), backend.asarray(frames[:2]))
    assert storage.pending_count == 1 and (tmp_path / "s" / "video.json").read_bytes() == sidecar
    expected = frames.copy()
    expected[1] = frames[3]
    assert_tree_equal(storage.get(slice(0, 4)), expected)
    storage.set(0, np.full((6, 8, 3), 255, np.uint16))  # a wider unsigned dtype with values in range is fine
    assert_tree_equal(storage.get(0), np.full((6, 8, 3), 255, np.uint8))


def test_encoding_failure_leaves_index_and_pending_frames(backend, tmp_path, monkeypatch):
    frames = pattern_frames(6, (6, 8, 3))
    storage = VideoStorage.create(image_space(backend), capacity=6, cache_path=tmp_path / "s")
    storage.set(slice(0, 2), backend.asarray(frames[:2]))
    storage.flush()
    storage.set(slice(3, 6), backend.asarray(frames[3:]))
    storage.set(1, backend.asarray(frames[2]))  # two runs: the second file fails
    sidecar = (tmp_path / "s" / "video.json").read_bytes()
    real_encode = video_module.encode_segment
    calls = []

    def failing_encode(path, data, settings, frame):
        calls.append(path.name)
        if len(calls) == 2:
            path.write_bytes(b"partial")
            raise OSError("disk full")
        real_encode(path, data, settings, frame)

    monkeypatch.setattr(video_module, "encode_segment", failing_encode)
    with pytest.raises(OSError, match="disk full"):
        storage.flush()
    assert (tmp_path / "s" / "video.json").read_bytes() == sidecar
    assert segment_files(tmp_path / "s") == ["seg-000000.mkv"] and storage.pending_count == 4
    monkeypatch.setattr(video_module, "encode_segment", real_encode)
    storage.flush()
    expected = frames.copy()
    expected[1], expected[2] = frames[2], 0
    assert_tree_equal(VideoStorage.load_from(tmp_path / "s", storage.single_instance_space).get(slice(0, 6)), expected)


def installed_encoder_opens(encoder: str, height: int, width: int, pixel_format: str, options: dict) -> bool:
    """Whether the installed FFmpeg encoder opens with these settings, asked directly through PyAV."""
    import av

    context = av.CodecContext.create(encoder, "w")
    context.width, context.height, context.pix_fmt = width, height, pixel_format
    context.time_base = fractions.Fraction(1, 30)
    context.options = options
    try:
        context.open()
    except av.FFmpegError:
        return False
    return True


@pytest.mark.parametrize(("codec", "encoder", "options"), [("av1", "libsvtav1", {"crf": "30", "preset": "8"})])
@pytest.mark.parametrize("size", [2, 4, 8])
def test_frame_sizes_are_what_the_installed_encoder_accepts(tmp_path, codec, encoder, options, size):
    """The rule: ``create`` accepts a frame size exactly when the installed encoder opens with it.

    Which tiny sizes an encoder takes changes between releases (SVT-AV1 4.3 encodes 2x2 frames, older
    releases refuse them), so the expectation comes from the encoder, not from a version.
    """
    from unibatch import NumpyComputeBackend

    space = image_space(NumpyComputeBackend, (size, size, 3))
    if installed_encoder_opens(encoder, size, size, "yuv420p", options):
        VideoStorage.create(space, capacity=2, cache_path=tmp_path / "s", codec=codec).close()
    else:
        with pytest.raises(UnsupportedSpaceError, match=f"refuses {size}x{size} frames"):
            VideoStorage.create(space, capacity=2, cache_path=tmp_path / "s", codec=codec)


def test_space_and_option_checks(backend, tmp_path):
    def create(shape=(6, 8, 3), dtype="uint8", **options):
        return VideoStorage.create(image_space(backend, shape, dtype), capacity=2, cache_path=tmp_path / "x", **options)

    space_errors = [
        ({"shape": (3, 8, 3)}, "pass layout='HWC' or layout='CHW'"),
        ({"shape": (6, 8, 4)}, "C is 1 or 3"),
        ({"shape": (6, 8, 3, 1)}, "got shape"),
        ({"shape": (6, 8), "dtype": "uint16", "codec": "h264"}, "lossless codec 'ffv1'"),
        ({"shape": (6, 8, 3), "dtype": "uint16"}, "C is 1 or 3"),
        ({"shape": (7, 8, 3), "codec": "h264"}, "height divisible by 2"),
        # x264 has refused unknown presets when it opens since its first release: a refusal at open.
        ({"codec": "h264", "preset": "no-such-preset"}, "refuses 6x8 frames"),
        ({"shape": (6, 8), "layout": "CHW"}, "has layout 'HW'"),
    ]
    for kwargs, message in space_errors:
        with pytest.raises(UnsupportedSpaceError, match=message):
            create(**kwargs)
    with pytest.raises(UnsupportedSpaceError, match="float32"):
        VideoStorage.create(BoxSpace(backend, 0, 1, "float32", shape=(6, 8, 3)), capacity=2, cache_path=tmp_path / "x")
    two_leaves = DictSpace(backend, {"a": image_space(backend), "b": BinarySpace(backend, ())})
    with pytest.raises(UnsupportedSpaceError, match="use DictStorage"):
        VideoStorage.create(two_leaves, capacity=2, cache_path=tmp_path / "x")
    value_errors = [
        ({"codec": "mpeg2"}, "codec must be one of"),
        ({"crf": 20}, "lossless and takes no crf"),
        ({"codec": "h264", "crf": 99}, r"crf for 'libx264' must be an integer in \[0, 51\]"),
        ({"codec": "h264", "pixel_format": "bgr0"}, "takes pixel formats"),
        ({"codec": "h264", "encoder_options": {"bogus": 1}}, "has no options"),
        ({"fps": 0}, "fps must be a positive integer"),
        ({"fps": 5000}, "at most 1000"),
        ({"segment_frames": 0}, "segment_frames must be a positive integer"),
        ({"layout": "WHC"}, "layout must be one of"),
    ]
    for kwargs, message in value_errors:
        with pytest.raises(ValueError, match=message):
            create(**kwargs)
    with pytest.raises(TypeError, match="unexpected arguments"):
        create(quality=3)
    with pytest.raises(UnsupportedOperationError, match="needs a cache_path"):
        VideoStorage.create(image_space(backend), capacity=2)
    with pytest.raises(UnsupportedOperationError, match="one writing process"):
        create(multiprocessing=True)
    assert not (tmp_path / "x").exists()  # nothing was created by a refused call
    assert storage_class("video") is VideoStorage


def test_load_checks(backend, tmp_path):
    space = image_space(backend)
    VideoStorage.create(space, capacity=3, cache_path=tmp_path / "s").close()
    with pytest.raises(FileExistsError, match="not empty"):
        VideoStorage.create(space, capacity=3, cache_path=tmp_path / "s")
    with pytest.raises(SpaceMismatchError, match=r"stores frames .*\(6, 8, 3\).* but the space has .*\(6, 8, 1\)"):
        VideoStorage.load_from(tmp_path / "s", image_space(backend, (6, 8, 1)))
    with pytest.raises(SpaceMismatchError, match="capacity 3, expected 4"):
        VideoStorage.load_from(tmp_path / "s", space, capacity=4)
    with pytest.raises(TypeError, match="unexpected arguments"):
        VideoStorage.load_from(tmp_path / "s", space, codec="h264")
    with pytest.raises(FileNotFoundError, match="video.json is missing"):
        VideoStorage.load_from(tmp_path / "nothing", space)
    with pytest.raises(ReadOnlyError):
        VideoStorage.load_from(tmp_path / "s", space).set(0, backend.asarray(np.zeros((6, 8, 3), np.uint8)))
    sidecar = json.loads((tmp_path / "s" / "video.json").read_text())
    (tmp_path / "s" / "video.json").write_text(json.dumps({**sidecar, "segments": [[0, 1, "seg-000000.mkv"]]}))
    with pytest.raises(FormatVersionError, match="is not a video storage index"):
        VideoStorage.load_from(tmp_path / "s", space)
    (tmp_path / "s" / "video.json").write_text(json.dumps({"format_version": 1, "capacity": 3}))
    with pytest.raises(FormatVersionError, match=r"missing \['leaf'"):
        VideoStorage.load_from(tmp_path / "s", space)
    sidecar["format_version"] = 99
    (tmp_path / "s" / "video.json").write_text(json.dumps(sidecar))
    with pytest.raises(FormatVersionError, match="format_version 99"):
        VideoStorage.load_from(tmp_path / "s", space)


def test_corrupt_or_missing_segment_files_are_named(backend, tmp_path):
    storage = VideoStorage.create(image_space(backend), capacity=20, cache_path=tmp_path / "s")
    storage.set(slice(0, 20), backend.asarray(pattern_frames(20, (6, 8, 3))))
    storage.flush()
    segment = tmp_path / "s" / "seg-000000.mkv"
    with open(segment, "r+b") as handle:
        handle.truncate(segment.stat().st_size // 2)
    reader = VideoStorage.load_from(tmp_path / "s", storage.single_instance_space)
    with pytest.raises(CorruptVideoError, match="seg-000000.mkv: frame 19 is missing"):
        reader.get(19)
    segment.write_bytes(b"not a video")
    with pytest.raises(CorruptVideoError, match="seg-000000.mkv is not a readable video"):
        VideoStorage.load_from(tmp_path / "s", storage.single_instance_space).get(0)
    (tmp_path / "s" / "seg-000000.mkv").unlink()
    with pytest.raises(FileNotFoundError, match="segment file .*seg-000000.mkv is missing"):
        VideoStorage.load_from(tmp_path / "s", storage.single_instance_space).get(0)


# ---------------------------------------------------------------------- readers and processes
def test_reader_follows_commits_and_replaced_segments(backend, tmp_path):
    frames = pattern_frames(12, (6, 8, 3))
    space = image_space(backend)
    writer = VideoStorage.create(space, capacity=4, cache_path=tmp_path / "s")
    reader = VideoStorage.load_from(tmp_path / "s", space)
    assert_tree_equal(reader.get(1), np.zeros((6, 8, 3), np.uint8))
    writer.set(slice(0, 4), backend.asarray(frames[:4]))
    assert_tree_equal(reader.get(1), np.zeros((6, 8, 3), np.uint8))  # pending frames are the writer's only
    writer.flush()
    assert_tree_equal(reader.get(1), frames[1])  # the reader re-reads the index once it changed
    writer.set(slice(0, 4), backend.asarray(frames[4:8]))
    writer.flush()  # seg-000000 is deleted; the reader's index still names it
    assert_tree_equal(reader.get(slice(0, 4)), frames[4:8])

    growable = VideoStorage.create(space, capacity=None, cache_path=tmp_path / "g")
    follower = pickle.loads(pickle.dumps(growable))  # a pickled copy is a read-only reader
    assert len(follower) == 0 and not follower.is_mutable and follower.is_multiprocessing_safe
    growable.extend_length(3)
    growable.set(slice(0, 3), backend.asarray(frames[:3]))
    with pytest.raises(UnsupportedOperationError, match="3 frames not flushed"):
        pickle.dumps(growable)
    with pytest.raises(IndexOutOfRangeError, match="index 2 is out of range for length 0"):
        follower.get(backend.asarray(np.array([2])))
    growable.flush()
    assert_tree_equal(follower.get(backend.asarray(np.array([2, 0]))), frames[[2, 0]])


def _read_in_child(storage, index, queue):
    queue.put(np.asarray(storage.get(index)))


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_decoder_cache_is_fork_safe(tmp_path):
    from unibatch.backends import backend_from_name

    frames = pattern_frames(30, (6, 8, 3))
    space = image_space(backend_from_name("numpy"))
    writer = VideoStorage.create(space, capacity=30, cache_path=tmp_path / "s", segment_frames=10)
    writer.set(slice(0, 30), frames)
    writer.flush()
    with VideoStorage.load_from(tmp_path / "s", space, read_threads=2) as reader:
        index = np.array([25, 3, 14, 3, 29])
        np.testing.assert_array_equal(reader.get(index), frames[index])  # three open decoders, mid-stream
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        children = [context.Process(target=_read_in_child, args=(reader, index[::-1], queue)) for _ in range(2)]
        for child in children:
            child.start()
        np.testing.assert_array_equal(reader.get(index), frames[index])
        for _ in children:
            np.testing.assert_array_equal(queue.get(timeout=60), frames[index[::-1]])
        for child in children:
            child.join(timeout=60)
            assert child.exitcode == 0


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from unibatch import BoxSpace
    from unibatch.backends import backend_from_name
    from unibatch.buffers import ReplayBuffer
    from unibatch.storages import VideoStorage

    backend = backend_from_name("numpy")
    space = BoxSpace(backend, 0, 255, "uint8", shape=(16, 16, 3))
    base = np.arange(16 * 16 * 3, dtype=np.int64).reshape(16, 16, 3)
    buffer = ReplayBuffer.create(VideoStorage, space, cache_path=sys.argv[1], capacity=None, segment_frames=7)
    for i in range(100000):
        buffer.append(((base * 7 + 31 * i) % 256).astype(np.uint8))
        if i % 5 == 4:
            buffer.flush()
            print(i + 1, flush=True)
    """
)


def test_writer_killed_at_any_point_leaves_a_committed_prefix(tmp_path):
    from unibatch.backends import backend_from_name

    backend = backend_from_name("numpy")
    path = tmp_path / "buffer"
    for kill_after in (10, 23):  # the writer is somewhere in append, encode or commit when killed
        with subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True) as process:
            assert process.stdout is not None
            committed = 0
            while committed < kill_after:
                committed = int(process.stdout.readline())
            os.kill(process.pid, signal.SIGKILL)
        with ReplayBuffer.load_from(path, backend=backend) as reader:
            count = len(reader)
            assert count >= committed and count % 5 == 0
            expected = pattern_frames(count, (16, 16, 3))
            np.testing.assert_array_equal(reader.get_at(slice(0, count)), expected)
        with ReplayBuffer.load_from(path, backend=backend, read_only=False) as writer:  # cleans leftovers
            storage_path = path / writer.storage_path_relative
            names = {p.name for p in storage_path.iterdir()}
            indexed = {entry[2] for entry in json.loads((storage_path / "video.json").read_text())["segments"]}
            assert names == indexed | {"video.json"}
            writer.append(pattern_frames(1, (16, 16, 3), start=count)[0])
            writer.flush()
        with ReplayBuffer.load_from(path, backend=backend) as reader:
            np.testing.assert_array_equal(reader.get_at(slice(0, count + 1)), pattern_frames(count + 1, (16, 16, 3)))
        for entry in path.iterdir():  # the next round starts from scratch
            if entry.is_dir():
                for file in entry.iterdir():
                    file.unlink()
                entry.rmdir()
            else:
                entry.unlink()


def test_dict_storage_with_video_images_under_a_ring_buffer(backend, tmp_path):
    space = DictSpace(
        backend,
        {
            "obs": {
                "image": image_space(backend, (3, 8, 8)),
                "state": BoxSpace(backend, -1.0, 1.0, "float32", shape=(4,)),
            },
            "action": BoxSpace(backend, -1.0, 1.0, "float32", shape=(2,)),
            "done": BinarySpace(backend, ()),
        },
    )
    images = pattern_frames(9, (3, 8, 8))

    def step(i):
        return {
            "obs": {"image": backend.asarray(images[i]), "state": backend.asarray(np.full(4, i / 10, np.float32))},
            "action": backend.asarray(np.full(2, -i / 10, np.float32)),
            "done": backend.asarray(i % 3 == 2),
        }

    path = tmp_path / "buffer"
    buffer = ReplayBuffer.create(
        DictStorage,
        space,
        {"obs/image": "video", "*": "memmap"},
        cache_path=path,
        capacity=6,
        key_kwargs={"obs/image": {"segment_frames": 4}},
    )
    for i in range(9):
        buffer.append(step(i))
        if i % 4 == 3:
            buffer.flush()
    buffer.flush()
    assert (path / "storage" / "obs.image" / "video.json").exists()
    buffer.close()
    with ReplayBuffer.load_from(path, backend=backend) as loaded:
        assert len(loaded) == 6
        data = loaded.get_at(backend.asarray(np.array([5, 0, 2])))
        assert_tree_equal(data["obs"]["image"], images[[8, 3, 5]])
        assert_tree_equal(data["action"], np.stack([np.full(2, -i / 10, np.float32) for i in (8, 3, 5)]))


# ---------------------------------------------------------------------- index arithmetic
def test_place_and_truncate_split_entries():
    index = [Segment(0, 10, "a", 0), Segment(10, 20, "b", 0)]
    index = place(index, Segment(5, 12, "c", 0))
    assert index == [Segment(0, 5, "a", 0), Segment(5, 12, "c", 0), Segment(12, 20, "b", 2)]
    index = place(index, Segment(6, 8, "d", 3))
    assert index == [
        Segment(0, 5, "a", 0), Segment(5, 6, "c", 0), Segment(6, 8, "d", 3), Segment(8, 12, "c", 3),
        Segment(12, 20, "b", 2),
    ]  # fmt: skip
    assert truncate(index, 7) == [Segment(0, 5, "a", 0), Segment(5, 6, "c", 0), Segment(6, 7, "d", 3)]
    table = SegmentTable(index)
    file_ids, frames = table.locate(np.array([25, 0, 7, 13, 11]))
    assert [table.files[i] if i >= 0 else None for i in file_ids] == [None, "a", "d", "b", "c"]
    assert frames[1:].tolist() == [0, 4, 3, 6]
    assert SegmentTable([]).locate(np.array([0, 3]))[0].tolist() == [-1, -1]
    runs = list(contiguous_runs(np.array([0, 1, 2, 3, 4, 7, 8, 20]), 3))
    assert [(r.start, r.stop) for r in runs] == [(0, 3), (3, 5), (5, 7), (7, 8)]


def test_pending_frames_model():
    rng = np.random.default_rng(0)
    pending = PendingFrames((2,), np.dtype(np.int64))
    model: dict[int, np.ndarray] = {}
    for step in range(200):
        action = rng.integers(0, 10)
        if action < 7:
            slots = np.unique(rng.integers(0, 50, rng.integers(1, 6)))
            frames = rng.integers(0, 100, (len(slots), 2))
            pending.put(slots, frames)
            model.update(zip(slots.tolist(), frames))
        elif action < 9:
            length = int(rng.integers(0, 50))
            pending.drop_from(length)
            model = {slot: frame for slot, frame in model.items() if slot < length}
        else:
            pending.clear()
            model.clear()
        probe = np.arange(60)
        rows = pending.rows(probe)
        assert pending.count == len(model) and sorted(probe[rows >= 0].tolist()) == sorted(model), step
        for slot in model:
            np.testing.assert_array_equal(pending.take(rows[[slot]])[0], model[slot])
        slots, order = pending.sorted_slots()
        assert slots.tolist() == sorted(model)


@pytest.mark.parametrize("capacity", [None, 12], ids=["growable", "fixed"])
def test_random_operations_match_a_numpy_model(tmp_path, capacity):
    from unibatch.backends import backend_from_name

    space = image_space(backend_from_name("numpy"), (4, 6))
    rng = np.random.default_rng(7)
    storage = VideoStorage.create(space, capacity=capacity, cache_path=tmp_path / "s", segment_frames=5)
    model = np.zeros((capacity or 0, 4, 6), np.uint8)
    committed = model.copy()
    for step in range(80):
        action = rng.integers(0, 8)
        if action == 0 and capacity is None:
            grow = int(rng.integers(1, 6))
            storage.extend_length(grow)
            model = np.concatenate([model, np.zeros((grow, 4, 6), np.uint8)])
        elif action == 1 and capacity is None and len(model):
            length = int(rng.integers(0, len(model) + 1))
            storage.shrink_length(len(model) - length)
            model = model[:length]
        elif action == 2:
            storage.flush()
            committed = model.copy()
        elif action == 3:
            storage.close()  # drops pending frames: back to the last commit
            storage = VideoStorage.load_from(tmp_path / "s", space, read_only=False)
            model = committed.copy()
        elif len(model):
            slots = rng.integers(0, len(model), int(rng.integers(1, 7)))
            frames = rng.integers(0, 256, (len(slots), 4, 6), dtype=np.uint8)
            storage.set(slots, frames)
            model[slots] = frames  # NumPy: the last of duplicated slots wins
            if storage.pending_count == 0:  # segment_frames pending frames were flushed
                committed = model.copy()
        assert len(storage) == len(model), step
        if len(model):
            index = rng.integers(0, len(model), 9)
            np.testing.assert_array_equal(storage.get(index), model[index], err_msg=f"step {step}")
    storage.flush()
    reader = VideoStorage.load_from(tmp_path / "s", space)
    np.testing.assert_array_equal(reader.get(slice(0, len(model))), model)
    referenced = {entry[2] for entry in json.loads((tmp_path / "s" / "video.json").read_text())["segments"]}
    assert set(segment_files(tmp_path / "s")) == referenced  # no file outlives its last reference


def test_a_trajectory_buffer_on_video_reports_expensive_reads(tmp_path):
    """Window views over it then decode each distinct frame once."""
    from unibatch import NumpyComputeBackend
    from unibatch.buffers import TrajectoryReplayBuffer

    space = BoxSpace(NumpyComputeBackend, 0, 255, "uint8", shape=(8, 8, 3))
    buffer = TrajectoryReplayBuffer.create(space, VideoStorage, cache_path=tmp_path / "t")
    assert buffer.has_expensive_reads
    buffer.close()
