"""Vector (SVG) figures of one query pixel's attention over the S anchors (paper Sec. 3.2, Fig. 3):
the level panels of ann.analysis.panels and the sorted weights of the app's chart, with matplotlib.

Text stays text in the SVG (svg.fonttype "none"): captions can be searched and edited, and the
file is a few kB instead of a path per glyph. Each panel and each bar carries an id (`gid`):
`level-<l>` and `anchor-<i>`, i the anchor's index among the S, so a figure can be read back.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ann.analysis.context_plots import pyplot
from ann.analysis.panels import LEVEL_COLOURS, anchor_label
from ann.models.sampling import AnchorGeometry

SVG_OPTIONS = {"svg.fonttype": "none", "svg.hashsalt": "ann"}  # real <text>; the same ids on every run


@contextmanager
def svg_options():
    import matplotlib

    with matplotlib.rc_context(SVG_OPTIONS):
        yield


def plot_panels(pictures: list[tuple[np.ndarray, str, int]], path: Path, columns: int = 2) -> None:
    """The level pictures (ann.analysis.panels.level_pictures) in a grid, each under its caption."""
    plt = pyplot()
    rows = -(-len(pictures) // columns)
    h, w = pictures[0][0].shape[:2]
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows * h / w + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (picture, caption, level) in zip(axes.flat, pictures, strict=False):
        ax.imshow(picture, interpolation="nearest").set_gid(f"level-{level}")
        ax.set_title(caption, fontsize=8)
    save(fig, path)


def plot_weights(
    weights: np.ndarray, geometry: AnchorGeometry, path: Path, selected: int | None = None
) -> None:
    """The S weights sorted, coloured by pyramid level (app.plots.weights_chart in matplotlib)."""
    plt = pyplot()
    order = np.argsort(-weights)
    levels = geometry.level.numpy()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    bars = ax.bar(
        np.arange(1, len(order) + 1),
        weights[order],
        width=0.9,
        color=[LEVEL_COLOURS[levels[i] % len(LEVEL_COLOURS)] for i in order],
        edgecolor=["black" if i == selected else "none" for i in order],
    )
    for bar, i in zip(bars, order, strict=True):
        bar.set_gid(f"anchor-{i}")
    if geometry.sizes:
        handles = [plt.Rectangle((0, 0), 1, 1, color=LEVEL_COLOURS[level % len(LEVEL_COLOURS)])
                   for level in range(len(geometry.sizes))]  # fmt: skip
        labels = [f"{n}x{n}" for n in geometry.sizes]
        ax.legend(handles, labels, title="level", ncol=len(labels), fontsize=7, title_fontsize=7)
    ax.set_xlim(0.4, len(order) + 0.6)
    ax.set_xlabel("rank")
    ax.set_ylabel("weight")
    top = int(order[0])
    ax.set_title(
        f"{len(order)} anchor weights, sorted (colour = pyramid level); strongest: "
        f"{anchor_label(geometry, top)} ({weights[top]:.4f})",
        fontsize=9,
    )
    save(fig, path)


def save(fig, path: Path) -> None:
    """As an SVG with real text (`svg_options`), whatever the suffix."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with svg_options():
        fig.savefig(path, format="svg")
    pyplot().close(fig)
