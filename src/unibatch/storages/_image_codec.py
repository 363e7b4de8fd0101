"""One frame <-> one PNG or JPEG file through Pillow, for :class:`~unibatch.storages.image.ImageStorage`.

:func:`make_codec` checks that a space is an image Pillow can store bit-exactly in the chosen
format and fixes how a frame of the space maps to a Pillow image: ``(H, W)`` or ``(H, W, 1)``
grayscale (``"L"``, or ``"I;16"`` for uint16 PNG), ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA (PNG),
or the channel-first forms ``(C, H, W)`` with ``layout="CHW"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, BinaryIO

import numpy as np

from unibatch._optional import require
from unibatch.errors import SpaceMismatchError, UnibatchError, UnsupportedSpaceError
from unibatch.spaces import BoxSpace, Space
from unibatch.storages._safe_paths import open_data_file

FORMATS = ("png", "jpeg")
LAYOUTS = ("HW", "HWC", "CHW")
SUBSAMPLINGS = ("4:4:4", "4:2:2", "4:2:0")
CHANNELS = (1, 3, 4)
ACCEPTED = (
    "a BoxSpace of uint8 (H, W), (H, W, C) or, with layout='CHW', (C, H, W) where C is 1, 3 or 4 "
    "(4 only for PNG), or of uint16 (H, W) / (H, W, 1) for 16-bit PNG"
)
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG"}
_EXTENSIONS = {"png": "png", "jpeg": "jpg"}


class CorruptImageError(UnibatchError, OSError):
    """A stored image file exists but cannot be decoded; the message names the slot and the file."""


@dataclass(frozen=True)
class ImageCodec:
    """How frames of one image space are encoded to files and decoded back.

    Attributes:
        format: ``"png"`` (lossless) or ``"jpeg"`` (lossy).
        layout: ``"HW"``, ``"HWC"`` or ``"CHW"``: the axes of a frame of the space.
        shape: the frame shape of the space.
        dtype: ``uint8``, or ``uint16`` (PNG grayscale).
        quality: JPEG quality (1-100).
        compress_level: PNG zlib level (0-9).
        subsampling: JPEG chroma subsampling (``"4:4:4"`` keeps full colour resolution).
    """

    format: str
    layout: str
    shape: tuple[int, ...]
    dtype: np.dtype
    quality: int
    compress_level: int
    subsampling: str

    @property
    def extension(self) -> str:
        """File extension without the dot (``"png"``, ``"jpg"``)."""
        return _EXTENSIONS[self.format]

    @property
    def channels(self) -> int:
        return 1 if self.layout == "HW" else self.shape[0 if self.layout == "CHW" else -1]

    @property
    def height_width(self) -> tuple[int, int]:
        height, width = self.shape[1:] if self.layout == "CHW" else self.shape[:2]
        return height, width

    @property
    def mode(self) -> str:
        """The Pillow mode of a frame (``"L"``, ``"I;16"``, ``"RGB"``, ``"RGBA"``)."""
        if self.channels == 1:
            return "I;16" if self.dtype == np.uint16 else "L"
        return "RGB" if self.channels == 3 else "RGBA"

    def options(self) -> dict[str, Any]:
        """The codec's settings as JSON for the sidecar (the shape and dtype are stored with the leaf)."""
        return {
            "format": self.format,
            "layout": self.layout,
            "quality": self.quality,
            "compress_level": self.compress_level,
            "subsampling": self.subsampling,
        }

    def pil_view(self, frames: np.ndarray) -> np.ndarray:
        """``frames`` of shape ``(n, *shape)`` seen as Pillow arrays ``(n, H, W)`` or ``(n, H, W, C)``; no copy."""
        if self.channels == 1:
            return frames.reshape(frames.shape[0], *self.height_width)
        return frames.transpose(0, 2, 3, 1) if self.layout == "CHW" else frames

    def encode(self, frame: np.ndarray, handle: BinaryIO) -> None:
        """Write one frame (a :meth:`pil_view` row: ``(H, W)`` or ``(H, W, C)``) as an image file to ``handle``."""
        image = _pil_image().fromarray(np.ascontiguousarray(frame))
        if self.format == "png":
            image.save(handle, format="PNG", compress_level=self.compress_level)
        else:
            image.save(handle, format="JPEG", quality=self.quality, subsampling=self.subsampling)

    def decode_into(self, path: str, out: np.ndarray, slot: int) -> None:
        """Decode the file at ``path`` into ``out`` (a :meth:`pil_view` row); a missing file leaves ``out`` as is.

        Raises:
            CorruptImageError: the file is not a readable image of the storage's format.
            SpaceMismatchError: the file holds an image of another size or mode than the space.
        """
        try:
            handle = open_data_file(path, writable=False)  # a symlink in place of an image file is refused
        except FileNotFoundError:
            return
        with handle:
            self._decode_file(handle, path, out, slot)

    def _decode_file(self, handle: BinaryIO, path: str, out: np.ndarray, slot: int) -> None:
        try:
            image = _pil_image().open(handle, formats=[_PIL_FORMATS[self.format]])
        except (OSError, SyntaxError, ValueError) as error:
            raise CorruptImageError(
                f"slot {slot}: {path} is not a readable {self.format.upper()} file: {error}"
            ) from error
        with image:
            height, width = self.height_width
            if image.mode != self.mode or image.size != (width, height):
                raise SpaceMismatchError(
                    f"slot {slot}: {path} holds a {image.size[1]}x{image.size[0]} {image.mode!r} image, "
                    f"expected {height}x{width} {self.mode!r}"
                )
            try:
                out[...] = np.asarray(image)
            except (OSError, SyntaxError, ValueError) as error:  # truncated or damaged pixel data
                raise CorruptImageError(f"slot {slot}: {path} cannot be decoded: {error}") from error


