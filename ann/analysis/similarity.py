"""How alike two networks' stage features are, stage by stage: linear CKA (paper Fig. 7 in numbers).

The paper's Fig. 7 shows that segmentation training leaves the first three stages of an ImageNet
backbone much as they were and changes the last two ("generic" against "task-specific"
features), the reason it fuses Stage4 into Stage5 only (Table 9). The stage pictures
(features.py, figures.py) show it to the eye; this measures it: the linear centred kernel
alignment (CKA, Kornblith et al., ICML 2019) of the two networks' features at the same image
positions, pooled over a set of images. CKA is 1 for features that are a rotation and uniform
scaling of each other and near 0 for unrelated ones, and compares maps of different widths.

Positions pair up by place: where the two maps of a stage differ in size (another output stride,
another backbone), the larger is average-pooled to the smaller.
"""

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ann.analysis.features import backbone_stages, imagenet_backbone, named_features
from ann.checkpoint import load
from ann.inference import preprocess
from ann.models.backbones import build_backbone
from ann.models.network import ANN

OTHERS = ("imagenet", "initial", "untrained")  # besides a checkpoint file
UNTRAINED_SEED = 1234  # not a trainer's default seed: `untrained` is not any run's starting point


class Alignment:
    """Running sums over positions of two feature sets, (N, p) and (N, q), for their linear CKA;
    sums in float64, so millions of positions add up without loss."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: tuple[Tensor, ...] | None = None  # sum x, sum y, x'x, y'y, y'x

    def add(self, x: Tensor, y: Tensor) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"CKA pairs positions: {x.shape[0]} rows against {y.shape[0]}")
        x, y = x.double(), y.double()
        terms = (x.sum(0), y.sum(0), x.T @ x, y.T @ y, y.T @ x)
        self.sums = (
            terms if self.sums is None else tuple(a + b for a, b in zip(self.sums, terms, strict=True))
        )
        self.count += x.shape[0]

    def cka(self) -> float:
        """||Yc' Xc||^2 / (||Xc' Xc|| ||Yc' Yc||), Frobenius norms of the centred cross-products."""
        if self.sums is None or self.count < 2:
            raise ValueError("CKA needs at least two positions")
        sx, sy, xx, yy, yx = self.sums
        n = self.count
        xx = xx - torch.outer(sx, sx) / n
        yy = yy - torch.outer(sy, sy) / n
        yx = yx - torch.outer(sy, sx) / n
        norm = torch.sqrt((xx**2).sum() * (yy**2).sum())
        return float((yx**2).sum() / norm) if norm > 0 else 0.0  # a constant map aligns with nothing


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA of (N, p) and (N, q) features of the same N positions."""
    alignment = Alignment()
    alignment.add(x, y)
    return alignment.cka()


def common_size(a: Tensor, b: Tensor) -> tuple[int, int]:
    return tuple(min(s, t) for s, t in zip(a.shape[-2:], b.shape[-2:], strict=True))


def paired_positions(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """(1, C, H, W) maps of one image -> (N, C) rows of the same N places, the larger map
    average-pooled to the smaller one's size."""
    size = common_size(a, b)
    rows = [F.adaptive_avg_pool2d(m.detach().float(), size) if m.shape[-2:] != size else m for m in (a, b)]
    return tuple(m.reshape(m.shape[-3], -1).T for m in rows)


def stage_alignment(pairs: Iterable[tuple[dict[str, Tensor], dict[str, Tensor]]]) -> dict[str, dict]:
    """CKA of each map the two networks share by name (in A's order), over all images' positions.

    `pairs`: per image, (A's named features, B's), e.g. ann.analysis.features.named_features.
    Returns {name: {"cka", "positions", "channels": (A's, B's), "size_hw"}}.
    """
    found: dict[str, Alignment] = {}
    shapes: dict[str, dict] = {}
    for a, b in pairs:
        for name in (name for name in a if name in b):
            x, y = paired_positions(a[name], b[name])
            found.setdefault(name, Alignment()).add(x, y)
            shapes[name] = {"channels": (x.shape[1], y.shape[1]), "size_hw": common_size(a[name], b[name])}
    if not found:
        raise ValueError("the two networks share no named feature map to compare")
    return {
        name: {"cka": alignment.cka(), "positions": alignment.count, **shapes[name]}
        for name, alignment in found.items()
    }


def comparison_backbone(model: ANN, other: str) -> tuple[nn.Module, dict]:
    """(backbone, normalization) of what a checkpoint's backbone is compared with: `imagenet`
    (EfficientNet-Lite0's ImageNet weights at the model's output stride), `initial` (the model's
    backbone as its run began), `untrained` (a fresh initialisation), or a checkpoint file."""
    config = model.config
    if other == "imagenet":
        return imagenet_backbone(config.output_stride)
    if other in ("initial", "untrained"):
        seed = UNTRAINED_SEED if other == "untrained" else initial_seed(model.meta.provenance)
        torch.manual_seed(seed)  # the trainer seeds, then builds the backbone first (build_network)
        pretrained = config.pretrained and other == "initial"
        backbone = build_backbone(config.backbone, config.output_stride, config.stem, pretrained)
        return backbone.eval(), model.meta.normalization
    found = load(other)
    return found.backbone.eval(), found.meta.normalization


def initial_seed(provenance: dict) -> int:
    """The seed a trained checkpoint's run began from; its initial weights follow from it unless
    they came from a file (train.backbone_weights), which the checkpoint does not hold."""
    if "seed" not in provenance:
        raise ValueError("no initial backbone: this checkpoint records no training seed (not a trained one)")
    if provenance.get("backbone_weights"):
        raise ValueError(
            f"no initial backbone: this run's started from {provenance['backbone_weights']}, which the "
            "checkpoint does not hold: compare with that file"
        )
    return int(provenance["seed"])


def stage_pairs(model: ANN, other: tuple[nn.Module, dict], images: Iterable[np.ndarray]):
    """Per image: (the checkpoint's Stage1..5, the other network's), named as in the app."""
    for image in images:
        own = backbone_stages(model.backbone, preprocess(image, model.meta.normalization))
        theirs = backbone_stages(other[0], preprocess(image, other[1]))
        yield named_features(own), named_features(theirs)
