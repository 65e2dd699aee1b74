"""The analysis tabs (stage features, explanations, efficiency; docs/app_analysis.md) and the
image helpers they share. Maps arrive from ann.features already scaled to [0, 1]; here they only
get a colourblind-safe colormap and a display size."""

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

COLORMAPS = ("viridis", "cividis", "magma")  # perceptually uniform and colourblind-safe
DISPLAY_SIDE = 320  # longer side of gallery images, pixels


def as_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def colorize(unit, cmap: str = "viridis") -> np.ndarray:
    """(H, W) in [0, 1] -> uint8 (H, W, 3) with a colormap; (3, H, W) in [0, 1] -> uint8 RGB."""
    if cmap not in COLORMAPS:
        raise ValueError(f"unknown colormap {cmap!r}; valid: {', '.join(COLORMAPS)}")
    values = np.clip(as_numpy(unit), 0, 1)
    if values.ndim == 3:
        return (values.transpose(1, 2, 0) * 255).round().astype(np.uint8)
    return (colormaps[cmap](values)[..., :3] * 255).round().astype(np.uint8)


def display_size(image_hw: tuple[int, int], side: int = DISPLAY_SIDE) -> tuple[int, int]:
    """(H, W) with the image's aspect ratio and the longer side `side`."""
    H, W = image_hw
    scale = side / max(H, W)
    return max(1, round(H * scale)), max(1, round(W * scale))


def resize(rgb: np.ndarray, size_hw: tuple[int, int], nearest: bool = True) -> np.ndarray:
    """Feature cells stay visible as blocks (nearest); images resize smoothly."""
    method = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize((size_hw[1], size_hw[0]), method))


def overlay(image: np.ndarray, heat_rgb: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """A heat map blended over a (greyed) image of the same size."""
    grey = image.astype(np.float32).mean(axis=2, keepdims=True)
    mixed = (1 - alpha) * grey + alpha * heat_rgb.astype(np.float32)
    return mixed.clip(0, 255).astype(np.uint8)


def mark_point(rgb: np.ndarray, point_hw: tuple[float, float], radius: int = 4) -> np.ndarray:
    """A white cross with a black border at (row, col), visible on any colormap."""
    out = rgb.copy()
    H, W = out.shape[:2]
    y, x = round(point_hw[0]), round(point_hw[1])
    for colour, width in (((0, 0, 0), 1), ((255, 255, 255), 0)):
        for d in range(-radius - width, radius + width + 1):
            for t in range(-width, width + 1):
                for yy, xx in ((y + d, x + t), (y + t, x + d)):
                    if 0 <= yy < H and 0 <= xx < W:
                        out[yy, xx] = colour
    return out
