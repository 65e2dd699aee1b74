"""Effective receptive field (Luo et al., NeurIPS 2016): how far from a pixel the input still moves
that pixel's prediction. The number to hold against the image size when a context block is
compared with a plain dilated FCN (issue: does the FCN already see the whole image?).

For a pixel p (default the image centre) the field of one image is |d logit_c(p) / d input|, summed
over the RGB channels, c the class the model predicts at p. Fields are averaged over images and
normalised to sum 1. `radius(share)` is the half-side of the smallest square around p that holds
that share of the mass, in input pixels; `reach()` the one that holds all of it. A dilated
ResNet-18's theoretical field nearly covers a 512x256 image, yet its effective one is far smaller;
a non-local block lets any pixel move p.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ann.inference import preprocess

SHARES = (0.5, 0.9, 0.95)


@dataclass
class ReceptiveField:
    mass: np.ndarray  # (H, W) float64, sums to 1
    point: tuple[int, int]  # (y, x) of the pixel whose prediction is differentiated
    images: int

    def ring_mass(self) -> np.ndarray:
        """Mass at each Chebyshev distance d = max(|y - py|, |x - px|) from the point."""
        height, width = self.mass.shape
        ys, xs = np.abs(np.arange(height) - self.point[0]), np.abs(np.arange(width) - self.point[1])
        distance = np.maximum(ys[:, None], xs[None, :])
        return np.bincount(distance.ravel(), weights=self.mass.ravel())

    def radius(self, share: float) -> int:
        """Half-side of the smallest square around the point holding `share` of the mass."""
        return int(np.searchsorted(np.cumsum(self.ring_mass()), share - 1e-12))

    def reach(self) -> int:
        """Half-side of the smallest square around the point holding all of the non-zero mass: a
        convolutional network's theoretical field (clipped by the image), any distance for a
        global block. Exact zeros: outside its field a conv net's gradient is exactly 0."""
        return int(np.flatnonzero(self.ring_mass() > 0).max())

    def summary(self) -> dict:
        height, width = self.mass.shape
        radii = {f"radius_{round(100 * s)}": self.radius(s) for s in SHARES}
        return {"images": self.images, "size_hw": [height, width], "point_yx": list(self.point),
                **radii, "reach": self.reach()}  # fmt: skip


def gradient_field(
    model: torch.nn.Module, image: np.ndarray, point: tuple[int, int], normalization: dict
) -> np.ndarray:
    """|d logit_c(point) / d image| summed over RGB for one image, c the predicted class there."""
    x = preprocess(image, normalization).requires_grad_(True)
    logits = model(x)
    y, x_ = point
    logit = logits[0, :, y, x_]
    (grad,) = torch.autograd.grad(logit[logit.argmax()], x)
    return grad[0].abs().sum(0).double().numpy()


def effective_receptive_field(
    model: torch.nn.Module, images: Iterable[np.ndarray], point: tuple[int, int] | None = None
) -> ReceptiveField:
    """The mean normalised field of `model` (eval mode, fp32) over `images` of one size."""
    model.eval()
    total, count, where = None, 0, point
    for image in images:
        where = where or (image.shape[0] // 2, image.shape[1] // 2)
        field = gradient_field(model, image, where, model.meta.normalization)
        if total is not None and field.shape != total.shape:
            raise ValueError(f"images of one size only: {field.shape} after {total.shape}")
        total = field / max(field.sum(), 1e-30) + (0 if total is None else total)
        count += 1
    if total is None:
        raise ValueError("no images")
    return ReceptiveField(total / count, where, count)


def plot_fields(fields: dict[str, ReceptiveField], path: Path, share: float = 0.9) -> None:
    """The fields side by side on one log colour scale, each with its `share` square drawn."""
    from matplotlib.colors import LogNorm

    from ann.analysis.context_plots import pyplot

    plt = pyplot()
    height, width = next(iter(fields.values())).mass.shape
    # a row per field: the image at about 5 in wide plus its two title lines, so titles never
    # run into the image above
    row = 0.6 + 5.0 * height / width
    fig, axes = plt.subplots(len(fields), 1, figsize=(7, row * len(fields)), squeeze=False)
    low = min(float(f.mass[f.mass > 0].min()) for f in fields.values())
    high = max(float(f.mass.max()) for f in fields.values())
    for ax, (name, field) in zip(axes[:, 0], fields.items(), strict=True):
        shown = ax.imshow(
            np.maximum(field.mass, low), norm=LogNorm(max(low, high * 1e-6), high), cmap="magma"
        )
        r, (y, x) = field.radius(share), field.point
        ax.add_patch(plt.Rectangle((x - r, y - r), 2 * r, 2 * r, fill=False, color="cyan", lw=1.2))
        within = f"{round(100 * share)} % of the mass within {r} px of the point, {field.images} images"
        ax.set_title(f"{name}\n{within}", fontsize=9)
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes[:, 0].tolist(), shrink=0.8, label="share of |gradient| per pixel (log)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
