"""ImageStorage: the storage conformance suite on PNG and JPEG frames, plus what is specific to images."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from typing import Any, ClassVar

import numpy as np
import pytest

from unibatch import BoxSpace, DictSpace, NumpyComputeBackend
from unibatch.backends import backend_from_name
from unibatch.errors import (
    FormatVersionError,
    MissingDependencyError,
    ReadOnlyError,
    SpaceMismatchError,
    UnsupportedOperationError,
    UnsupportedSpaceError,
)
from unibatch.storages import ImageStorage, storage_class
from unibatch.storages._image_codec import ImageCodec, _pil_image
from unibatch.storages.image import CorruptImageError
from unibatch.testing.storage_conformance import StorageTests

NUMPY = backend_from_name("numpy")


def pattern(shape: tuple[int, ...], dtype: Any, i: int) -> np.ndarray:
    """A frame distinct for each ``i < 256``: a ramp over the pixels shifted by ``i``."""
    info = np.iinfo(dtype)
    ramp = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    return ((ramp * 7 + i * 13) % (info.max + 1)).astype(dtype)


def camera_frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    """A synthetic RGB camera stream ``(n, size, size, 3)``: gradient, moving discs and bar, light noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    background = np.stack([x / size * 180 + 40, y / size * 150 + 50, (x + y) / (2 * size) * 120 + 60], axis=-1)
    frames = np.empty((n, size, size, 3), np.uint8)
    for t in range(n):
        image = background.copy()
        for k, color in enumerate(([220, 40, 40], [30, 200, 60], [40, 60, 230])):
            cx, cy = size * (0.5 + 0.35 * np.sin(0.05 * t + 2 * k)), size * (0.5 + 0.35 * np.cos(0.04 * t + k))
            inside = (x - cx) ** 2 + (y - cy) ** 2 < (0.12 * size * (1 + 0.3 * k)) ** 2
            image[inside] = 0.3 * image[inside] + 0.7 * np.array(color, np.float32)
        bar = int(t * 2 % size)
        image[size // 3 : size // 3 + size // 6, max(bar - size // 8, 0) : bar] = [250, 220, 50]
        image += rng.normal(0, 2.0, image.shape).astype(np.float32)
        frames[t] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


# ---------------------------------------------------------------------- conformance
class ImageSuite(StorageTests):
    """The conformance suite on one image space (subclasses set the shape, dtype and options)."""

    text = False
    shape: ClassVar[tuple[int, ...]] = (3, 6, 5)
    dtype: ClassVar[str] = "uint8"
    options: ClassVar[dict[str, Any]] = {}

    def frame(self, i: int) -> np.ndarray:
        return pattern(self.shape, np.dtype(self.dtype), i)

    def make_space(self, backend, text):
        return BoxSpace(backend, 0, np.iinfo(self.dtype).max, self.dtype, shape=self.shape)

    def make_sample(self, backend, i, text):
        return backend.asarray(self.frame(i))

    def make_storage(self, backend, space, capacity, path):
        return ImageStorage.create(space, capacity=capacity, cache_path=path, **self.options)

    def buffer_storage(self):
        return ImageStorage, dict(self.options)


class TestPngChannelFirst(ImageSuite):
    """DESIGN §6's image leaf layout (channel-first uint8), on every backend, two threads."""

    options: ClassVar[dict[str, Any]] = {"num_threads": 2}


class TestPngDepth16(ImageSuite):
    shape: ClassVar[tuple[int, ...]] = (6, 5)
    dtype: ClassVar[str] = "uint16"
    backends: ClassVar[tuple[str, ...]] = ("numpy",)


class TestJpegGray(ImageSuite):
    """JPEG is lossy, but uniform grayscale frames round-trip exactly, so the exact suite applies."""

    shape: ClassVar[tuple[int, ...]] = (6, 5, 1)
    options: ClassVar[dict[str, Any]] = {"format": "jpeg"}
    backends: ClassVar[tuple[str, ...]] = ("numpy",)

    def frame(self, i: int) -> np.ndarray:
        return np.full(self.shape, (37 * i + 11) % 256, np.uint8)


# ---------------------------------------------------------------------- helpers
def space_of(shape: tuple[int, ...], dtype: str = "uint8", backend: Any = NUMPY) -> BoxSpace:
    return BoxSpace(backend, 0, np.iinfo(dtype).max, dtype, shape=shape)


def rgb_storage(path, capacity: int | None = 8, **options: Any) -> ImageStorage:
    return ImageStorage.create(space_of((6, 5, 3)), capacity=capacity, cache_path=path, **options)


def rgb_frames(start: int, stop: int) -> np.ndarray:
    return np.stack([pattern((6, 5, 3), np.uint8, i) for i in range(start, stop)])


# ---------------------------------------------------------------------- layout and formats
def test_registered_and_capabilities():
    assert storage_class("image") is ImageStorage
    assert ImageStorage.is_persistent and ImageStorage.has_expensive_reads and ImageStorage.single_file_ext is None
    assert ImageStorage.is_multiprocessing_safe and not ImageStorage.supports_columns


def test_importing_the_storage_does_not_load_pillow():
    code = "import sys, unibatch.storages.image; print('PIL' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout == "False\n"


def test_missing_pillow_names_the_extra(tmp_path, monkeypatch):
    storage = rgb_storage(tmp_path / "s")
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    _pil_image.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match=r'pip install "unibatch\[image\]"'):
            storage.set(0, rgb_frames(0, 1)[0])
    finally:
        _pil_image.cache_clear()
    storage.close()


