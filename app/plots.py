"""Pictures and charts of the app, drawn with numpy/PIL (fast, per click) and plotly.

Heat maps use colourblind-safe perceptual colormaps (viridis, cividis, magma); classes use the
checkpoint's palette (Cityscapes for our models). Nothing here runs the model.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from matplotlib import colormaps
from PIL import Image, ImageDraw

from ann.explore import anchor_position
from ann.models.sampling import AnchorGeometry

# Okabe-Ito colours: distinguishable with every common colour-vision deficiency
LEVEL_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
WRONG = np.array([213, 94, 0], np.uint8)  # vermillion
CHANGED = np.array([253, 231, 37], np.uint8)  # viridis yellow
PANEL_SIDE = 400  # longer side of each attention panel, pixels
CAPTION = 18  # caption strip height above each panel


def lut(cmap: str) -> np.ndarray:
    return (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def heatmap(values: np.ndarray, cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None):
    """(H, W) floats -> uint8 RGB through a colormap; NaN shows as mid grey."""
    values = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(values)
    vmin = float(values[finite].min()) if vmin is None and finite.any() else (vmin or 0.0)
    vmax = float(values[finite].max()) if vmax is None and finite.any() else (vmax or 1.0)
    scaled = (np.nan_to_num(values, nan=vmin) - vmin) / max(vmax - vmin, 1e-12)
    out = lut(cmap)[np.clip(scaled * 255, 0, 255).astype(np.uint8)]
    out[~finite] = 128
    return out


def colorize(labels: np.ndarray, palette: list[list[int]]) -> np.ndarray:
    """Class ids -> palette colours; ids outside the palette (255 = ignore) are black."""
    table = np.zeros((256, 3), np.uint8)
    table[: len(palette)] = np.asarray(palette, np.uint8)[:256]
    return table[labels]


def boundaries(labels: np.ndarray, width: int = 2) -> np.ndarray:
    """(H, W) bool: pixels next to a different class."""
    edge = np.zeros(labels.shape, bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[1:] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, :-1] != labels[:, 1:]
    for _ in range(width - 1):
        grown = edge.copy()
        grown[:-1] |= edge[1:]
        grown[1:] |= edge[:-1]
        grown[:, :-1] |= edge[:, 1:]
        grown[:, 1:] |= edge[:, :-1]
        edge = grown
    return edge


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    palette: list[list[int]],
    opacity: float = 0.5,
    outline: bool = False,
    hidden: set[int] | frozenset = frozenset(),
) -> np.ndarray:
    """The image with class colours blended in (or class outlines drawn); hidden classes left out."""
    colours = colorize(labels, palette)
    mask = boundaries(labels) if outline else np.ones(labels.shape, bool)
    if hidden:
        mask &= ~np.isin(labels, list(hidden))
    alpha = 1.0 if outline else float(opacity)
    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * colours[mask]
    return out.round().astype(np.uint8)


def blend(image: np.ndarray, colour: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    alpha = np.asarray(alpha, np.float32)
    if alpha.ndim == 2:
        alpha = alpha[..., None]
    return ((1 - alpha) * image + alpha * colour).round().astype(np.uint8)


def error_picture(image: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """Wrong pixels in vermillion over the dimmed image; ignored pixels black."""
    out = (image * 0.45).astype(np.uint8)
    out[errors == 1] = WRONG
    out[errors == 2] = 0
    return out


def changed_picture(image: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    out = (image * 0.45).astype(np.uint8)
    out[before != after] = CHANGED
    return out


def legend_html(classes: list[str], palette: list[list[int]], shares: np.ndarray, hidden=()) -> str:
    """Class swatches with pixel share, largest first; classes with no pixels are left out."""
    rows = []
    for k in np.argsort(-shares):
        if shares[k] <= 0:
            continue
        r, g, b = palette[k]
        style = "opacity:0.35;" if k in hidden else ""
        rows.append(
            f'<div class="legend-row" style="{style}"><span class="swatch" '
            f'style="display:inline-block;width:14px;height:14px;background:rgb({r},{g},{b});'
            f'border:1px solid #444;margin-right:6px;vertical-align:middle"></span>'
            f"{classes[k]} <b>{100 * shares[k]:.1f}%</b></div>"
        )
    return '<div id="legend-rows">' + "".join(rows) + "</div>"


# ---- attention ------------------------------------------------------------------------------


def panel_base(image: np.ndarray) -> np.ndarray:
    H, W = image.shape[:2]
    scale = PANEL_SIDE / max(H, W)
    size = (max(1, round(W * scale)), max(1, round(H * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def level_panels(
    image: np.ndarray,
    weights: np.ndarray,
    geometry: AnchorGeometry,
    point: tuple[float, float] | None,
    cmap: str = "magma",
) -> tuple[np.ndarray, list[dict]]:
    """One panel per pyramid level, anchor rectangles coloured by weight (normalised per level,
    unless the level's maximum is below 1% of the overall one).

    Returns the composite picture (panels side by side, captions above) and the layout: for each
    panel {"level", "x0", "y0", "w", "h"} in composite pixels, so a click maps back to an anchor.
    """
    base = panel_base(image)
    h, w = base.shape[:2]
    H, W = image.shape[:2]
    boxes = geometry.to_pixels((h, w)).numpy()  # (S, 4) y0 x0 y1 x1 in panel pixels
    levels = geometry.level.numpy()
    colours = lut(cmap)
    panels, layout = [], []
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
        panels.append((picture, caption, int(level)))
    return compose(panels, w, h, layout), layout


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
        canvas.paste(picture, (x0, y0 + CAPTION))
        layout.append({"level": level, "x0": x0, "y0": y0 + CAPTION, "w": w, "h": h})
    return np.asarray(canvas)


def anchor_picture(image: np.ndarray, amap: np.ndarray, box: np.ndarray | None, cmap: str = "viridis"):
    """Which pixels attend to one anchor: heat map over the image, the anchor's bin outlined."""
    heat = heatmap(amap, cmap)
    out = Image.fromarray(blend(image, heat, 0.65))
    if box is not None:
        y0, x0, y1, x1 = box
        ImageDraw.Draw(out).rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 255, 255), width=3)
    return np.asarray(out)


