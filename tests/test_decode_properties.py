"""Property-based tests (hypothesis) of upload decoding and preprocessing (issue 7): on random sizes,
modes, formats and bytes, ann.images either returns a uint8 RGB image within the size limit or
raises ImageError naming the file; nothing else escapes, so no upload can crash a handler."""

import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ann.images import ImageError, from_array, read_image, read_label_map, resize_max_side
from ann.inference import preprocess
from ann.models.backbones import IMAGENET_NORMALIZATION

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# mode -> formats PIL can write it in
FORMATS = {
    "1": ["PNG", "BMP", "TIFF"],
    "L": ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"],
    "LA": ["PNG", "TIFF"],
    "P": ["PNG", "GIF", "BMP", "TIFF"],
    "RGB": ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"],
    "RGBA": ["PNG", "TIFF", "WEBP"],
    "CMYK": ["JPEG", "TIFF"],
    "I;16": ["PNG", "TIFF"],
    "I": ["PNG", "TIFF"],
    "F": ["TIFF"],
}
sizes = st.tuples(st.integers(1, 80), st.integers(1, 80))


@st.composite
def image_files(draw) -> tuple[bytes, tuple[int, int], str]:
    """(encoded bytes, (W, H), mode) of a random image in a random mode and format."""
    mode = draw(st.sampled_from(sorted(FORMATS)))
    fmt = draw(st.sampled_from(FORMATS[mode]))
    W, H = draw(sizes)
    seed = draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).integers(0, 256, (H, W, 4), dtype=np.uint8)
    if mode == "I;16":
        image = Image.fromarray(values[..., 0].astype(np.uint16) * 257)
    elif mode in ("I", "F"):
        image = Image.fromarray(values[..., 0].astype(np.int32 if mode == "I" else np.float32) * 3 - 100)
    else:
        image = Image.fromarray(values).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue(), (W, H), mode


def decode(tmp_path, data: bytes, name: str = "upload.png", max_side: int | None = 1024):
    path = tmp_path / name
    path.write_bytes(data)
    return read_image(path, max_side=max_side)


def assert_rgb(out: np.ndarray, max_side: int | None) -> None:
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert min(out.shape[:2]) >= 1 and (max_side is None or max(out.shape[:2]) <= max_side)
    assert out.flags.writeable and out.flags.c_contiguous  # torch.from_numpy takes it as is


@SETTINGS
@given(image_files(), st.sampled_from([None, 16, 50]))
def test_any_mode_and_format_decodes_to_rgb_within_the_limit(tmp_path, file, max_side):
    data, (W, H), _ = file
    out = decode(tmp_path, data, max_side=max_side)
    assert_rgb(out, max_side)
    if max_side is None or max(W, H) <= max_side:
        assert out.shape[:2] == (H, W)
    else:  # resized with the aspect ratio kept to within a pixel of rounding
        assert max(out.shape[:2]) == max_side
        scale = max_side / max(W, H)
        assert abs(out.shape[0] - H * scale) <= 1 and abs(out.shape[1] - W * scale) <= 1


@SETTINGS
@given(st.binary(max_size=2048))
def test_random_bytes_decode_or_raise_image_error(tmp_path, data):
    try:
        assert_rgb(decode(tmp_path, data), 1024)
    except ImageError as error:
        assert str(error).startswith("upload.png: ")


@SETTINGS
@given(image_files(), st.data())
def test_damaged_files_decode_or_raise_image_error(tmp_path, file, data):
    """Truncated, bit-flipped or spliced versions of valid files of every format."""
    raw = bytearray(file[0])
    how = data.draw(st.sampled_from(["truncate", "flip", "splice"]))
    position = data.draw(st.integers(0, len(raw) - 1))
    if how == "truncate":
        raw = raw[:position]
    elif how == "flip":
        for offset in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)):
            raw[offset] ^= 1 << data.draw(st.integers(0, 7))
    else:
        raw[position:position] = data.draw(st.binary(min_size=1, max_size=64))
    try:
        assert_rgb(decode(tmp_path, bytes(raw)), 1024)
    except ImageError as error:
        assert str(error).startswith("upload.png: ")


@SETTINGS
@given(
    st.tuples(st.integers(1, 60), st.integers(1, 60)),
    st.sampled_from([np.uint8, np.uint16, np.int64, np.float32, np.float64, bool]),
    st.sampled_from([None, 1, 3, 4]),
    st.integers(1, 64),
)
def test_arrays_from_the_browser_become_rgb(shape, dtype, channels, max_side):
    """from_array (webcam, numpy): any dtype and 2-D / 3- / 4-channel shape; others are refused."""
    values = np.random.default_rng(sum(shape)).uniform(-50, 300, (*shape, channels or 1))
    array = values[..., 0] if channels is None else values
    array = array.astype(dtype)
    try:
        out = from_array(array, max_side)
    except ImageError as error:
        assert channels == 1 and "H x W x 3" in str(error)
        return
    assert_rgb(out, max_side)
    if array.ndim == 2 and max(shape) <= max_side:  # gray: three equal channels
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