def test_layout_on_disk_across_shards(tmp_path):
    storage = rgb_storage(tmp_path / "s", capacity=None)
    storage.extend_length(10_003)
    storage.set(slice(9_998, 10_003), rgb_frames(0, 5))  # one batch across the shard boundary
    storage.flush()
    root = tmp_path / "s"
    assert sorted(p.name for p in root.iterdir()) == ["00000", "00001", "image.json", "tmp"]
    assert sorted(os.listdir(root / "00000")) == ["000009998.png", "000009999.png"]
    assert sorted(os.listdir(root / "00001")) == ["000010000.png", "000010001.png", "000010002.png"]
    sidecar = json.loads((root / "image.json").read_text())
    assert sidecar == {
        "format_version": 1,
        "capacity": None,
        "length": 10_003,
        "shard_size": 10_000,
        "num_threads": None,
        "leaf": {"dtype": "|u1", "shape": [6, 5, 3]},
        "image": {"format": "png", "layout": "HWC", "quality": 90, "compress_level": 1, "subsampling": "4:4:4"},
    }
    with _pil_image().open(root / "00001" / "000010002.png") as image:  # plain PNG files any tool can open
        assert image.mode == "RGB" and image.size == (5, 6)
        np.testing.assert_array_equal(np.asarray(image), pattern((6, 5, 3), np.uint8, 4))
    np.testing.assert_array_equal(
        storage.get(slice(9_997, 10_003)), np.concatenate([np.zeros((1, 6, 5, 3)), rgb_frames(0, 5)])
    )
    assert not storage.get(np.array([17, 5_000])).any()  # never written: zeros
    storage.close()


@pytest.mark.parametrize(
    ("shape", "dtype", "mode"),
    [
        ((7, 9), "uint8", "L"),
        ((7, 9, 1), "uint8", "L"),
        ((7, 9, 3), "uint8", "RGB"),
        ((7, 9, 4), "uint8", "RGBA"),
        ((1, 7, 9), "uint8", "L"),
        ((4, 7, 9), "uint8", "RGBA"),
        ((7, 9), "uint16", "I;16"),
        ((7, 9, 1), "uint16", "I;16"),
    ],
)
def test_png_round_trips_bit_exactly(tmp_path, shape, dtype, mode):
    frames = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, (5, *shape), endpoint=True, dtype=dtype)
    storage = ImageStorage.create(space_of(shape, dtype), capacity=5, cache_path=tmp_path / "s")
    storage.set(slice(0, 5), frames)
    with _pil_image().open(tmp_path / "s" / "00000" / "000000003.png") as image:
        assert image.mode == mode
    np.testing.assert_array_equal(storage.get(slice(0, 5)), frames)
    np.testing.assert_array_equal(storage.get(2), frames[2])
    storage.close()


