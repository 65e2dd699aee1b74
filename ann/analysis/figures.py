"""Figures for a report: the app's pictures of a batch of images in one matplotlib figure file.

- The stage grid (paper Sec. 4.3, Fig. 7): per image, Stage1..Stage5 of the ImageNet backbone
  (upper row) and of the segmentation model (lower row), each row opening with the input image.
  The maps are those of the app's Stage features tab with "EfficientNet-Lite0 with ImageNet
  weights" as model B: ann.analysis.features.reduced_gallery over both models' named features, one range
  shared by every map of both (block outputs included, as in the tab), drawn with the colormap.
- The attention rows (Sec. 3.2): per image, the image with the query pixel marked, the prediction,
  and the panels the app draws for a click (ann.analysis.panels.level_pictures of
  Explorer.attention_at): the query's weight on every anchor, one panel per pyramid level.

The file's format follows its suffix (.png, .svg, .pdf).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from ann.analysis import features
from ann.analysis.context_plots import pyplot
from ann.analysis.explore import Explorer, attention_entropy
from ann.analysis.panels import colorize, level_pictures
from ann.models.network import ANN
from ann.models.sampling import AnchorGeometry

KINDS = ("stages", "attention", "both")
BLOCKS = ("context", "fusion")
FORMATS = (".png", ".svg", ".pdf")
MODEL, IMAGENET = "A", "B"  # the Stage features tab's gallery labels: this model, the one beside it
CELL_INCHES = 2.0  # width of one panel


@dataclass
class StageComparison:
    """Fig. 7 for one image: the tab's [0, 1] maps keyed (MODEL | IMAGENET, name), their ranges."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8
    units: dict[tuple[str, str], Tensor]  # (H', W') or (3, H', W') for PCA
    ranges: dict[tuple[str, str], tuple[float, float]]


@dataclass
class AttentionView:
    """One query pixel's attention, as the app's attention view shows it."""

    name: str
    image: np.ndarray
    labels: np.ndarray  # (H, W) the prediction
    block: str  # "apnb", "afnb", "nb" or "fnb"
    point: tuple[float, float]  # (x, y) image pixels
    cell: tuple[int, int]  # (row, col) of the query in the feature map
    weights: np.ndarray  # (S,)
    geometry: AnchorGeometry
    pictures: list[tuple[np.ndarray, str, int]]  # (picture, caption, level) per pyramid level


def attention_block(model: ANN, block: str) -> str:
    """The recorded attention of "context" (APNB/NB) or "fusion" (AFNB/FNB) in this model."""
    if block not in BLOCKS:
        raise ValueError(f"unknown block {block!r}; valid: {', '.join(BLOCKS)}")
    kinds = model.block_kinds()
    if not kinds:
        raise ValueError(
            f"this {model.config.fusion}/{model.config.context} model has no attention block "
            "(baseline or common fusion): no attention figure; use --kind stages"
        )
    if block not in kinds:
        raise ValueError(f"this model has no {block} attention block; it has {', '.join(kinds)}")
    return kinds[block]


def stage_comparison(
    explorer: Explorer, name: str, image: np.ndarray, imagenet: tuple, reduction: str = "mean"
) -> StageComparison:
    """`imagenet` = (backbone, normalization) of ann.analysis.features.imagenet_backbone."""
    result = explorer.run(image)
    own = features.named_features(explorer.stages, result.head, explorer.model.config)
    other = features.imagenet_features(image, *imagenet)
    groups = {MODEL: own, IMAGENET: {k: v.detach() for k, v in other.items()}}
    ranges, units = features.reduced_gallery(groups, reduction, shared=True)
    return StageComparison(name, image, units, ranges)


