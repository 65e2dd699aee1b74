"""Class context: which classes the attention of a trained ANN lands on, over a set of images.

APNB (paper Sec. 3.2, Eq. 8-10) lets each query position attend over S anchors pooled from regions
of the key map; AFNB (Sec. 3.3, Eq. 14-16) does the same for Stage5 queries over anchors pooled
from Stage4. The paper's claim is that these anchors bring long-range context; this module
measures which context: row c of the class-to-class matrix is where the attention of the pixels
of class c goes, split by the classes the anchors are made of.

Definitions (all counts are of image pixels, so a class weighs by its area, not its cells):
- An image pixel belongs to the feature cell whose centre the network's bilinear upsampling puts
  nearest to it (`ann.analysis.explore.image_to_feature`, with the model's align_corners): the cell whose
  attention the Explorer shows when that pixel is clicked. With align_corners=True the border
  cells own half as many pixels as the inner ones, as the upsampling gives them.
- An anchor is made of the labelled image pixels whose cell lies in its box (`AnchorGeometry`);
  its composition is their class shares. For max pooling the anchor's value comes from one cell of
  the box, but the box is still what it was pooled from.
- Row c: the sum, over the image pixels labelled c, of their attention weights times the anchors'
  compositions, normalised to sum to 1. The mass that lands on anchors without any labelled pixel
  (all 255) has no class: it is reported per class as `unassigned`, before the normalisation.
- Entropy of a query's weights in nats; exp(entropy) is its effective number of anchors, S when
  the attention is uniform over S anchors and 1 when it sits on one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ann.analysis.explore import Explorer, image_to_feature
from ann.data.labels import IGNORE_INDEX
from ann.models.blocks import Attention
from ann.models.network import ANN
from ann.models.sampling import AnchorGeometry

LABEL_SOURCES = ("gt", "prediction")  # ground truth, or the model's own prediction (unlabelled images)


def cell_counts(
    labels: np.ndarray, feature_hw: tuple[int, int], num_classes: int, align_corners: bool
) -> np.ndarray:
    """(h, w, K) pixels of each class among the image pixels nearest each feature cell; 255 left out."""
    labels = np.asarray(labels)
    unknown = labels[(labels != IGNORE_INDEX) & (labels >= num_classes)]
    if unknown.size:
        raise ValueError(f"label {int(unknown[0])} is neither a class id (0..{num_classes - 1}) nor 255")
    (H, W), (h, w) = labels.shape, feature_hw
    rows = np.array([image_to_feature(y, H, h, align_corners) for y in range(H)])  # (H,)
    cols = np.array([image_to_feature(x, W, w, align_corners) for x in range(W)])  # (W,)
    cell = rows[:, None] * w + cols[None, :]  # (H, W)
    kept = labels != IGNORE_INDEX
    index = cell[kept] * num_classes + labels[kept].astype(np.int64)
    return np.bincount(index, minlength=h * w * num_classes).reshape(h, w, num_classes)


def box_sums(counts: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(S, K) sums of (h, w, K) counts over end-exclusive (y0, x0, y1, x1) boxes, by an integral image."""
    h, w, K = counts.shape
    integral = np.zeros((h + 1, w + 1, K), dtype=np.int64)
    integral[1:, 1:] = counts.cumsum(0).cumsum(1)
    y0, x0, y1, x1 = np.asarray(boxes, dtype=np.int64).T
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def shares(counts: np.ndarray) -> np.ndarray:
    """Rows of counts scaled to sum to 1; rows without any count stay all zero."""
    total = counts.sum(-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros(counts.shape), where=total > 0)


def anchor_composition(
    labels: np.ndarray, geometry: AnchorGeometry, num_classes: int, align_corners: bool
) -> np.ndarray:
    """(S, K) class shares of the labelled image pixels in each anchor's pooled region.

    `labels` (H, W) is at image size; the region is the anchor's box of `geometry.feature_hw`
    cells, mapped to image pixels as the module docstring says. A row sums to 1, or is all zero
    when the region holds no labelled pixel (only 255).
    """
    counts = cell_counts(labels, geometry.feature_hw, num_classes, align_corners)
    return shares(box_sums(counts, geometry.boxes.numpy()))