def test_jpeg_error_bound_on_a_camera_stream(tmp_path):
    """Default JPEG (quality 90, 4:4:4) on 84x84 camera frames: mean error about 2.5, max about 50 levels."""
    frames = camera_frames(40, 84)
    storage = ImageStorage.create(space_of((84, 84, 3)), capacity=40, cache_path=tmp_path / "s", format="jpeg")
    storage.set(slice(0, 40), frames)
    error = np.abs(storage.get(slice(0, 40)).astype(np.int16) - frames)
    assert error.mean() < 3.0 and error.max() <= 64, (error.mean(), error.max())
    assert os.listdir(tmp_path / "s" / "00000")[0].endswith(".jpg")
    jpeg_bytes = sum(f.stat().st_size for f in (tmp_path / "s" / "00000").iterdir())
    assert jpeg_bytes < 0.2 * frames.nbytes
    storage.close()


def test_channel_first_frames_are_stored_as_ordinary_images(tmp_path):
    frames = np.stack([pattern((3, 8, 6), np.uint8, i) for i in range(3)])
    storage = ImageStorage.create(space_of((3, 8, 6)), capacity=3, cache_path=tmp_path / "s")
    storage.set(slice(0, 3), frames)
    with _pil_image().open(tmp_path / "s" / "00000" / "000000001.png") as image:
        np.testing.assert_array_equal(np.asarray(image), frames[1].transpose(1, 2, 0))
    storage.close()


@pytest.mark.parametrize(
    ("shape", "dtype", "options", "message"),
    [
        ((3, 84, 3), "uint8", {}, "ambiguous: pass layout='HWC' or layout='CHW'"),
        ((5, 84, 84), "uint8", {}, r"got a frame of shape \(5, 84, 84\) \(no axis of 1, 3 or 4\)"),
        ((84, 84, 3), "uint8", {"layout": "CHW"}, "with layout 'CHW'"),
        ((84, 84), "uint8", {"layout": "HWC"}, "with layout 'HWC'"),
        ((2, 3, 4, 5), "uint8", {}, r"shape \(2, 3, 4, 5\)"),
        ((84, 84, 3), "float32", {}, r"got float32 \(84, 84, 3\) \(HWC\) as PNG"),
        ((84, 84, 3), "int8", {}, "uint8 \\(H, W\\)"),
        ((84, 84, 3), "uint16", {}, "uint16 only as one-channel PNG"),
        (
            (84, 84),
            "uint16",
            {"format": "jpeg"},
            "uint16 only as one-channel PNG; got uint16 \\(84, 84\\) \\(HW\\) as JPEG",
        ),
        ((84, 84, 4), "uint8", {"format": "jpeg"}, "JPEG has no alpha channel"),
        ((0, 84, 3), "uint8", {}, "at least 1x1 pixels"),
    ],
)
def test_unsupported_spaces_name_what_is_accepted(tmp_path, shape, dtype, options, message):
    space = BoxSpace(NUMPY, 0, 1, dtype, shape=shape)
    with pytest.raises(UnsupportedSpaceError, match=message):
        ImageStorage.create(space, capacity=2, cache_path=tmp_path / "s", **options)
    assert not (tmp_path / "s").exists()


def test_layout_inference_and_explicit_layout(tmp_path):
    for shape, options, layout in [
        ((84, 84, 3), {}, "HWC"),
        ((3, 84, 84), {}, "CHW"),
        ((84, 84), {}, "HW"),
        ((3, 84, 3), {"layout": "CHW"}, "CHW"),
        ((3, 84, 3), {"layout": "HWC"}, "HWC"),
    ]:
        path = tmp_path / f"{shape}-{layout}"
        ImageStorage.create(space_of(shape), capacity=1, cache_path=path, **options).close()
        assert json.loads((path / "image.json").read_text())["image"]["layout"] == layout


