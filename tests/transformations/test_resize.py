"""ImageResizeTransformation: bilinear (half-pixel centres) and nearest, HWC/CHW/HW layouts."""

from __future__ import annotations

import numpy as np
import pytest
from _transformation_contract import Case, NonInvertibleContract, to_numpy

from unibatch.errors import SpaceMismatchError
from unibatch.spaces import BinarySpace, BoxSpace
from unibatch.transformations import ImageResizeTransformation


def reference_resize_2d(image: np.ndarray, out_h: int, out_w: int, method: str) -> np.ndarray:
    """One channel, pixel by pixel in float64: source coordinate ``(i + 0.5) * in / out - 0.5``,
    clamped to the image (bilinear) or rounded half up to the closest pixel (nearest)."""
    in_h, in_w = image.shape
    image = image.astype(np.float64)
    out = np.empty((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            y = (i + 0.5) * in_h / out_h - 0.5
            x = (j + 0.5) * in_w / out_w - 0.5
            if method == "nearest":
                out[i, j] = image[
                    min(max(int(np.floor(y + 0.5)), 0), in_h - 1), min(max(int(np.floor(x + 0.5)), 0), in_w - 1)
                ]
                continue
            y, x = min(max(y, 0.0), in_h - 1), min(max(x, 0.0), in_w - 1)
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, in_h - 1), min(x0 + 1, in_w - 1)
            wy, wx = y - y0, x - x0
            top = (1 - wx) * image[y0, x0] + wx * image[y0, x1]
            bottom = (1 - wx) * image[y1, x0] + wx * image[y1, x1]
            out[i, j] = (1 - wy) * top + wy * bottom
    return out


def reference_resize(image: np.ndarray, out_h: int, out_w: int, layout: str, method: str) -> np.ndarray:
    """``reference_resize_2d`` per channel, cast like the transformation (integers rounded)."""
    if layout == "HW":
        out = reference_resize_2d(image, out_h, out_w, method)
    elif layout == "CHW":
        out = np.stack([reference_resize_2d(c, out_h, out_w, method) for c in image])
    else:
        out = np.stack(
            [reference_resize_2d(image[..., c], out_h, out_w, method) for c in range(image.shape[-1])], axis=-1
        )
    return (np.round(out) if image.dtype.kind in "iu" else out).astype(image.dtype)


def make_resize_case(backend, source, samples, height, width, layout, method, target=None):
    expected = [reference_resize(s, height, width, layout, method) for s in samples]
    return Case(ImageResizeTransformation(height, width, layout, method), source, samples, expected, target=target)


_RNG = np.random.default_rng(7)
_UINT8_HWC = [_RNG.integers(0, 256, (2, 3, 2), dtype=np.uint8) for _ in range(2)]
_UINT8_HW = [_RNG.integers(0, 256, (3, 2), dtype=np.uint8) for _ in range(2)]


class TestBilinearUpsampleHWC(NonInvertibleContract):
    """uint8, non-integer factors (2x3 -> 4x5); rounded to nearest."""

    def make_case(self, backend):
        source = BoxSpace(backend, 0, 255, "uint8", shape=(2, 3, 2))
        target = BoxSpace(backend, 0, 255, "uint8", shape=(4, 5, 2))
        return make_resize_case(backend, source, _UINT8_HWC, 4, 5, "HWC", "bilinear", target)


class TestNearestUpsampleHW(NonInvertibleContract):
    """Grayscale 3x2 -> 5x4."""

    def make_case(self, backend):
        source = BoxSpace(backend, 0, 255, "uint8", shape=(3, 2))
        target = BoxSpace(backend, 0, 255, "uint8", shape=(5, 4))
        return make_resize_case(backend, source, _UINT8_HW, 5, 4, "HW", "nearest", target)


# ---------------------------------------------------------------------- hand-computed values
_IMAGE_2X2 = np.array([[0, 100], [200, 255]])
# Output row/column k samples source coordinate (k + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25,
# clamped to [0, 1]: weights 0, 0.25, 0.75, 1 of the second pixel.
_BILINEAR_4X4 = np.array(
    [
        [0.0, 25.0, 75.0, 100.0],
        [50.0, 72.1875, 116.5625, 138.75],
        [150.0, 166.5625, 199.6875, 216.25],
        [200.0, 213.75, 241.25, 255.0],
    ]
)
# Nearest: floor(coordinate + 0.5) = 0, 0, 1, 1.
_NEAREST_4X4 = np.array([[0, 0, 100, 100], [0, 0, 100, 100], [200, 200, 255, 255], [200, 200, 255, 255]])


@pytest.mark.parametrize(
    ("method", "dtype", "expected"),
    [
        ("bilinear", "float32", _BILINEAR_4X4),
        # Rounded to nearest, not truncated: 72.1875 -> 72 but 116.5625 -> 117, 138.75 -> 139.
        ("bilinear", "uint8", np.round(_BILINEAR_4X4)),
        ("nearest", "float32", _NEAREST_4X4),
        ("nearest", "uint8", _NEAREST_4X4),
    ],
)
def test_upsample_2x_hand_computed(backend, method, dtype, expected):
    source = BoxSpace(backend, 0, 255, dtype, shape=(2, 2, 1))
    image = backend.from_numpy(_IMAGE_2X2.astype(dtype)[..., None])
    result = ImageResizeTransformation(4, 4, "HWC", method).transform(source, image)
    assert backend.dtype_name(result.dtype) == dtype
    np.testing.assert_array_equal(to_numpy(result)[..., 0], expected.astype(dtype))
    np.testing.assert_array_equal(
        reference_resize(_IMAGE_2X2.astype(dtype), 4, 4, "HW", method), expected.astype(dtype)
    )


def test_bilinear_downsample_chw_with_per_channel_bounds(backend):
    """float32 CHW 4x4 -> 2x3 against the reference; the bounds stay per channel."""
    rng = np.random.default_rng(5)
    image = np.stack([rng.uniform(-1, 1, (4, 4)), rng.uniform(0, 2, (4, 4))]).astype(np.float32)
    low, high = np.array([-1.0, 0.0]).reshape(2, 1, 1), np.array([1.0, 2.0]).reshape(2, 1, 1)
    source = BoxSpace(backend, low, high, "float32", shape=(2, 4, 4))
    t = ImageResizeTransformation(2, 3, "CHW")
    result = t.transform(source, backend.from_numpy(image))
    assert t.get_target_space_from_source(source) == BoxSpace(backend, low, high, "float32", shape=(2, 2, 3))
    np.testing.assert_allclose(to_numpy(result), reference_resize(image, 2, 3, "CHW", "bilinear"), rtol=1e-6)


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_uint8_result_stays_in_bounds(backend, method):
    """Pixels beyond the declared bounds are clipped into them, so the result is in the target."""
    source = BoxSpace(backend, 10, 200, "uint8", shape=(2, 2, 1))
    t = ImageResizeTransformation(4, 4, "HWC", method)
    result = t.transform(source, backend.from_numpy(np.array([[0, 255], [255, 0]], np.uint8)[..., None]))
    values = to_numpy(result)
    assert values.dtype == np.uint8
    assert values.min() == 10
    assert values.max() == 200
    assert result in t.get_target_space_from_source(source)


def test_nearest_downsample_float64(backend):
    """float64 (float32 on JAX) stays floating; 4x4x1 -> 2x3x1 against the reference."""
    image = np.random.default_rng(3).uniform(-5, 5, (4, 4, 1))
    source = BoxSpace(backend, -5.0, 5.0, "float64", shape=(4, 4, 1))
    t = ImageResizeTransformation(2, 3, "HWC", "nearest")
    result = t.transform(source, backend.from_numpy(image))
    assert t.get_target_space_from_source(source) == BoxSpace(backend, -5.0, 5.0, "float64", shape=(2, 3, 1))
    assert backend.dtype_name(result.dtype) == backend.dtype_name(backend.as_dtype("float64"))
    np.testing.assert_allclose(to_numpy(result), reference_resize(image, 2, 3, "HWC", "nearest"), rtol=1e-6)


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize(("layout", "shape"), [("HWC", (2, 3, 3)), ("CHW", (2, 3, 3)), ("HW", (2, 3))])
def test_same_size_is_identity(backend, layout, shape, method):
    rng = np.random.default_rng(0)
    for dtype, image in (
        ("uint8", rng.integers(0, 256, shape, dtype=np.uint8)),
        ("float32", rng.uniform(0, 255, shape).astype(np.float32)),
    ):
        source = BoxSpace(backend, 0, 255, dtype, shape=shape)
        height, width = (shape[1], shape[2]) if layout == "CHW" else (shape[0], shape[1])
        t = ImageResizeTransformation(height, width, layout, method)
        assert t.get_target_space_from_source(source) == source
        result = t.transform(source, backend.from_numpy(image))
        assert backend.dtype_name(result.dtype) == dtype
        np.testing.assert_array_equal(to_numpy(result), image)


@pytest.mark.parametrize(
    ("layout", "shape", "expected"),
    [
        ("HWC", (5, 6, 3), (2, 4, 3)),
        ("CHW", (3, 5, 6), (3, 2, 4)),
        ("HW", (5, 6), (2, 4)),
        ("HW", (7, 5, 6), (7, 2, 4)),
    ],
)
def test_target_shape_per_layout(backend, layout, shape, expected):
    source = BoxSpace(backend, 0, 255, "uint8", shape=shape)
    target = ImageResizeTransformation(2, 4, layout).get_target_space_from_source(source)
    assert target == BoxSpace(backend, 0, 255, "uint8", shape=expected)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "NHWC"}, r"layout must be one of \['CHW', 'HW', 'HWC'\], got 'NHWC'"),
        ({"layout": "hwc"}, "layout must be one of"),
        ({"method": "bicubic"}, r"method must be one of \('bilinear', 'nearest'\), got 'bicubic'"),
        ({"height": 0}, "height and width must be positive, got 0x4"),
        ({"width": -2}, "height and width must be positive, got 4x-2"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    arguments = {"height": 4, "width": 4, **kwargs}
    with pytest.raises(SpaceMismatchError, match=message):
        ImageResizeTransformation(**arguments)


@pytest.mark.parametrize(
    ("layout", "space"),
    [
        ("HWC", lambda b: BinarySpace(b, (4, 4, 3))),
        ("HWC", lambda b: BoxSpace(b, 0, 255, "uint8", shape=(4, 4))),
        ("HW", lambda b: BoxSpace(b, 0, 255, "uint8", shape=(4,))),
    ],
    ids=["binary", "HWC-rank-2", "HW-rank-1"],
)
def test_wrong_space_is_rejected(backend, layout, space):
    source = space(backend)
    t = ImageResizeTransformation(2, 2, layout)
    with pytest.raises(
        SpaceMismatchError, match=rf"ImageResizeTransformation\({layout}\) needs a BoxSpace of rank >= {len(layout)}"
    ):
        t.get_target_space_from_source(source)
    with pytest.raises(SpaceMismatchError, match="needs a BoxSpace of rank"):
        t.transform(source, source.create_empty())


def test_bounds_varying_over_height_or_width_are_rejected(backend):
    low = np.arange(4, dtype=np.float32).reshape(2, 2, 1)
    source = BoxSpace(backend, low, 10.0, "float32")
    t = ImageResizeTransformation(3, 3)
    with pytest.raises(SpaceMismatchError, match="bounds that are uniform over height and width"):
        t.get_target_space_from_source(source)
    with pytest.raises(SpaceMismatchError, match="bounds that are uniform over height and width"):
        t.transform(source, backend.from_numpy(np.full((2, 2, 1), 5.0, np.float32)))