@dataclass
class ContextResult:
    """Class context of one attention block over a set of images; (K,) arrays are NaN where absent."""

    block: str  # "apnb", "afnb", "nb" or "fnb"
    classes: list[str]
    matrix: np.ndarray  # (K, K) rows: the query pixel's class, summing to 1; columns: the anchors' class
    pixels: np.ndarray  # (K,) query pixels of each class
    unassigned: np.ndarray  # (K,) share of the mass on anchors without a labelled pixel
    entropy: np.ndarray  # (K,) mean attention entropy, nats
    effective_anchors: np.ndarray  # (K,) mean exp(entropy)
    uniform_entropy: float  # log S: the entropy of uniform attention (pixel-weighted mean if S varied)
    images: int

    @property
    def own_share(self) -> np.ndarray:
        """(K,) share of a class's attention that lands on its own class: the diagonal."""
        return np.diagonal(self.matrix).copy()

    @property
    def absent(self) -> list[str]:
        """Classes without a row: no query pixel of theirs (or all their mass unassigned)."""
        return [name for name, row in zip(self.classes, self.matrix, strict=True) if np.isnan(row).any()]

    def row(self, name: str) -> np.ndarray:
        if name not in self.classes:
            raise ValueError(f"unknown class {name!r}; valid: {', '.join(self.classes)}")
        return self.matrix[self.classes.index(name)]

    def to_json(self) -> dict:
        """Plain types only; NaN becomes None (JSON has no NaN)."""
        entropy, anchors = plain(np.array([self.uniform_entropy, math.exp(self.uniform_entropy)]))
        return {
            "block": self.block,
            "classes": list(self.classes),
            "matrix": [None if np.isnan(row).any() else row.tolist() for row in self.matrix],
            "absent": self.absent,
            "pixels": [int(n) for n in self.pixels],
            "own_share": plain(self.own_share),
            "unassigned": plain(self.unassigned),
            "entropy": plain(self.entropy),
            "effective_anchors": plain(self.effective_anchors),
            "uniform": {"entropy": entropy, "effective_anchors": anchors},  # of uniform attention
            "images": self.images,
        }


def plain(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values]


class ClassContext:
    """Accumulates one block's class context image by image; `result()` gives the ContextResult."""

    def __init__(self, classes: Sequence[str], block: str = "apnb") -> None:
        K = len(classes)
        self.classes, self.block, self.images = list(classes), block, 0
        self.mass = np.zeros((K, K))  # attention mass of class-c pixels on class-k anchor pixels
        self.pixels = np.zeros(K)
        self.entropy = np.zeros(K)
        self.effective = np.zeros(K)
        self.log_anchors = 0.0  # sum over pixels of log S

    def update(self, weights: torch.Tensor | np.ndarray, queries: np.ndarray, composition: np.ndarray):
        """Add one image: weights (N, S) of its N query cells, queries (N, K) the image pixels of each
        class per cell (one-hot rows for one label per cell), composition (S, K) of its anchors."""
        w = torch.as_tensor(weights).float()  # float32: NB's (N, N) weights would double in float64
        N, S = w.shape
        if queries.shape != (N, len(self.classes)) or composition.shape != (S, len(self.classes)):
            raise ValueError(
                f"weights {tuple(w.shape)} need queries (N={N}, K={len(self.classes)}) and composition "
                f"(S={S}, K), got {queries.shape} and {composition.shape}"
            )
        landed = (w @ torch.from_numpy(composition).float()).double().numpy()  # (N, K)
        entropy = torch.special.entr(w).sum(1).double().numpy()  # (N,), entr(0) = 0
        q = np.asarray(queries, dtype=np.float64)
        self.mass += q.T @ landed
        self.pixels += q.sum(0)
        self.entropy += q.T @ entropy
        self.effective += q.T @ np.exp(entropy)
        self.log_anchors += q.sum() * math.log(S)
        self.images += 1

    def result(self) -> ContextResult:
        with np.errstate(invalid="ignore", divide="ignore"):
            assigned = self.mass.sum(1)
            matrix = self.mass / assigned[:, None]
            matrix[assigned <= 0] = np.nan
            total = self.pixels.sum()
            return ContextResult(
                block=self.block,
                classes=self.classes,
                matrix=matrix,
                pixels=self.pixels.round().astype(np.int64),
                # a pixel's weights sum to 1 (to float32 rounding, hence the clip)
                unassigned=np.clip(1 - assigned / self.pixels, 0, 1),
                entropy=self.entropy / self.pixels,
                effective_anchors=self.effective / self.pixels,
                uniform_entropy=self.log_anchors / total if total else math.nan,
                images=self.images,
            )


