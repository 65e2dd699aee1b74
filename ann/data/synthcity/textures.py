"""Texture and sensor-noise banks of SynthCity, built once per process from a fixed seed.

Every texture is a tileable TILE x TILE grey map whose mean is about 128, read as a multiplier
(128 = 1.0) on the flat colour of a polygon. Paired classes (docs/synthcity.md) draw the same
texture in a given image, so texture is never a cue that separates them.
Only integer arithmetic and PIL resampling are used, so the banks are identical on every machine.
"""

from functools import lru_cache

import numpy as np
from PIL import Image

TILE = 256

# Texture families; a scene picks one variant per family (textures.variant).
FAMILIES = {
    "ground": ("asphalt", "paving", "speckle"),
    "facade": ("plaster", "brick", "panels"),
    "foliage": ("leaves", "moss"),
    "paint": ("paint",),
    "cloth": ("fabric",),
    "glass": ("glass",),
    "metal": ("metal",),
    "bark": ("bark",),
    "flat": ("flat",),
}
NAMES = tuple(name for variants in FAMILIES.values() for name in variants)


def _value_noise(rng: np.random.Generator, cells: int, aspect: int = 1) -> np.ndarray:
    """Smooth tileable noise in [0, 255]: a random cells x cells grid, bicubic-upsampled from a
    3x3 tiling so that the centre tile wraps around without a seam."""
    grid = rng.integers(0, 256, (cells, cells * aspect), dtype=np.uint8)
    big = Image.fromarray(np.tile(grid, (3, 3)))
    big = big.resize((3 * TILE, 3 * TILE), Image.BICUBIC)
    return np.asarray(big)[TILE : 2 * TILE, TILE : 2 * TILE].astype(np.int32)


def _blocks(rng: np.random.Generator, bw: int, bh: int, stagger: bool) -> np.ndarray:
    """Per-block tone and a mortar mask for bricks and paving (block size divides TILE)."""
    y, x = np.mgrid[0:TILE, 0:TILE]
    row = y // bh
    shift = (row % 2) * (bw // 2) if stagger else 0
    col = ((x + shift) % TILE) // bw
    tone = rng.integers(-18, 19, (TILE // bh, TILE // bw))[row, col]
    mortar = ((y % bh) < 2) | (((x + shift) % bw) < 2)
    return tone - 40 * mortar


def _make(name: str, rng: np.random.Generator) -> np.ndarray:
    fine = rng.integers(-1, 2, (TILE, TILE)) * rng.integers(0, 12, (TILE, TILE))
    low = _value_noise(rng, 8) - 128
    mid = _value_noise(rng, 32) - 128
    y = np.arange(TILE)[:, None]
    x = np.arange(TILE)[None, :]
    if name == "asphalt":
        tex = fine * 2 + low // 6 + mid // 8
    elif name == "paving":
        tex = _blocks(rng, 32, 32, False) + fine + low // 8
    elif name == "speckle":
        tex = fine + (mid // 5) + low // 5
    elif name == "plaster":
        tex = low // 4 + mid // 10 + fine // 2
    elif name == "brick":
        tex = _blocks(rng, 32, 16, True) + fine // 2 + low // 8
    elif name == "panels":
        tex = _blocks(rng, 64, 64, False) // 2 + mid // 10 + fine // 2
    elif name == "leaves":
        tex = (mid * 2 // 3) + (_value_noise(rng, 64) - 128) // 2 + fine
    elif name == "moss":
        tex = (_value_noise(rng, 16, 4) - 128) // 2 + mid // 3 + fine
    elif name == "fabric":
        tex = ((x + y) % 4 < 2) * 16 - 8 + fine // 2 + low // 8
    elif name == "glass":
        tex = low // 3 + (y - TILE // 2) // 8
    elif name == "bark":
        tex = (_value_noise(rng, 4, 16).T - 128) // 2 + fine
    elif name in ("paint", "metal", "flat"):
        tex = low // (12 if name == "flat" else 8) + fine // 3
    else:
        raise ValueError(f"unknown texture {name!r}; valid: {', '.join(NAMES)}")
    return np.clip(128 + tex, 40, 230).astype(np.uint8)


@lru_cache(maxsize=1)
def texture_bank() -> np.ndarray:
    """All textures, flattened: texture k occupies [k * TILE**2, (k + 1) * TILE**2)."""
    rng = np.random.default_rng(np.random.SeedSequence([20190, 1]))
    return np.concatenate([_make(name, rng).ravel() for name in NAMES])


def texture_id(name: str) -> int:
    return NAMES.index(name)


def variant(family: str, rng: np.random.Generator) -> int:
    """A texture of the family, drawn once per image and shared by the classes of a pair."""
    variants = FAMILIES[family]
    return texture_id(variants[int(rng.integers(len(variants)))])


@lru_cache(maxsize=8)
def noise_field(width: int, height: int) -> np.ndarray:
    """Gaussian sensor noise (sigma 32 in int8 units) tiled to (height + TILE, width + TILE)."""
    rng = np.random.default_rng(np.random.SeedSequence([20190, 2]))
    tile = np.clip(np.round(rng.standard_normal((TILE, TILE)) * 32), -127, 127).astype(np.int8)
    reps = (height // TILE + 2, width // TILE + 2)
    return np.tile(tile, reps)[: height + TILE, : width + TILE]
