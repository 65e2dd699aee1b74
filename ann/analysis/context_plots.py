"""Figures of the class context (ann.analysis.context), drawn with matplotlib (Agg) into PNG files.

Both figures draw `ContextResult.matrix`: the heat map all of it, the bar figure (issue 16) the
rows of a few query classes, so the two cannot disagree.
"""

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ann.analysis.context import ContextResult

DEFAULT_QUERY_CLASSES = ("sidewalk", "terrain", "wall")  # classes that only context separates (SynthCity)
LEGEND_COLUMNS = 6
MIN_TEXT_SHARE = 0.03  # bar segments below this get no text: it would not fit


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_matrix(results: Sequence[ContextResult], path: Path, title: str = "") -> None:
    """One heat map per block: rows the query pixel's class, columns the anchors' class, in %."""
    plt = pyplot()
    K = len(results[0].classes)
    side = 2.5 + 0.32 * K
    fig, axes = plt.subplots(1, len(results), figsize=((side + 1.2) * len(results), side), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        shown = ax.imshow(100 * result.matrix, cmap="viridis", vmin=0, vmax=100)  # NaN rows stay blank
        ax.set_xticks(range(K), result.classes, rotation=90, fontsize=7)
        ax.set_yticks(range(K), result.classes, fontsize=7)
        ax.set_xlabel("class of the anchors' pixels")
        ax.set_ylabel("class of the query pixel")
        for (y, x), share in np.ndenumerate(100 * result.matrix):
            if share >= 1:
                ax.text(x, y, f"{share:.0f}", ha="center", va="center", fontsize=5,
                        color="black" if share > 60 else "white")  # fmt: skip
        ax.set_title(f"{result.block.upper()}: % of attention mass ({result.images} images)", fontsize=9)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    save(fig, path, title)


def plot_landing(
    results: Sequence[ContextResult],
    path: Path,
    query_classes: Sequence[str] = DEFAULT_QUERY_CLASSES,
    palette: Sequence[Sequence[int]] | None = None,
    title: str = "",
) -> None:
    """Issue 16: for pixels of each query class, a stacked bar of the classes their attention lands
    on, labelled with the class's mean effective number of anchors against the uniform S."""
    plt = pyplot()
    colours = class_colours(results[0].classes, palette)
    present = sorted({k for r in results for name in query_classes for k in np.flatnonzero(r.row(name) > 0)})
    legend_inches = 0.2 * math.ceil(len(present) / LEGEND_COLUMNS) + 0.15
    height = 1.2 + 0.55 * len(query_classes) * len(results) + legend_inches
    fig, axes = plt.subplots(len(results), 1, figsize=(9, height), squeeze=False)
    for ax, result in zip(axes[:, 0], results, strict=True):
        rows = [result.row(name) for name in query_classes]  # raises for an unknown class name
        for y, row in enumerate(rows):
            draw_bar(ax, y, np.nan_to_num(row), result.classes, colours)
        ax.set_yticks(range(len(rows)), [bar_label(result, name) for name in query_classes], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"% of {result.block.upper()} attention mass, by the class of the anchors' pixels")
        S = np.exp(result.uniform_entropy)
        ax.set_title(f"{result.block.upper()} ({result.images} images, uniform: {S:.0f} anchors)", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[k]) for k in present]
    labels = [results[0].classes[k] for k in present]
    fig.legend(handles, labels, loc="lower center", ncol=LEGEND_COLUMNS, fontsize=7)
    save(fig, path, title, bottom=legend_inches / height)


def draw_bar(ax, y: int, row: np.ndarray, classes: list[str], colours: np.ndarray) -> None:
    left = 0.0
    for k in np.flatnonzero(row > 0):
        width = 100 * row[k]
        ax.barh(y, width, left=left, color=colours[k], edgecolor="white", linewidth=0.5)
        if row[k] >= MIN_TEXT_SHARE:
            ax.text(left + width / 2, y, classes[k], ha="center", va="center", fontsize=6,
                    color="white" if colours[k][:3].mean() < 0.5 else "black")  # fmt: skip
        left += width


def bar_label(result: ContextResult, name: str) -> str:
    k = result.classes.index(name)
    if name in result.absent:
        return f"{name} (no pixels)"
    return f"{name}\n{result.effective_anchors[k]:.1f} eff. anchors"


def class_colours(classes: list[str], palette: Sequence[Sequence[int]] | None) -> np.ndarray:
    """(K, 4) RGBA: the checkpoint's class colours, or tab20 without a palette."""
    plt = pyplot()
    if palette is not None and len(palette) == len(classes):
        rgb = np.asarray(palette, dtype=np.float64) / 255
        return np.concatenate([rgb, np.ones((len(classes), 1))], axis=1)
    return plt.get_cmap("tab20")(np.arange(len(classes)) % 20)


def save(fig, path: Path, title: str, bottom: float = 0.0) -> None:
    """`bottom`: the share of the figure's height kept free below the axes (for a figure legend)."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
