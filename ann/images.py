"""Safe decoding of user images and label maps (the app's uploads, `python -m ann.predict`), the
image files of a folder, and sizes written as WIDTHxHEIGHT.

Uploads are untrusted: the size is checked from the header before any pixel is decoded
(decompression bombs), EXIF orientation is applied, every PIL mode becomes 8-bit RGB, animated
files give their first frame, and the image is resized so its longer side is at most `max_side`.
Label maps are read losslessly (PNG) and never interpolated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ann.data.datasets import files_under

MAX_PIXELS = 40_000_000  # refuse larger images before decoding their pixels
DEFAULT_MAX_SIDE = 1024
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    """An upload that cannot be used; the message names the file and the problem."""


def open_checked(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open lazily and refuse oversized images from the header alone."""
    name = Path(path).name
    try:
        with open(path, "rb") as f:
            head = f.read(256).lstrip()
    except OSError as error:
        raise ImageError(f"{name}: cannot be read ({error.strerror})") from error
    if not head:
        raise ImageError(f"{name}: the file is empty (0 bytes)")
    if head.startswith(b"<") and b"<svg" in head:  # binary image formats never start with "<"
        raise ImageError(f"{name}: SVG (vector) images are not supported; upload a PNG or JPEG")
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as error:  # PIL's own limit, far above ours
        raise ImageError(f"{name}: refused, too many pixels ({error})") from error
    except UnidentifiedImageError as error:  # its message repeats the server-side path: leave it out
        raise ImageError(f"{name}: not a readable image (not PNG, JPEG, GIF, BMP, TIFF or WebP)") from error
    except (OSError, ValueError, SyntaxError) as error:  # a known format with a broken header
        raise ImageError(f"{name}: cannot decode ({error})") from error
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageError(
            f"{name}: {width}x{height} is {width * height / 1e6:.0f} Mpixels, "
            f"more than the {max_pixels / 1e6:.0f} Mpixels this app accepts"
        )
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (16-bit, float, CMYK, palette, LA, RGBA, ...) as 8-bit RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L"):  # 16-bit: keep the brightness, 65535 -> 255
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray((values / 257).round().astype(np.uint8), "L")
    if image.mode in ("I", "F"):  # no fixed range: stretch min..max to 0..255
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        image = Image.fromarray(scaled.round().astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))  # transparent -> white
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def resize_max_side(image: Image.Image, max_side: int | None) -> Image.Image:
    if not max_side or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BILINEAR)


def read_image(path: str | Path, max_side: int | None = DEFAULT_MAX_SIDE, max_pixels: int = MAX_PIXELS):
    """uint8 (H, W, 3) RGB of an image file, first frame, EXIF-upright, longer side <= max_side."""
    image = open_checked(path, max_pixels)
    try:
        image.seek(0)  # first frame of GIF/APNG/TIFF stacks
        image = ImageOps.exif_transpose(image)
        image.load()
        image = to_rgb(image)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{Path(path).name}: cannot decode ({error})") from error
    return np.array(resize_max_side(image, max_side))  # writable, as torch.from_numpy wants


def from_array(array: np.ndarray, max_side: int | None = DEFAULT_MAX_SIDE) -> np.ndarray:
    """An image array from the browser (webcam, numpy) as uint8 RGB, longer side <= max_side."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageError(f"expected an H x W x 3 image, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    image = to_rgb(Image.fromarray(array))
    return np.array(resize_max_side(image, max_side))  # writable, as torch.from_numpy wants


def same_aspect(label_hw: tuple[int, int], image_hw: tuple[int, int]) -> bool:
    """Aspect ratios within 2 % of each other, or a label map that lands within a pixel of the
    image when scaled to its longer side (an image shrunk to max_side rounds its short side, which
    moves a thin image's ratio by far more than 2 %)."""
    (h, w), (H, W) = label_hw, image_hw
    scale = max(H, W) / max(h, w)
    return abs(h * scale - H) <= 1 and abs(w * scale - W) <= 1 or abs(h * W / (w * H) - 1) <= 0.02


def read_label_map(path: str | Path, size: tuple[int, int], num_classes: int, max_pixels: int = MAX_PIXELS):
    """Ground-truth trainIds (H, W) uint8 at `size`, nearest-neighbour, 255 = ignore.

    The file must be a single-channel map (PNG 'L' or 'P', values are class ids) of the same
    aspect ratio as the image.
    """
    name = Path(path).name
    image = open_checked(path, max_pixels)
    if image.mode not in ("L", "P", "I", "I;16"):
        raise ImageError(f"{name}: a label map must be single-channel class ids, got mode {image.mode}")
    try:
        labels = np.asarray(image).astype(np.int64)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{name}: cannot decode the label map ({error})") from error
    H, W = size
    if not same_aspect(labels.shape, (H, W)):
        raise ImageError(
            f"{name}: label map {labels.shape[1]}x{labels.shape[0]} does not match image {W}x{H}"
        )
    bad = np.unique(labels[(labels >= num_classes) & (labels != 255)])
    if bad.size:
        raise ImageError(f"{name}: values {bad[:10].tolist()} are not class ids 0..{num_classes - 1} or 255")
    if labels.shape != (H, W):
        labels = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((W, H), Image.NEAREST))
    return labels.astype(np.uint8)


def collect_inputs(paths: list[Path]) -> dict[str, Path]:
    """Output name -> image file, in order: files by stem, folders walked (sorted) by relative path."""
    inputs: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            files = [f for f in files_under(path) if f.suffix.lower() in IMAGE_SUFFIXES]  # links followed
            if not files:
                raise ValueError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            named = [(f.relative_to(path).with_suffix("").as_posix(), f) for f in files]
        elif path.is_file():
            named = [(path.stem, path)]
        else:
            raise ValueError(f"{path}: no such file or folder")
        for name, file in named:
            if name in inputs and inputs[name] != file:
                raise ValueError(f"{inputs[name]} and {file} would both be written as {name}.png")
            inputs[name] = file
    return inputs


def parse_size(text: str) -> tuple[int, int]:
    """'256x128' -> (width 256, height 128), as the paper writes sizes."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must be WIDTHxHEIGHT, e.g. 256x128; got {text!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return width, height
