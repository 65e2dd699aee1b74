"""Pictures of one query pixel's attention over the S anchors (paper Sec. 3.2, Fig. 3), numpy/PIL.

One panel per pyramid level of the sampler: each anchor's bin painted with its weight. The app's
attention view and the report figures (ann.analysis.figures) draw the same pictures from here.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

from ann.analysis.explore import anchor_position
from ann.models.sampling import AnchorGeometry

PANEL_SIDE = 400  # longer side of each attention panel, pixels
CAPTION = 18  # caption strip height above each panel
# Okabe-Ito colours, one per pyramid level: distinguishable with every common colour-vision deficiency
LEVEL_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def lut(cmap: str) -> np.ndarray:
    return (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def blend(image: np.ndarray, colour: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    alpha = np.asarray(alpha, np.float32)
    if alpha.ndim == 2:
        alpha = alpha[..., None]
    return ((1 - alpha) * image + alpha * colour).round().astype(np.uint8)


def colorize(labels: np.ndarray, palette: list[list[int]]) -> np.ndarray:
    """Class ids -> palette colours; ids outside the palette (255 = ignore) are black."""
    table = np.zeros((256, 3), np.uint8)
    table[: len(palette)] = np.asarray(palette, np.uint8)[:256]
    return table[labels]


def panel_base(image: np.ndarray) -> np.ndarray:
    H, W = image.shape[:2]
    scale = PANEL_SIDE / max(H, W)
    size = (max(1, round(W * scale)), max(1, round(H * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def level_pictures(
    image: np.ndarray,
    weights: np.ndarray,
    geometry: AnchorGeometry,
    point: tuple[float, float] | None,
    cmap: str = "magma",
) -> list[tuple[np.ndarray, str, int]]:
    """(picture, caption, level) per pyramid level: anchor rectangles coloured by weight, normalised
    per level unless the level's maximum is below 1% of the overall one; `point` = (x, y) marked."""
    base = panel_base(image)
    h, w = base.shape[:2]
    H, W = image.shape[:2]
    boxes = geometry.to_pixels((h, w)).numpy()  # (S, 4) y0 x0 y1 x1 in panel pixels
    levels = geometry.level.numpy()
    colours = lut(cmap)
    pictures = []
    for level in np.unique(levels):
        index = np.flatnonzero(levels == level)
        top = float(weights[index].max())
        # per-level contrast, but a level holding almost no weight is not stretched to full colour
        scale = max(top, 0.01 * float(weights.max()), 1e-12)
        paint = np.full((h, w), np.nan, np.float32)
        for i in index[np.argsort(weights[index])]:  # strongest painted last where bins overlap
            y0, x0, y1, x1 = np.round(boxes[i]).astype(int)
            paint[y0:y1, x0:x1] = weights[i] / scale
        painted = np.isfinite(paint)
        panel = (base * 0.35).astype(np.uint8)
        tone = colours[np.clip(np.nan_to_num(paint) * 255, 0, 255).astype(np.uint8)]
        panel[painted] = blend(base[painted], tone[painted], 0.75)
        picture = Image.fromarray(panel)
        draw = ImageDraw.Draw(picture)
        for i in index:
            y0, x0, y1, x1 = boxes[i]
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 255, 255))
        if point is not None:
            px, py = point[0] * w / W, point[1] * h / H
            draw.ellipse([px - 5, py - 5, px + 5, py + 5], outline=(0, 255, 255), width=2)
            draw.line([px - 9, py, px + 9, py], fill=(0, 0, 0))
            draw.line([px, py - 9, px, py + 9], fill=(0, 0, 0))
        size = geometry.sizes[level] if geometry.sizes else 0
        caption = f"level {level}: {size}x{size}  mass {weights[index].sum():.3g}  max {top:.3g}"
        pictures.append((np.asarray(picture), caption, int(level)))
    return pictures


def level_panels(
    image: np.ndarray,
    weights: np.ndarray,
    geometry: AnchorGeometry,
    point: tuple[float, float] | None,
    cmap: str = "magma",
) -> tuple[np.ndarray, list[dict]]:
    """The level pictures side by side, captions above, in one picture; and the layout: for each
    panel {"level", "x0", "y0", "w", "h"} in composite pixels, so a click maps back to an anchor."""
    pictures = level_pictures(image, weights, geometry, point, cmap)
    h, w = pictures[0][0].shape[:2]
    layout = []
    return compose(pictures, w, h, layout), layout


def compose(panels: list, w: int, h: int, layout: list[dict], columns: int = 2) -> np.ndarray:
    rows = -(-len(panels) // columns)
    top = 24  # blank strip: the app's component label covers the top-left corner
    height = top + rows * (h + CAPTION) + (rows - 1) * 4
    canvas = Image.new("RGB", (columns * w + (columns - 1) * 4, height), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (picture, caption, level) in enumerate(panels):
        x0 = (k % columns) * (w + 4)
        y0 = top + (k // columns) * (h + CAPTION + 4)
        draw.text((x0 + 4, y0 + 3), caption, fill=(0, 0, 0))
        canvas.paste(Image.fromarray(np.asarray(picture)), (x0, y0 + CAPTION))
        layout.append({"level": level, "x0": x0, "y0": y0 + CAPTION, "w": w, "h": h})
    return np.asarray(canvas)


def anchor_label(geometry: AnchorGeometry, index: int) -> str:
    level, n, row, col, on_grid = anchor_position(geometry, index)
    if not geometry.sizes:
        return f"#{index} feature cell row {row}, col {col}"
    if not on_grid:
        return f"#{index} level {level} (random, {n * n} cells) feature cell row {row}, col {col}"
    return f"#{index} level {level} ({n}x{n}) row {row}, col {col}"
