"""Figures of APNB against NB (ann.analysis.nb_compare), drawn with matplotlib (Agg) into PNG files.

One image: the image, each block's cosine-similarity map and the pixels whose class changes. A
split: the mIoU of each sampling as bars, NB's as a reference line.
"""

from pathlib import Path

import numpy as np

from ann.analysis.context_plots import pyplot, save
from ann.analysis.nb_compare import NB_OF, ImageComparison, SplitComparison
from ann.models.sampling import describe

CHANGED_RGB = np.array([230, 30, 30])  # changed pixels, drawn on a dimmed grey copy of the image


def changed_picture(image: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the image in dim grey, the changed pixels in red."""
    grey = image.astype(np.float64).mean(-1, keepdims=True) * 0.6
    picture = np.repeat(grey, 3, axis=-1)
    picture[changed] = CHANGED_RGB
    return picture.round().astype(np.uint8)


def plot_image(comparison: ImageComparison, image: np.ndarray, path: Path, title: str = "") -> None:
    """Image | cosine map of each block (its own range up to 1, which a colour bar gives) | changes."""
    plt = pyplot()
    blocks = list(comparison.blocks.values())
    H, W = image.shape[:2]
    panels = 2 + len(blocks)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels * W / max(H, W) + 1, 3.2 * H / max(H, W) + 0.8))
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=9)
    for ax, block in zip(axes[1:-1], blocks, strict=True):
        # cosines of trained blocks sit close to 1: a range of [-1, 1] would show one colour; at
        # least 0.001 wide, so that the colour bar's four decimals still tell its ticks apart
        low = min(float(block.cosine_image.min()), 0.999)
        shown = ax.imshow(block.cosine_image, cmap="viridis", vmin=low, vmax=1)
        bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, format="%.4f")
        bar.ax.tick_params(labelsize=7)
        nb = NB_OF[block.kind].upper()
        ax.set_title(f"cos({block.kind.upper()}, {nb}) of O, mean {block.cosine.mean():.4f}", fontsize=8)
    axes[-1].imshow(changed_picture(image, comparison.changed))
    axes[-1].set_title(f"class changed: {100 * comparison.changed_share:.2f}% of pixels", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    save(fig, path, title)


def plot_split(comparison: SplitComparison, path: Path, title: str = "") -> None:
    """mIoU of each sampling as a bar (the trained one darker), NB at inference as a dashed line;
    each bar is labelled with its mean cosine to NB's context vectors, per block."""
    plt = pyplot()
    rows = comparison.rows[:-1]
    fig, ax = plt.subplots(figsize=(2 + 1.1 * len(rows), 4.2))
    heights = [100 * row.miou for row in rows]
    colours = ["#35608d" if row.trained else "#8fbcd4" for row in rows]
    ax.bar(range(len(rows)), heights, color=colours)
    nb = 100 * comparison.nb.miou
    ax.axhline(nb, color="black", linestyle="--", linewidth=1, label=f"NB at inference: {nb:.2f}")
    ax.legend(loc="upper right", fontsize=8)
    for x, row in enumerate(rows):
        cosine = "\n".join(f"{kind} {value:.3f}" for kind, value in row.cosine.items())
        ax.text(x, heights[x], cosine, ha="center", va="bottom", fontsize=6)
    names = [
        describe(row.sampling).replace(" (S", "\n(S") + (" trained" if row.trained else "") for row in rows
    ]
    ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("mIoU (%)")
    ax.set_ylim(0, max([*heights, nb, 1]) * 1.3)
    ax.set_title(f"{comparison.images} images; above each bar: mean cosine of O to NB's", fontsize=9)
    save(fig, path, title)