@SETTINGS
@given(sizes, st.integers(1, 100))
def test_resize_keeps_the_longer_side_at_most_the_limit(size, max_side):
    out = resize_max_side(Image.new("RGB", size), max_side)
    assert max(out.size) == min(max(size), max_side) and min(out.size) >= 1


@SETTINGS
@given(st.tuples(st.integers(1, 40), st.integers(1, 40)), st.integers(0, 2**32 - 1))
def test_preprocess_matches_the_normalisation(shape, seed):
    image = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    x = preprocess(image, IMAGENET_NORMALIZATION)
    assert x.shape == (1, 3, *shape) and x.dtype == torch.float32 and torch.isfinite(x).all()
    mean = np.array(IMAGENET_NORMALIZATION["mean"])
    std = np.array(IMAGENET_NORMALIZATION["std"])
    expected = ((image / 255.0 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(x[0].numpy(), expected, atol=1e-5)
    bgr = preprocess(
        image, {**IMAGENET_NORMALIZATION, "channel_order": "BGR", "mean": [0] * 3, "std": [1] * 3}
    )
    np.testing.assert_allclose(bgr[0].numpy(), image[..., ::-1].transpose(2, 0, 1) / 255.0, atol=1e-6)


@SETTINGS
@given(st.tuples(st.integers(1, 40), st.integers(1, 40)), st.integers(2, 30), st.integers(0, 2**32 - 1))
def test_label_maps_are_exact_or_refused_by_value(tmp_path, shape, num_classes, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes + 3, shape).astype(np.uint8)
    labels[rng.random(shape) < 0.1] = 255
    Image.fromarray(labels).save(tmp_path / "gt.png")
    bad = sorted(set(np.unique(labels).tolist()) - set(range(num_classes)) - {255})
    if bad:
        with pytest.raises(ImageError, match=rf"gt.png: values \[{bad[0]}"):
            read_label_map(tmp_path / "gt.png", shape, num_classes)
    else:
        np.testing.assert_array_equal(read_label_map(tmp_path / "gt.png", shape, num_classes), labels)


# Hand-computed values of the conversions the properties above only bound.


def test_16_bit_grey_keeps_its_brightness(tmp_path):
    values = np.array([[0, 257 * 100, 65535, 128]], np.uint16)  # 65535 / 257 = 255
    Image.fromarray(values).save(tmp_path / "deep.png")
    out = read_image(tmp_path / "deep.png", None)
    assert out[0, :, 0].tolist() == [0, 100, 255, 0] and (out[..., 0] == out[..., 2]).all()


@pytest.mark.parametrize("mode", ["I", "F"])
def test_integer_and_float_images_are_stretched_min_to_max(tmp_path, mode):
    values = np.array([[0, 1, 3, 4]], np.int32 if mode == "I" else np.float32) * 7 - 3
    Image.fromarray(values).save(tmp_path / "raw.tif")
    out = read_image(tmp_path / "raw.tif", None)
    assert out[0, :, 1].tolist() == [0, 64, 191, 255]  # round(255 * [0, 1/4, 3/4, 1])


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [0, 0, 0, 128]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    out = read_image(tmp_path / "cutout.png", None)
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [10, 20, 30]
    assert 126 <= out[0, 2, 0] <= 128  # half-transparent black over white


def test_arrays_out_of_range_are_clipped_not_wrapped():
    out = from_array(np.array([[-50.0, 300.0, 128.7]]), None)
    assert out[0, :, 0].tolist() == [0, 255, 128]  # a wrap would give 206 and 44


def test_label_map_is_enlarged_by_nearest_neighbour(tmp_path):
    Image.fromarray(np.array([[0, 3], [5, 255]], np.uint8)).save(tmp_path / "gt.png")
    out = read_label_map(tmp_path / "gt.png", (4, 4), 6)
    np.testing.assert_array_equal(out, np.array([[0, 3], [5, 255]]).repeat(2, 0).repeat(2, 1))


def test_label_map_of_another_aspect_ratio_is_refused(tmp_path):
    from ann.images import same_aspect

    Image.fromarray(np.zeros((100, 200), np.uint8)).save(tmp_path / "gt.png")
    with pytest.raises(ImageError, match="gt.png: label map 200x100 does not match image 230x100"):
        read_label_map(tmp_path / "gt.png", (100, 230), 3)  # 15 % wider
    assert same_aspect((100, 200), (101, 200)) and same_aspect((3, 1000), (1, 512))  # 1 % off; rounding