def attention_blocks(model: ANN, blocks: Sequence[str] | None = None) -> dict[str, str]:
    """{"fusion": "afnb", "context": "apnb", ...} of the asked blocks (default: all the model has)."""
    kinds = model.block_kinds()
    if not kinds:
        config = model.config
        raise ValueError(
            f"this model has no attention block (fusion {config.fusion}, context {config.context}); "
            "class context needs APNB, AFNB, NB or FNB"
        )
    unknown = [name for name in blocks or () if name not in ("fusion", "context")]
    if unknown:
        raise ValueError(f"unknown block(s) {', '.join(unknown)}; valid: fusion, context")
    missing = [name for name in blocks or () if name not in kinds]
    if missing:
        have = ", ".join(f"{name} ({kind})" for name, kind in kinds.items())
        raise ValueError(f"this model has no attention in block(s) {', '.join(missing)}; it has {have}")
    return {name: kind for name, kind in kinds.items() if blocks is None or name in blocks}


def class_context(
    model: ANN,
    items: Iterable[tuple[np.ndarray, np.ndarray | None]],
    blocks: Sequence[str] | None = None,
    labels: str = "gt",
    stage: int = 0,
) -> dict[str, ContextResult]:
    """Class context of each attention block ("afnb", "apnb", ...) over (image, label) pairs.

    image: uint8 (H, W, 3) RGB; label: (H, W) class ids with 255 = ignore, or None when `labels` is
    "prediction" (the model's own prediction is then the labels). `blocks` names "fusion" and/or
    "context" (default: every attention block of the model); `stage` picks AFNB's fused stage.
    """
    if labels not in LABEL_SOURCES:
        raise ValueError(f"unknown label source {labels!r}; valid: {', '.join(LABEL_SOURCES)}")
    kinds = attention_blocks(model, blocks)
    explorer = Explorer(model)
    classes = list(explorer.meta.classes)
    contexts = {kind: ClassContext(classes, kind) for kind in kinds.values()}
    for image, label in items:
        result = explorer.run(image)
        truth = result.labels if labels == "prediction" else checked_label(label, result.size)
        for kind, context in contexts.items():
            add_attention(context, explorer.attention(kind, stage), truth, model.config.align_corners)
    return {kind: context.result() for kind, context in contexts.items()}


def add_attention(context: ClassContext, attention: Attention, labels: np.ndarray, align_corners: bool):
    """One image's recorded `Attention` (batch of 1) into `context`; labels (H, W) at image size."""
    K = len(context.classes)
    queries = cell_counts(labels, attention.query_hw, K, align_corners).reshape(-1, K)  # (N, K)
    composition = anchor_composition(labels, attention.anchors, K, align_corners)  # (S, K)
    context.update(attention.weights[0], queries, composition)


def checked_label(label: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    if label is None:
        raise ValueError("an image has no label map; use labels='prediction' for unlabelled images")
    if tuple(label.shape) != tuple(size):
        raise ValueError(f"label map {tuple(label.shape)} and image {tuple(size)} differ in size")
    return label
