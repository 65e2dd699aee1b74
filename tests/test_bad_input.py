"""Bad and unusual uploads (issue 7). The file zoo is generated in tmp_path, decoded directly by
ann.images and sent through the launched app with gradio_client: a refused file gets an error that
names the file and the problem, in the API as in the UI (both show the gr.Error text), and the app
serves the next request; odd modes are converted to the RGB a viewer would show.

Plain decoding of each mode is in tests/test_app_api.py; here: exact pixels and the API path."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from ann.images import ImageError, read_image, read_label_map
from app.images import UploadedImage
from tests import conftest_app
from tests.conftest_app import TINY_NAME, street_image

app_client, tiny_store = conftest_app.app_client, conftest_app.tiny_store  # the launched app

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"></svg>'


def png16_rgb(path, values: np.ndarray) -> None:
    """A 48-bit RGB PNG (PIL cannot write one): signature, IHDR, one IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    H, W, _ = values.shape
    rows = b"".join(b"\0" + values[y].astype(">u2").tobytes() for y in range(H))  # filter 0 per row
    header = struct.pack(">IIBBBBB", W, H, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def halves(mode: str, left, right, size=(32, 16)) -> Image.Image:
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


# name -> (writer(path), regex the error must match); every message also names the file
REFUSED = {
    "text.png": (lambda p: p.write_text("this is a text file renamed .png"), "not a readable image"),
    "empty.png": (lambda p: p.write_bytes(b""), "empty"),
    "truncated.jpg": (
        lambda p: p.write_bytes(encoded(halves("RGB", RED, BLUE), "JPEG")[:300]),
        "cannot decode.*[Tt]runcated",
    ),
    "truncated.png": (
        lambda p: p.write_bytes(encoded(Image.effect_noise((64, 64), 50).convert("RGB"), "PNG")[:2000]),
        "cannot decode.*[Tt]runcated",
    ),
    "bomb.png": (lambda p: Image.new("1", (20_000, 20_000)).save(p), "too many pixels|Mpixels"),
    "large.png": (
        lambda p: Image.new("1", (7_000, 6_000)).save(p),
        "7000x6000 is 42 Mpixels, more than the 40",
    ),
    "vector.svg": (lambda p: p.write_bytes(SVG), "SVG"),
    "vector_renamed.png": (lambda p: p.write_bytes(SVG), "SVG"),
}


def expect_halves(left, right, size=(32, 16)) -> np.ndarray:
    W, H = size
    out = np.empty((H, W, 3), np.uint8)
    out[:, : W // 2], out[:, W // 2 :] = left, right
    return out


def gradient16() -> np.ndarray:
    return np.linspace(0, 65535, 16 * 32).round().astype(np.uint16).reshape(16, 32)


def write_palette(path, transparent: bool) -> None:
    image = Image.new("P", (32, 16), 0)
    image.putpalette([*RED, *BLUE] + [0] * 762)
    image.paste(1, (16, 0, 32, 16))
    image.save(path, transparency=0) if transparent else image.save(path)


def write_exif(path, orientation: int) -> None:
    """Stored 32x16 with a red top-left quarter; the EXIF tag says how to turn it upright."""
    image = Image.new("RGB", (32, 16), BLUE)
    image.paste(RED, (0, 0, 16, 8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, quality=95, subsampling=0, exif=exif)  # 4:4:4: no colour bleeding


def upright_exif(orientation: int) -> np.ndarray:
    # where the stored top-left quarter must be once shown upright (EXIF 3: 180, 6: 90 CW, 8: 90 CCW)
    stored = np.zeros((16, 32, 3), np.uint8) + np.uint8(BLUE)
    stored[:8, :16] = RED
    return {1: stored, 3: np.rot90(stored, 2), 6: np.rot90(stored, -1), 8: np.rot90(stored, 1)}[orientation]


def write_gif(path) -> None:
    frames = [Image.new("RGB", (32, 16), c) for c in (RED, BLUE, WHITE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)


# name -> (writer(path), expected uint8 (H, W, 3), tolerance): lossless formats are exact
CONVERTED = {
    "one_pixel.png": (
        lambda p: Image.new("RGB", (1, 1), (10, 20, 30)).save(p),
        np.full((1, 1, 3), (10, 20, 30)),
        0,
    ),
    "gray16.png": (
        lambda p: Image.fromarray(gradient16()).save(p),
        np.repeat((gradient16() / 257).round()[..., None], 3, axis=2),
        0,
    ),
    "rgb48.png": (
        lambda p: png16_rgb(p, np.stack([gradient16(), 65535 - gradient16(), gradient16() // 2], -1)),
        np.stack([gradient16(), 65535 - gradient16(), gradient16() // 2], -1) / 257,
        1,  # PIL keeps the high byte: v >> 8 is within 1 of v / 257
    ),
    "cmyk.jpg": (
        lambda p: halves("CMYK", (255, 0, 0, 0), (0, 0, 0, 255)).save(p, quality=95),
        expect_halves((0, 255, 255), (0, 0, 0)),  # cyan | black
        12,
    ),
    "palette.png": (lambda p: write_palette(p, False), expect_halves(RED, BLUE), 0),
    "palette_transparent.png": (lambda p: write_palette(p, True), expect_halves(WHITE, BLUE), 0),
    "la.png": (
        lambda p: halves("LA", (100, 255), (100, 0)).save(p),
        expect_halves((100,) * 3, WHITE),  # opaque gray | transparent = white background
        0,
    ),
    "rgba.png": (
        lambda p: halves("RGBA", (*RED, 255), (*RED, 128)).save(p),
        expect_halves(RED, (255, 127, 127)),  # half-transparent red over white
        1,
    ),
    "exif3.jpg": (lambda p: write_exif(p, 3), upright_exif(3), 40),
    "exif6.jpg": (lambda p: write_exif(p, 6), upright_exif(6), 40),
    "exif8.jpg": (lambda p: write_exif(p, 8), upright_exif(8), 40),
    "animated.gif": (write_gif, expect_halves(RED, RED), 0),
}


def close(actual: np.ndarray, expected: np.ndarray, tolerance: int) -> bool:
    """Equal within `tolerance`, JPEG edges aside: tolerance > 12 compares 4x4 block means."""
    actual, expected = actual.astype(float), np.asarray(expected, float)
    if actual.shape != expected.shape:
        return False
    if tolerance > 12:
        H, W = actual.shape[:2]
        blocks = (H // 4, 4, W // 4, 4, 3)
        actual, expected = actual.reshape(blocks).mean((1, 3)), expected.reshape(blocks).mean((1, 3))
        tolerance = 12
    return np.abs(actual - expected).max() <= tolerance


def quadrants(image: np.ndarray) -> np.ndarray:
    """Mean colour of the four quadrants: what survives the app's JPEG outputs (4:2:0 chroma)."""
    H, W = image.shape[:2]
    return image.astype(float).reshape(2, H // 2, 2, W // 2, 3).mean((1, 3))


@pytest.fixture
def forbid_decoding(monkeypatch):
    """Any pixel decode fails the test: refusals must come from the header alone."""

    def load(self):
        raise AssertionError(f"decoded the pixels of {self.size}")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


# ---- the decoding function ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_files_name_the_file_and_problem(tmp_path, name):
    write, message = REFUSED[name]
    write(tmp_path / name)
    with pytest.raises(ImageError, match=message) as error:
        read_image(tmp_path / name)
    assert str(error.value).startswith(name + ":")
    assert str(tmp_path) not in str(error.value)  # no server-side paths in messages


@pytest.mark.parametrize("name", ["bomb.png", "large.png"])
def test_bombs_are_refused_from_the_header(tmp_path, name, forbid_decoding):
    REFUSED[name][0](tmp_path / name)
    with pytest.raises(ImageError, match=REFUSED[name][1]):
        read_image(tmp_path / name)


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_modes_are_converted_as_a_viewer_shows_them(tmp_path, name):
    write, expected, tolerance = CONVERTED[name]
    write(tmp_path / name)
    out = read_image(tmp_path / name)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    assert close(out, expected, tolerance), (out[0, :4].tolist(), np.asarray(expected)[0, :4].tolist())


def test_long_strip_is_resized_to_the_limit(tmp_path):
    strip = np.zeros((50, 8000, 3), np.uint8)
    strip[:, 4000:] = 200
    Image.fromarray(strip).save(tmp_path / "strip.png")
    out = read_image(tmp_path / "strip.png", max_side=1024)
    assert out.shape == (6, 1024, 3)  # 50 * 1024 / 8000 = 6.4 rows
    assert (out[:, :500] == 0).all() and (out[:, 530:] == 200).all()
    assert read_image(tmp_path / "strip.png", max_side=None).shape == (50, 8000, 3)


def test_truncated_label_map_is_an_image_error(tmp_path):
    data = encoded(Image.fromarray(np.random.default_rng(0).integers(0, 19, (64, 64), np.uint8)), "PNG")
    (tmp_path / "gt.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="gt.png: cannot decode the label map"):
        read_label_map(tmp_path / "gt.png", (64, 64), 19)


# ---- through the API of the launched app ------------------------------------------------------


def test_layout_hands_uploads_to_our_decoder(app_client):
    """gr.Image would decode and convert the upload itself before read_image sees it."""
    _, demo = app_client
    inputs = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "input-image"]
    assert len(inputs) == 1 and isinstance(inputs[0], UploadedImage)


def segment(client, image, label=None, opacity=0.0):
    """(overlay, the Segment tab's summary text) through the API."""
    from gradio_client import handle_file

    label = handle_file(str(label)) if label else None
    overlay, summary = client.predict(handle_file(str(image)), label, TINY_NAME, opacity, api_name="/segment")
    return overlay, summary["text"]


def still_serving(client, tmp_path) -> None:
    overlay, summary = segment(client, street_image(tmp_path / "good.png"))
    assert "good.png" in summary and Image.open(overlay).size == (64, 48)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_api_refuses_with_the_message_and_keeps_serving(app_client, tmp_path, name):
    from gradio_client.exceptions import AppError

    client, _ = app_client
    write, message = REFUSED[name]
    write(tmp_path / name)
    with pytest.raises(AppError, match=f"{name}: .*({message})"):
        segment(client, tmp_path / name)
    still_serving(client, tmp_path)


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_api_shows_the_converted_image(app_client, tmp_path, name):
    client, _ = app_client
    write, expected, _ = CONVERTED[name]
    write(tmp_path / name)
    overlay, summary = segment(client, tmp_path / name)  # opacity 0: the overlay is the image
    H, W = np.asarray(expected).shape[:2]
    assert f"{name}: {W}x{H} px" in summary
    shown, expected = np.asarray(Image.open(overlay).convert("RGB")), np.asarray(expected)
    assert shown.shape == expected.shape
    if H * W == 1:
        assert np.abs(shown.astype(int) - expected).max() <= 12
    else:  # a wrong orientation, alpha or 16-bit scale is off by more than 100 levels
        assert np.abs(quadrants(shown) - quadrants(expected)).max() <= 40


def test_api_resizes_a_long_strip(app_client, tmp_path):
    client, _ = app_client
    Image.new("RGB", (8000, 50), (40, 80, 120)).save(tmp_path / "strip.png")
    overlay, summary = segment(client, tmp_path / "strip.png")
    assert "strip.png: 96x1 px" in summary  # the fixture's max_side is 96
    assert Image.open(overlay).size == (96, 1)


@pytest.mark.parametrize(
    "label_hw, image_hw, accepted",
    [
        ((3000, 10), (512, 2), True),  # a 10x3000 image shrunk to max_side 512 rounds 1.7 px to 2
        ((50, 2000), (10, 1024), False),  # 2.5x the aspect of a 2000x20 image shrunk to 1024x10
        ((511, 1023), (512, 1024), True),  # an off-by-one export of a 1024x512 label
        ((101, 200), (512, 1024), True),  # 1 % off: a small map, scaled up nearest-neighbour
        ((48, 32), (48, 64), False),
    ],
)
def test_label_map_aspect_is_compared_relative_to_the_image(tmp_path, label_hw, image_hw, accepted):
    Image.fromarray(np.zeros(label_hw, np.uint8)).save(tmp_path / "gt.png")
    if accepted:
        assert read_label_map(tmp_path / "gt.png", image_hw, 19).shape == image_hw
    else:
        with pytest.raises(ImageError, match="does not match image"):
            read_label_map(tmp_path / "gt.png", image_hw, 19)


@pytest.mark.parametrize(
    "label, message",
    [
        (np.zeros((48, 32), np.uint8), "label map 32x48 does not match image 64x48"),
        (np.full((48, 64), 19, np.uint8), r"values \[19\] are not class ids 0..18 or 255"),
        (np.zeros((48, 64, 3), np.uint8), "single-channel"),
        ("truncated", "cannot decode the label map"),
        ("text", "not a readable image"),
    ],
    ids=["size", "values", "colour", "truncated", "text"],
)
def test_api_refuses_a_ground_truth_that_does_not_match(app_client, tmp_path, label, message):
    from gradio_client.exceptions import AppError

    client, _ = app_client
    path = tmp_path / "gt.png"
    if isinstance(label, np.ndarray):
        Image.fromarray(label).save(path)
    elif label == "truncated":
        data = encoded(Image.fromarray(np.random.default_rng(1).integers(0, 19, (48, 64), np.uint8)), "PNG")
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_text("not a label map")
    with pytest.raises(AppError, match=f"gt.png: .*{message}"):
        segment(client, street_image(tmp_path / "street.png"), path)
    still_serving(client, tmp_path)


@pytest.mark.parametrize("x, y", [(-1, 5), (5, -1), (64, 5), (5, 48), (10**9, 5)])
def test_api_rejects_attention_outside_the_image(app_client, tmp_path, x, y):
    from gradio_client.exceptions import AppError

    client, _ = app_client
    segment(client, street_image(tmp_path / "street.png"))  # 64x48
    with pytest.raises(AppError, match=r"outside the 64x48 image"):
        client.predict(x, y, "apnb", api_name="/attention")
    assert client.predict(63, 47, "apnb", api_name="/attention")[1]["S"] == 110  # the corner is inside


@pytest.mark.parametrize("index", [-1, 110, 10**9])
def test_api_rejects_anchor_indices_out_of_range(app_client, tmp_path, index):
    from gradio_client.exceptions import AppError

    client, _ = app_client
    segment(client, street_image(tmp_path / "street.png"))
    with pytest.raises(AppError, match=r"out of range.*0\.\.109"):
        client.predict(index, "apnb", api_name="/anchor")
    picture, _ = client.predict(109, "apnb", api_name="/anchor")
    assert Image.open(picture).size == (64, 48)
