"""From a drawn canvas to the final image: textures, shading, colour jitter, blur, sensor noise, JPEG.

All per-pixel work is integer numpy or PIL C code (no float reductions, no transcendental
functions), so the bytes depend only on (seed, split, index) and the numpy/Pillow versions.
"""

import io

import numpy as np
from PIL import Image, ImageFilter

from ann.data.labels import IGNORE_INDEX

from . import textures
from .canvas import Canvas


def composite(canvas: Canvas, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Slot image -> (flat colour x texture x shade image, label)."""
    classes = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    colours = np.zeros((256, 3), dtype=np.uint8)
    offsets = np.zeros(256, dtype=np.int32)
    for i, (cls, rgb, tex) in enumerate(canvas.table):
        classes[i], colours[i], offsets[i] = cls, rgb, tex * textures.TILE**2
    slots = np.asarray(canvas.slots)  # (H, W) uint8
    label = classes[slots]
    height, width = slots.shape
    tile = textures.TILE
    oy, ox = rng.integers(0, tile, 2)
    rows = ((np.arange(height, dtype=np.int32) + oy) % tile) * tile
    cols = (np.arange(width, dtype=np.int32) + ox) % tile
    texel = textures.texture_bank()[rows[:, None] + cols[None, :] + offsets[slots]]  # (H, W)
    gain = (texel.astype(np.uint16) * np.asarray(canvas.shade, dtype=np.uint16)) >> 7  # 128 = 1.0
    image = (colours[slots].astype(np.uint16) * gain[..., None]) >> 7
    return np.minimum(image, 255).astype(np.uint8), label


def _colour_lut(rng: np.random.Generator) -> list[int]:
    """Exposure, contrast and white balance as one 768-entry lookup table (integer results)."""
    exposure = rng.uniform(0.75, 1.3)
    contrast = rng.uniform(0.8, 1.2)
    balance = rng.uniform(0.9, 1.1, 3)
    levels = np.arange(256, dtype=np.float64)
    lut = [np.clip(np.round((levels * exposure * b - 128.0) * contrast + 128.0), 0, 255) for b in balance]
    return np.concatenate(lut).astype(np.uint8).tolist()


def finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera effects: colour jitter, optical blur, sensor noise, JPEG compression."""
    pil = Image.fromarray(image).point(_colour_lut(rng))
    if rng.uniform() < 0.6:
        pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.3)))
    height, width = image.shape[:2]
    field = textures.noise_field(width, height)
    sigma = int(rng.integers(1, 8))  # noise std in grey levels
    out = np.asarray(pil).astype(np.int16)
    for c in range(3):
        oy, ox = rng.integers(0, textures.TILE, 2)
        out[..., c] += (field[oy : oy + height, ox : ox + width].astype(np.int16) * sigma) >> 5
    pil = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    if rng.uniform() < 0.6:
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=int(rng.integers(40, 92)))
        pil = Image.open(buffer).convert("RGB")
    return np.asarray(pil)