def attention_view(
    explorer: Explorer, name: str, image: np.ndarray, point: tuple[float, float] | None, block: str
) -> AttentionView:
    """`point` = (x, y), default the image centre; a point outside the image names the image."""
    key = attention_block(explorer.model, block)
    H, W = image.shape[:2]
    x, y = point if point is not None else ((W - 1) // 2, (H - 1) // 2)
    if not (0 <= x <= W - 1 and 0 <= y <= H - 1):
        raise ValueError(
            f"point (x={x}, y={y}) lies outside {name} ({W}x{H}: x in 0..{W - 1}, y in 0..{H - 1})"
        )
    result = explorer.run(image)
    weights, geometry = explorer.attention_at(float(x), float(y), key)
    cell = explorer.feature_cell(float(x), float(y), key)
    pictures = level_pictures(image, weights, geometry, (float(x), float(y)))
    return AttentionView(name, image, result.labels, key, (x, y), cell, weights, geometry, pictures)


def report_figure(
    model: ANN,
    images: list[tuple[str, np.ndarray]],
    path: Path,
    kind: str = "both",
    points: list[tuple[float, float]] | None = None,
    block: str = "context",
    reduction: str = "mean",
    imagenet: tuple | None = None,
    title: str = "",
) -> tuple[list[StageComparison], list[AttentionView]]:
    """Compute the asked pictures of every (name, image) and write them to `path` as one figure.

    `points`: one (x, y) for every image, or one per image; None: each image's centre. `imagenet`:
    (backbone, normalization), default ann.analysis.features.imagenet_backbone() at the model's output
    stride (loaded only for stages).
    """
    check_request(model, len(images), kind, points, block, Path(path))
    explorer = Explorer(model)
    stages, views = [], []
    if kind in ("stages", "both"):
        imagenet = imagenet or features.imagenet_backbone(model.config.output_stride)
        stages = [stage_comparison(explorer, name, image, imagenet, reduction) for name, image in images]
    if kind in ("attention", "both"):
        chosen = points or [None]
        chosen = chosen * len(images) if len(chosen) == 1 else chosen
        views = [
            attention_view(explorer, name, image, point, block)
            for (name, image), point in zip(images, chosen, strict=True)
        ]
    figure = draw(stages, views, explorer.meta.palette, title)
    save(figure, Path(path))
    return stages, views


def check_request(model: ANN, count: int, kind: str, points, block: str, path: Path) -> None:
    """Refuse what cannot be drawn before any image is run."""
    if kind not in KINDS:
        raise ValueError(f"unknown figure kind {kind!r}; valid: {', '.join(KINDS)}")
    if count == 0:
        raise ValueError("no image to draw")
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path.name}: the figure's format follows its suffix, one of {', '.join(FORMATS)}")
    if kind != "stages":
        attention_block(model, block)
    if points and len(points) not in (1, count):
        raise ValueError(f"{len(points)} points for {count} images: give one point for all, or one per image")


def draw(
    stages: list[StageComparison],
    views: list[AttentionView],
    palette=None,
    title: str = "",
    cmap: str = "viridis",
):
    """The matplotlib figure: per image its two stage rows, then its attention row."""
    plt = pyplot()
    names = list(dict.fromkeys([s.name for s in stages] + [v.name for v in views]))
    rows_per_image = 2 * bool(stages) + bool(views)
    columns = max([1 + len(features.STAGES)] + [2 + len(v.pictures) for v in views])
    H, W = (stages or views)[0].image.shape[:2]
    cell = (CELL_INCHES, CELL_INCHES * H / W + 0.35)  # room for a panel's title
    rows = len(names) * rows_per_image
    fig, axes = plt.subplots(rows, columns, figsize=(cell[0] * columns, cell[1] * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    used = set()
    for i, name in enumerate(names):
        row = i * rows_per_image
        for comparison in (s for s in stages if s.name == name):
            for r, label in enumerate((IMAGENET, MODEL)):  # ImageNet on top, as in the paper
                used |= draw_stage_row(axes[row + r], comparison, label, cmap)
            row += 2
        for view in (v for v in views if v.name == name):
            used |= draw_attention_row(axes[row], view, palette)
    for ax in axes.flat:
        if ax not in used:
            ax.remove()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def draw_stage_row(axes, comparison: StageComparison, label: str, cmap: str) -> set:
    who = "ImageNet EfficientNet-Lite0" if label == IMAGENET else "segmentation model"
    show(axes[0], comparison.image, f"{comparison.name}\n{who}")
    for ax, stage in zip(axes[1:], features.STAGES, strict=False):
        unit = comparison.units[label, stage].float().cpu().numpy()
        if unit.ndim == 3:  # PCA: the three components as RGB
            show(ax, unit.transpose(1, 2, 0), stage)
        else:
            show(ax, unit, stage, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    return set(axes[: 1 + len(features.STAGES)])


def draw_attention_row(axes, view: AttentionView, palette) -> set:
    x, y = view.point
    entropy, effective = attention_entropy(view.weights)
    show(axes[0], view.image, f"{view.name}\n(x={x:g}, y={y:g}), cell {view.cell}")
    mark(axes[0], x, y)
    colours = colorize(view.labels, palette) if palette else view.labels
    show(
        axes[1], colours, f"prediction\n{view.block.upper()}: {effective:.1f} of {len(view.weights)} anchors"
    )
    mark(axes[1], x, y)
    for ax, (picture, caption, _) in zip(axes[2:], view.pictures, strict=False):
        show(ax, picture, caption.replace("  mass", "\nmass"))
    return set(axes[: 2 + len(view.pictures)])


def show(ax, picture: np.ndarray, caption: str, **options) -> None:
    ax.imshow(picture, **options)
    ax.set_title(caption, fontsize=7)
    ax.set_axis_off()


def mark(ax, x: float, y: float) -> None:
    ax.plot(
        [x], [y], marker="o", markersize=9, markerfacecolor="none", markeredgecolor="cyan", markeredgewidth=2
    )
    ax.plot([x], [y], marker="+", markersize=12, color="black")


def save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    pyplot().close(fig)