def make_codec(
    space: Space,
    *,
    format: str,
    layout: str | None,
    quality: int,
    compress_level: int,
    subsampling: str,
) -> ImageCodec:
    """The codec for frames of ``space``; ``layout=None`` infers it from the shape.

    Raises:
        UnsupportedSpaceError: the space is not one of the accepted image forms for ``format``.
        ValueError: an option is out of its range.
    """
    _require_choice("format", format, FORMATS)
    _require_choice("subsampling", subsampling, SUBSAMPLINGS)
    _require_int("quality", quality, 1, 100)
    _require_int("compress_level", compress_level, 0, 9)
    if layout is not None:
        _require_choice("layout", layout, LAYOUTS)
    if not isinstance(space, BoxSpace):
        raise UnsupportedSpaceError(f"ImageStorage stores {ACCEPTED}; got {space!r}")
    shape = tuple(int(n) for n in space.shape)
    dtype = space.backend.numpy_dtype(space.dtype)
    codec = ImageCodec(format, _resolve_layout(shape, layout), shape, dtype, quality, compress_level, subsampling)
    _check_pixels(codec)
    return codec


def _resolve_layout(shape: tuple[int, ...], layout: str | None) -> str:
    described = f"a frame of shape {shape}"
    if len(shape) == 2 and layout in (None, "HW"):
        return "HW"
    if len(shape) != 3 or layout == "HW":
        raise UnsupportedSpaceError(f"ImageStorage stores {ACCEPTED}; got {described} with layout {layout!r}")
    if layout is None:
        last, first = shape[-1] in CHANNELS, shape[0] in CHANNELS
        if last and first:
            raise UnsupportedSpaceError(f"{described} is ambiguous: pass layout='HWC' or layout='CHW'")
        if not (last or first):
            raise UnsupportedSpaceError(f"ImageStorage stores {ACCEPTED}; got {described} (no axis of 1, 3 or 4)")
        return "HWC" if last else "CHW"
    if shape[0 if layout == "CHW" else -1] not in CHANNELS:
        raise UnsupportedSpaceError(f"ImageStorage stores {ACCEPTED}; got {described} with layout {layout!r}")
    return layout


def _check_pixels(codec: ImageCodec) -> None:
    got = f"{codec.dtype.name} {codec.shape} ({codec.layout}) as {codec.format.upper()}"
    if codec.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise UnsupportedSpaceError(f"ImageStorage stores {ACCEPTED}; got {got}")
    if codec.dtype == np.uint16 and (codec.channels != 1 or codec.format != "png"):
        raise UnsupportedSpaceError(f"ImageStorage stores uint16 only as one-channel PNG; got {got}")
    if codec.format == "jpeg" and codec.channels == 4:
        raise UnsupportedSpaceError(f"JPEG has no alpha channel: use format='png' for 4 channels; got {got}")
    if min(codec.height_width) < 1:
        raise UnsupportedSpaceError(f"ImageStorage needs frames of at least 1x1 pixels; got {got}")


def _require_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"ImageStorage {name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _require_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"ImageStorage {name} must be an integer in [{low}, {high}]; got {value!r}")


@cache
def _pil_image() -> Any:
    """The ``PIL.Image`` module, imported on first use (extra ``image``)."""
    return require("PIL.Image", "image")