def test_a_dict_space_is_refused(tmp_path):
    space = DictSpace(NUMPY, {"image": space_of((8, 8, 3)), "state": BoxSpace(NUMPY, -1.0, 1.0, "float32", shape=(2,))})
    with pytest.raises(UnsupportedSpaceError, match="BoxSpace of uint8.*got DictSpace"):
        ImageStorage.create(space, capacity=2, cache_path=tmp_path / "s")


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"format": "gif"}, ValueError, "format must be one of 'png', 'jpeg'; got 'gif'"),
        ({"quality": 0}, ValueError, r"quality must be an integer in \[1, 100\]; got 0"),
        ({"compress_level": 10}, ValueError, r"compress_level must be an integer in \[0, 9\]; got 10"),
        ({"subsampling": "4:1:1"}, ValueError, "subsampling must be one of"),
        ({"layout": "WHC"}, ValueError, "layout must be one of 'HW', 'HWC', 'CHW'; got 'WHC'"),
        ({"num_threads": 0}, ValueError, "num_threads must be a positive integer or None, got 0"),
        ({"capacity": 0}, ValueError, "capacity must be a positive int or None, got 0"),
        ({"compression": 3}, TypeError, "unexpected arguments"),
        ({"cache_path": None}, UnsupportedOperationError, "needs a cache_path"),
    ],
)
def test_bad_options(tmp_path, options, error, message):
    kwargs = {"capacity": 2, "cache_path": tmp_path / "s", **options}
    with pytest.raises(error, match=message):
        ImageStorage.create(space_of((8, 8, 3)), **kwargs)


def test_create_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "other.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        rgb_storage(tmp_path / "s")