def anchor_label(geometry: AnchorGeometry, index: int) -> str:
    level, n, row, col, on_grid = anchor_position(geometry, index)
    if not geometry.sizes:
        return f"#{index} feature cell row {row}, col {col}"
    if not on_grid:
        return f"#{index} level {level} (random, {n * n} cells) feature cell row {row}, col {col}"
    return f"#{index} level {level} ({n}x{n}) row {row}, col {col}"


def weights_chart(weights: np.ndarray, geometry: AnchorGeometry, selected: int | None = None) -> go.Figure:
    """The S weights sorted, coloured by level; hover names level and cell."""
    order = np.argsort(-weights)
    levels = geometry.level.numpy()
    labels = [anchor_label(geometry, int(i)) for i in order]
    colours = [LEVEL_COLOURS[levels[i] % len(LEVEL_COLOURS)] for i in order]
    line = [3 if i == selected else 0 for i in order]
    figure = go.Figure(
        go.Bar(
            x=list(range(1, len(order) + 1)),
            y=weights[order],
            marker={"color": colours, "line": {"width": line, "color": "#000000"}},
            hovertext=labels,
            hovertemplate="%{hovertext}<br>weight %{y:.4f}<br>rank %{x}<extra></extra>",
            showlegend=False,
        )
    )
    for level, n in enumerate(geometry.sizes):  # legend only: one marker per level, no data
        colour = LEVEL_COLOURS[level % len(LEVEL_COLOURS)]
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"{n}x{n}",
                                    marker={"color": colour, "symbol": "square", "size": 10}))  # fmt: skip
    figure.update_layout(  # the legend under the axis: above the plot it covered the tallest bars
        height=300,
        margin={"l": 40, "r": 10, "t": 30, "b": 30},
        legend={"title": {"text": "level"}, "orientation": "h", "yanchor": "top", "y": -0.3, "x": 0},
        title={"text": f"{len(order)} anchor weights, sorted (colour = pyramid level)", "font": {"size": 13}},
        xaxis_title="rank",
        yaxis_title="weight",
    )
    return figure


def area_chart(classes: list[str], palette: list[list[int]], before: np.ndarray, after: np.ndarray):
    """Per-class change of pixel share, percentage points, for classes present before or after."""
    keep = np.flatnonzero((before > 0) | (after > 0))
    delta = 100 * (after[keep] - before[keep])
    figure = go.Figure(
        go.Bar(
            x=[classes[k] for k in keep],
            y=delta,
            marker={
                "color": [f"rgb{tuple(palette[k])}" for k in keep],
                "line": {"width": 1, "color": "#333"},
            },
            hovertemplate="%{x}: %{y:+.2f} points<extra></extra>",
        )
    )
    figure.update_layout(
        height=260,
        margin={"l": 40, "r": 10, "t": 30, "b": 60},
        title={"text": "change of pixel share per class (points)", "font": {"size": 13}},
    )
    return figure


CLICK_MIN_SIDE = 512  # a smaller image is shown enlarged, so that each of its pixels can be clicked


def click_scale(image_hw) -> int:
    """Integer enlargement of the clickable picture of an image of this (H, W)."""
    return max(1, -(-CLICK_MIN_SIDE // max(int(image_hw[0]), int(image_hw[1]))))


def clickable(picture: np.ndarray) -> np.ndarray:
    """The picture enlarged by `click_scale` (nearest: each image pixel a k x k block)."""
    k = click_scale(picture.shape[:2])
    return picture if k == 1 else picture.repeat(k, axis=0).repeat(k, axis=1)


def clicked_pixel(index, image_hw) -> tuple[int, int]:
    """A click on the clickable picture (its own pixel index) -> the image pixel (x, y) under it."""
    k = click_scale(image_hw)
    return int(index[0]) // k, int(index[1]) // k
