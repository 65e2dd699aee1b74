"""Pictures and charts of the app (every tab's), drawn with numpy/PIL (fast, per click) and plotly.

Heat maps use colourblind-safe perceptual colormaps (viridis, cividis, magma); classes use the
checkpoint's palette (Cityscapes for our models). Nothing here runs the model: `render` draws the
result a session holds.
"""

from __future__ import annotations

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw

from ann.analysis.explore import class_shares

# the attention pictures live in the library: the report figures (ann.analysis.figures) draw them too
from ann.analysis.panels import LEVEL_COLOURS, anchor_label, blend, colorize, lut
from ann.analysis.panels import level_panels as level_panels
from ann.models.sampling import AnchorGeometry
from app.session import Session, require

WRONG = np.array([213, 94, 0], np.uint8)  # vermillion
CHANGED = np.array([253, 231, 37], np.uint8)  # viridis yellow
COLORMAPS = ("viridis", "cividis", "magma")  # perceptually uniform and colourblind-safe
DISPLAY_SIDE = 320  # longer side of gallery images, pixels


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


def anchor_picture(image: np.ndarray, amap: np.ndarray, box: np.ndarray | None, cmap: str = "viridis"):
    """Which pixels attend to one anchor: heat map over the image, the anchor's bin outlined."""
    heat = heatmap(amap, cmap)
    out = Image.fromarray(blend(image, heat, 0.65))
    if box is not None:
        y0, x0, y1, x1 = box
        ImageDraw.Draw(out).rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 255, 255), width=3)
    return np.asarray(out)


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


# ---- the analysis tabs' galleries: maps arrive from ann.analysis.features scaled to [0, 1] ----


def as_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def unit_colors(unit, cmap: str = "viridis") -> np.ndarray:
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


def over_grey(image: np.ndarray, heat_rgb: np.ndarray, alpha: float = 0.55) -> np.ndarray:
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


def render(session: Session | None, opacity: float, outline: bool, hidden: list[str]):
    """The overlay and legend of the current result, without running the model."""
    session = require(session)
    meta, result = session.explorer.meta, session.result
    hidden_ids = {meta.classes.index(name) for name in hidden or [] if name in meta.classes}
    picture = overlay(result.image, result.labels, meta.palette, opacity, outline, hidden_ids)
    shares = class_shares(result.labels, len(meta.classes))
    return picture, legend_html(meta.classes, meta.palette, shares, hidden_ids)


def shown_image(label: str, elem_id: str, **options) -> gr.Image:
    """A picture the app draws (not an input): read-only and sent as JPEG, because PNG encoding
    costs up to 250 ms per image on 2 cores (docs/app.md)."""
    return gr.Image(label=label, interactive=False, format="jpeg", elem_id=elem_id, **options)