# ---------------------------------------------------------------------- reopening
def test_load_from_restores_options_and_checks_the_space(tmp_path):
    path = tmp_path / "s"
    storage = ImageStorage.create(space_of((6, 5, 3)), capacity=4, cache_path=path, format="jpeg", quality=70)
    storage.set(slice(0, 4), rgb_frames(0, 4))
    storage.close()
    loaded = ImageStorage.load_from(path, space_of((6, 5, 3)), capacity=4, read_only=False)
    loaded.set(0, rgb_frames(4, 5)[0])
    assert sorted(os.listdir(path / "00000"))[0] == "000000000.jpg"
    assert json.loads((path / "image.json").read_text())["image"]["quality"] == 70
    loaded.close()
    with pytest.raises(SpaceMismatchError, match=r"stores leaves \[\('', '\|u1', \(6, 5, 3\)\)\], but the space has"):
        ImageStorage.load_from(path, space_of((5, 6, 3)))
    with pytest.raises(SpaceMismatchError, match="holds capacity 4, expected 5"):
        ImageStorage.load_from(path, space_of((6, 5, 3)), capacity=5)
    with pytest.raises(TypeError, match="unexpected arguments"):
        ImageStorage.load_from(path, space_of((6, 5, 3)), quality=3)
    with pytest.raises(FileNotFoundError, match="image.json is missing"):
        ImageStorage.load_from(tmp_path / "nothing", space_of((6, 5, 3)))
    sidecar = json.loads((path / "image.json").read_text())
    (path / "image.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(FormatVersionError, match="not an image storage sidecar"):
        ImageStorage.load_from(path, space_of((6, 5, 3)))
    (path / "image.json").write_text(json.dumps({**sidecar, "image": {"format": "png"}}))
    with pytest.raises(FormatVersionError, match="has image options"):
        ImageStorage.load_from(path, space_of((6, 5, 3)))
    (path / "image.json").write_text(json.dumps({**sidecar, "format_version": 99}))
    with pytest.raises(FormatVersionError, match="format_version 99"):
        ImageStorage.load_from(path, space_of((6, 5, 3)))


def test_dumps_to_a_copy_is_independent_and_reopens(tmp_path, backend):
    space = space_of((6, 5, 3), backend=backend)
    storage = ImageStorage.create(space, capacity=None, cache_path=tmp_path / "s")
    storage.extend_length(6)
    storage.set(slice(0, 6), backend.asarray(rgb_frames(0, 6)))
    storage.shrink_length(2)  # slots 4 and 5 are not part of the copy
    for _ in range(2):  # a second dump replaces the first
        storage.dumps(tmp_path / "copy")
    storage.set(0, backend.asarray(rgb_frames(9, 10)[0]))  # the copy keeps the old file
    copy = ImageStorage.load_from(tmp_path / "copy", space)
    assert len(copy) == 4 and sorted(os.listdir(tmp_path / "copy" / "00000"))[-1] == "000000003.png"
    np.testing.assert_array_equal(backend.to_numpy(copy.get(slice(0, 4))), rgb_frames(0, 4))
    with pytest.raises(ReadOnlyError):
        copy.set(0, backend.asarray(rgb_frames(0, 1)[0]))
    copy.close()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not an image storage"):
        storage.dumps(tmp_path / "other")
    storage.close()


def test_dumps_to_its_own_path_records_the_length(tmp_path):
    storage = rgb_storage(tmp_path / "s", capacity=None)
    storage.extend_length(3)
    storage.set(slice(0, 3), rgb_frames(0, 3))
    assert json.loads((tmp_path / "s" / "image.json").read_text())["length"] == 0
    storage.dumps(tmp_path / "s")
    assert json.loads((tmp_path / "s" / "image.json").read_text())["length"] == 3
    storage.close()


def test_read_only_handle_follows_the_flushed_length(tmp_path):
    writer = rgb_storage(tmp_path / "s", capacity=None)
    reader = ImageStorage.load_from(tmp_path / "s", space_of((6, 5, 3)))
    writer.extend_length(5)
    writer.set(slice(0, 5), rgb_frames(0, 5))
    assert len(reader) == 0
    writer.flush()
    assert len(reader) == 5
    np.testing.assert_array_equal(reader.get(slice(0, None)), rgb_frames(0, 5))
    writer.close()
    reader.close()


def test_shrink_deletes_files_at_flush_and_grown_slots_read_zeros(tmp_path):
    storage = rgb_storage(tmp_path / "s", capacity=None)
    storage.extend_length(12)
    storage.set(slice(0, 12), rgb_frames(0, 12))
    storage.flush()
    storage.shrink_length(8)  # to 4 rows: the files stay until the next flush (a crash keeps them)
    assert len(os.listdir(tmp_path / "s" / "00000")) == 12
    storage.extend_length(2)  # slots 4 and 5 come back empty
    assert not storage.get(slice(4, 6)).any()
    storage.flush()
    assert sorted(os.listdir(tmp_path / "s" / "00000")) == [f"{i:09d}.png" for i in range(4)]
    np.testing.assert_array_equal(storage.get(slice(0, 4)), rgb_frames(0, 4))
    storage.clear()
    storage.flush()
    assert not (tmp_path / "s" / "00000").exists() and len(storage) == 0
    storage.close()


def test_writable_reopen_forgets_files_written_after_the_last_flush(tmp_path):
    storage = rgb_storage(tmp_path / "s", capacity=None)
    storage.extend_length(3)
    storage.set(slice(0, 3), rgb_frames(0, 3))
    storage.flush()
    storage.extend_length(3)
    storage.set(slice(3, 6), rgb_frames(3, 6))  # never flushed, as if the writer died here
    (tmp_path / "s" / "tmp" / "000000007.123.png").write_bytes(b"half")
    storage.close()
    reopened = ImageStorage.load_from(tmp_path / "s", space_of((6, 5, 3)), read_only=False)
    assert len(reopened) == 3 and os.listdir(tmp_path / "s" / "tmp") == []
    reopened.extend_length(2)
    assert not reopened.get(slice(3, 5)).any()
    reopened.flush()
    assert sorted(os.listdir(tmp_path / "s" / "00000")) == [f"{i:09d}.png" for i in range(3)]
    reopened.close()


# ---------------------------------------------------------------------- reads and writes
def test_batched_reads_in_request_order_with_duplicates(tmp_path, backend):
    space = space_of((6, 5, 3), backend=backend)
    storage = ImageStorage.create(space, capacity=64, cache_path=tmp_path / "s", num_threads=3)
    frames = np.stack([pattern((6, 5, 3), np.uint8, i) for i in range(64)])
    storage.set(backend.asarray(np.arange(64)[::-1].copy()), backend.asarray(frames[::-1].copy()))
    index = np.random.default_rng(1).integers(0, 64, 256)
    got = storage.get(backend.asarray(index, dtype=backend.default_index_dtype))
    np.testing.assert_array_equal(backend.to_numpy(got), frames[index])
    assert not storage.get(backend.asarray(np.zeros(0, np.int64), dtype=backend.default_index_dtype)).shape[0]
    storage.close()


def test_duplicate_slots_in_a_write_keep_the_last_frame(tmp_path):
    storage = rgb_storage(tmp_path / "s")
    storage.set(np.array([2, 5, 2, 2, 5]), rgb_frames(0, 5))
    np.testing.assert_array_equal(storage.get(np.array([2, 5])), rgb_frames(3, 5))
    storage.close()


def test_bad_frames_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    storage = rgb_storage(tmp_path / "s")
    storage.set(slice(0, 4), rgb_frames(0, 4))
    before = {name: (tmp_path / "s" / "00000" / name).read_bytes() for name in os.listdir(tmp_path / "s" / "00000")}
    with pytest.raises(SpaceMismatchError, match=r"slots \[0, 1, 2, 3\] of .*expected frames of shape \(4, 6, 5, 3\)"):
        storage.set(slice(0, 4), rgb_frames(4, 8)[:, :, :4])
    with pytest.raises(SpaceMismatchError, match="slot 2 of .* expected uint8 frames, got float32"):
        storage.set(2, rgb_frames(4, 5)[0].astype(np.float32))

    original = ImageCodec.encode
    calls = []

    def failing_encode(self, frame, handle):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        original(self, frame, handle)

    monkeypatch.setattr(ImageCodec, "encode", failing_encode)
    with pytest.raises(OSError, match="disk full"):
        storage.set(slice(0, 6), rgb_frames(10, 16))
    monkeypatch.undo()
    after = {name: (tmp_path / "s" / "00000" / name).read_bytes() for name in os.listdir(tmp_path / "s" / "00000")}
    assert after == before and os.listdir(tmp_path / "s" / "tmp") == []
    np.testing.assert_array_equal(storage.get(slice(0, 6)), np.concatenate([rgb_frames(0, 4), np.zeros((2, 6, 5, 3))]))
    storage.close()


def test_unreadable_files_name_the_slot_and_the_file(tmp_path):
    storage = rgb_storage(tmp_path / "s")
    storage.set(slice(0, 4), rgb_frames(0, 4))
    shard = tmp_path / "s" / "00000"
    (shard / "000000001.png").write_bytes(b"not an image")
    data = (shard / "000000002.png").read_bytes()
    (shard / "000000002.png").write_bytes(data[: len(data) // 2])
    _pil_image().fromarray(np.zeros((9, 9, 3), np.uint8)).save(shard / "000000003.png")
    with pytest.raises(CorruptImageError, match=r"slot 1: .*000000001\.png is not a readable PNG file"):
        storage.get(np.array([0, 1]))
    with pytest.raises(CorruptImageError, match=r"slot 2: .*000000002\.png cannot be decoded"):
        storage.get(2)
    with pytest.raises(
        SpaceMismatchError, match=r"slot 3: .*000000003\.png holds a 9x9 'RGB' image, expected 6x5 'RGB'"
    ):
        storage.get(slice(3, 4))
    storage.close()


# ---------------------------------------------------------------------- processes
def _read_in_child(storage: ImageStorage, expected: np.ndarray) -> None:
    os._exit(0 if np.array_equal(storage.get(np.arange(expected.shape[0])), expected) else 1)


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:This process:DeprecationWarning")
def test_thread_pool_is_per_process(tmp_path):
    storage = rgb_storage(tmp_path / "s", num_threads=2)
    storage.set(slice(0, 8), rgb_frames(0, 8))
    storage.get(np.arange(8))  # the parent's pool is running
    parent_pool = storage._executor
    assert parent_pool is not None
    child = multiprocessing.get_context("fork").Process(target=_read_in_child, args=(storage, rgb_frames(0, 8)))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    clone = pickle.loads(pickle.dumps(storage))
    assert clone._executor is None
    np.testing.assert_array_equal(clone.get(np.arange(8)), rgb_frames(0, 8))
    assert clone._executor is not None and clone._executor is not parent_pool
    clone.close()
    storage.close()
    assert storage._executor is None


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from unibatch import BoxSpace
    from unibatch.backends import backend_from_name
    from unibatch.buffers import ReplayBuffer
    from unibatch.storages import ImageStorage

    path, capacity = sys.argv[1], None if sys.argv[2] == "none" else int(sys.argv[2])
    backend = backend_from_name("numpy")
    space = BoxSpace(backend, 0, 255, "uint8", shape=(3, 16, 16))
    ramp = np.arange(3 * 16 * 16).reshape(3, 16, 16)
    buffer = ReplayBuffer.create(ImageStorage, space, cache_path=path, capacity=capacity)
    for i in range(10_000):
        buffer.append(((ramp + i) % 256).astype(np.uint8))
        if (i + 1) % 5 == 0:
            buffer.flush()
            print(i + 1, flush=True)
    """
)


@pytest.mark.parametrize("capacity", [None, 16], ids=["growable", "ring"])
def test_sigkilled_writer_leaves_a_consistent_committed_prefix(tmp_path, capacity):
    from unibatch.buffers import ReplayBuffer

    path = tmp_path / "buffer"
    argv = [sys.executable, "-c", WRITER, str(path), str(capacity).lower()]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout is not None
        committed = 0
        while committed < 40:
            committed = int(writer.stdout.readline())
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    ramp = np.arange(3 * 16 * 16).reshape(3, 16, 16)
    for read_only in (True, False):
        with ReplayBuffer.load_from(path, backend=NUMPY, read_only=read_only) as buffer:
            rows = np.asarray(buffer.get_at(slice(0, len(buffer))))
            first = int(rows[0, 0, 0, 0])
            appended = first + len(rows)
            assert appended >= committed and len(rows) == (appended if capacity is None else capacity)
            np.testing.assert_array_equal(rows, (ramp + np.arange(first, appended)[:, None, None, None]) % 256)
            if not read_only:
                buffer.append(np.zeros((3, 16, 16), np.uint8))  # the reopened buffer keeps appending
                buffer.flush()
                assert not np.asarray(buffer.get_at(-1)).any()
                assert os.listdir(path / "storage" / "tmp") == []


def test_image_leaf_of_a_transition_under_a_dict_storage(tmp_path):
    """DESIGN §6's transition: images in PNG files, the other leaves in memmap, in a reloaded buffer."""
    from unibatch import BinarySpace
    from unibatch.buffers import ReplayBuffer
    from unibatch.storages import DictStorage

    space = DictSpace(
        NUMPY,
        {
            "obs": {"state": BoxSpace(NUMPY, -1.0, 1.0, "float32", shape=(39,)), "image": space_of((3, 84, 84))},
            "action": BoxSpace(NUMPY, -1.0, 1.0, "float32", shape=(7,)),
            "reward": BoxSpace(NUMPY, -1.0, 1.0, "float32", shape=()),
            "done": BinarySpace(NUMPY, ()),
        },
    )
    images = camera_frames(12, 84).transpose(0, 3, 1, 2)
    states = np.linspace(-1, 1, 12 * 39, dtype=np.float32).reshape(12, 39)
    path = tmp_path / "buffer"
    children = {"obs/image": "image", "*": "memmap"}
    with ReplayBuffer.create(DictStorage, space, children, cache_path=path, capacity=None) as buffer:
        for i in range(12):
            step = {"state": states[i], "image": images[i]}
            buffer.append(
                {"obs": step, "action": np.zeros(7, np.float32), "reward": np.float32(i / 12), "done": i == 11}
            )
        buffer.flush()
    with ReplayBuffer.load_from(path, backend=NUMPY) as loaded:
        batch = loaded.get_at(np.array([11, 0, 11]))
        np.testing.assert_array_equal(batch["obs"]["image"], images[[11, 0, 11]])
        np.testing.assert_array_equal(batch["obs"]["state"], states[[11, 0, 11]])
    assert len(os.listdir(path / "storage" / "obs.image" / "00000")) == 12


def test_a_shrink_commits_its_length_before_deleting_files(tmp_path, monkeypatch):
    """Regression (review): files past a shrunk length were deleted before image.json recorded it."""
    space = BoxSpace(NumpyComputeBackend, 0, 255, "uint8", shape=(8, 8, 3))
    storage = ImageStorage.create(space, capacity=None, cache_path=tmp_path / "i")
    storage.extend_length(10)
    storage.set(slice(0, 10), np.arange(1, 11, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8))
    storage.flush()
    storage.shrink_length(5)

    def killed(*args, **kwargs):
        raise SystemExit("killed before image.json was replaced")

    monkeypatch.setattr(storage, "_write_own_sidecar", killed)
    with pytest.raises(SystemExit):
        storage.flush()
    reopened = ImageStorage.load_from(tmp_path / "i", space)
    assert reopened.get(np.arange(len(reopened)))[:, 0, 0, 0].tolist() == list(range(1, 11))  # no silent zeros
    reopened.close()
