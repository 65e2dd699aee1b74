"""Interactive exploration of a trained ANN: what the app shows, computed by the library.

`Explorer` runs the backbone once per image and keeps the five stage tensors, so switching the
sampling of APNB/AFNB (paper Sec. 3.2, Table 7) recomputes only the head. Every attention map it
returns comes from the same forward pass that produced the segmentation (`ANN.head(stages,
record=True)`).

Coordinates: image pixels (x to the right, y down, 0-based, floats allowed) map to the cell of
the feature map whose centre the network's bilinear upsampling puts nearest to them, with the
network's own align_corners convention (`feature_cell`). Points outside the image raise
ValueError; nothing is clamped silently.

One model may be shared by several Explorers (one per app session): each Explorer keeps its own
sampling and applies it under the shared lock before running the head, because `ANN.set_sampling`
changes the model in place.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ann.checkpoint import CheckpointMeta
from ann.data.labels import IGNORE_INDEX
from ann.inference import preprocess
from ann.models.blocks import APNB, Attention
from ann.models.network import ANN, HeadOutput
from ann.models.sampling import AnchorGeometry, SamplingConfig, adaptive_bins, describe

BLOCK_OF_KIND = {"afnb": "fusion", "fnb": "fusion", "apnb": "context", "nb": "context"}


@dataclass
class Result:
    """One segmentation; maps are at the size of the image that was run."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    logits: Tensor  # (K, H, W) float32
    labels: np.ndarray  # (H, W) uint8 (int32 for more than 255 classes)
    confidence: np.ndarray  # (H, W) float32, max softmax
    entropy: np.ndarray  # (H, W) float32, nats
    head: HeadOutput  # at feature resolution, batch of 1; aux is None (not computed)
    sampling: dict[str, SamplingConfig]  # per block ("fusion", "context") when it was computed

    @property
    def probs(self) -> Tensor:
        return torch.softmax(self.logits, dim=0)  # (K, H, W)

    @property
    def attention(self) -> dict:
        return self.head.attention

    @property
    def size(self) -> tuple[int, int]:
        return self.labels.shape


class Explorer:
    """A loaded ANN, the image it last ran on and that image's cached backbone stages."""

    def __init__(
        self,
        model: ANN,
        meta: CheckpointMeta | None = None,
        lock: threading.RLock | None = None,
    ) -> None:
        self.model = model.eval()
        self.meta = meta or getattr(model, "meta", None) or CheckpointMeta(model.config)
        self.lock = lock or threading.RLock()
        self.sampling = self.training_sampling()  # this explorer's own, whatever the model holds now
        self.stages: list[Tensor] | None = None
        self.result: Result | None = None

    # ---- running ---------------------------------------------------------------------------

    @property
    def head_output(self) -> HeadOutput | None:
        return None if self.result is None else self.result.head

    @torch.no_grad()
    def run(self, image: np.ndarray) -> Result:
        """Segment a uint8 (H, W, 3) RGB image; caches its backbone stages."""
        x = preprocess(image, self.meta.normalization)
        with self.lock:
            stages = self.model.backbone(x)
        previous, self.stages = self.stages, [s.detach() for s in stages]
        try:
            self.result = self._head(np.ascontiguousarray(image))
        except Exception:
            self.stages = previous  # stages and result always describe the same image
            raise
        return self.result

    def set_sampling(
        self, sampling: SamplingConfig | None, blocks: tuple[str, ...] | None = None
    ) -> Result | None:
        """Switch the sampling (None: back to training) and recompute the head on cached stages.

        Like `ANN.set_sampling`, only the asymmetric blocks (AFNB, APNB) switch unless `blocks`
        names "fusion"/"context". Returns the new Result, or None when no image has been run.
        """
        trained = self.training_sampling()
        for name in self.model.switchable() if blocks is None else blocks:
            if name not in self.sampling:
                raise ValueError(
                    f"this model has no attention block {name!r}; it has {sorted(self.sampling)}"
                )
            self.sampling[name] = trained[name] if sampling is None else sampling
        if self.stages is None:
            return None
        self.result = self._head(self.result.image)
        return self.result

    def apply_sampling(self) -> None:
        """Put this explorer's sampling on the shared model; call it holding `self.lock`."""
        for name, config in self.sampling.items():
            self.model.set_sampling(config, blocks=(name,))

    @torch.no_grad()
    def _head(self, image: np.ndarray) -> Result:
        with self.lock:
            self.apply_sampling()
            # the auxiliary Stage4 head only serves training (head.aux is None)
            head = self.model.head(self.stages, record=True, with_aux=False)
        H, W = image.shape[:2]
        logits = self.model.upsample(head.logits, (H, W))[0]  # (K, H, W)
        log_probs = torch.log_softmax(logits, dim=0)
        confidence, labels = log_probs.max(dim=0)
        entropy = -(log_probs.exp() * log_probs).sum(dim=0)
        dtype = np.uint8 if logits.shape[0] <= 255 else np.int32
        return Result(
            image=image,
            logits=logits,
            labels=labels.numpy().astype(dtype),
            confidence=confidence.exp().numpy(),
            entropy=entropy.numpy(),
            head=head,
            sampling=dict(self.sampling),
        )

    # ---- sampling --------------------------------------------------------------------------

    def block_kinds(self) -> dict[str, str]:
        return self.model.block_kinds()

    def training_sampling(self) -> dict[str, SamplingConfig]:
        return self.model.training_sampling()

    def differences(self) -> list[str]:
        """Human-readable differences between the current and the training sampling."""
        trained = self.training_sampling()
        return [
            f"{self.block_kinds()[name].upper()}: {describe(config)} (trained with {describe(trained[name])})"
            for name, config in self.sampling.items()
            if config != trained[name]
        ]

    # ---- attention -------------------------------------------------------------------------

    def blocks(self) -> list[str]:
        """Names of the attention blocks recorded for the current image ("afnb", "apnb", ...)."""
        return [] if self.result is None else list(self.result.attention)

    def attention(self, block: str = "apnb", stage: int = 0) -> Attention:
        """The recorded Attention of a block; for AFNB/FNB, `stage` indexes the fused stages."""
        if self.result is None:
            raise ValueError("no image has been segmented yet")
        recorded = self.result.attention
        if block not in recorded:
            raise ValueError(
                f"no {block!r} attention in this model; recorded: {', '.join(recorded) or 'none'}"
            )
        found = recorded[block]
        if isinstance(found, list):
            if not 0 <= stage < len(found):
                raise ValueError(
                    f"{block} has {len(found)} fused stage(s); stage index {stage} is out of range"
                )
            found = found[stage]
        return found

    def feature_cell(self, x: float, y: float, block: str = "apnb", stage: int = 0) -> tuple[int, int]:
        """(row, col) of the query cell nearest to image pixel (x, y)."""
        H, W = self._image_size()
        if not (0 <= x <= W - 1 and 0 <= y <= H - 1) or not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(
                f"point (x={x}, y={y}) is outside the {W}x{H} image (x in 0..{W - 1}, y in 0..{H - 1})"
            )
        h, w = self.attention(block, stage).query_hw
        return (
            image_to_feature(y, H, h, self.model.config.align_corners),
            image_to_feature(x, W, w, self.model.config.align_corners),
        )

    def attention_at(
        self, x: float, y: float, block: str = "apnb", stage: int = 0
    ) -> tuple[np.ndarray, AnchorGeometry]:
        """Weights (S,) of the query at image pixel (x, y) over the anchors, and their geometry."""
        row, col = self.feature_cell(x, y, block, stage)
        attention = self.attention(block, stage)
        weights = attention.weights[0, row * attention.query_hw[1] + col]  # (S,)
        return weights.float().numpy().copy(), attention.anchors

    def anchor_map(self, index: int, block: str = "apnb", stage: int = 0) -> np.ndarray:
        """(H, W) attention every pixel pays to anchor `index`, upsampled as the logits are."""
        attention = self.attention(block, stage)
        S = attention.weights.shape[-1]
        if not 0 <= index < S:
            raise ValueError(f"anchor index {index} out of range: {block} has {S} anchors (0..{S - 1})")
        h, w = attention.query_hw
        column = attention.weights[0, :, index].reshape(1, 1, h, w).float()
        return self.model.upsample(column, self._image_size())[0, 0].numpy()

    def _image_size(self) -> tuple[int, int]:
        if self.result is None:
            raise ValueError("no image has been segmented yet")
        return self.result.size

    # ---- cost ------------------------------------------------------------------------------

    def block_gmacs(self, name: str = "context") -> float:
        """GMACs of the attention part of a block (Table 1 convention) at the current feature size."""
        if self.stages is None:
            raise ValueError("no image has been segmented yet")
        from ann.analysis.efficiency import block_gmacs  # counted from the ops, as the benchmark counts

        h, w = self.stages[4].shape[-2:]
        module = getattr(self.model, name)
        attention = module.attention if isinstance(module, APNB) else module.attentions[0]
        sampling = self.sampling[name]
        identity = sampling.method == "identity"
        if name == "context":
            kind, channels, low = ("nb" if identity else "apnb"), attention.value.in_channels, None
        else:
            kind, channels, low = (
                ("fnb" if identity else "afnb"),
                attention.W.out_channels,
                attention.value.in_channels,
            )
        return block_gmacs(
            kind, h, w, channels, attention.key_channels, sampling, low, value=attention.value.out_channels
        )


# ---- helpers ---------------------------------------------------------------------------------


def anchor_position(geometry: AnchorGeometry, index: int) -> tuple[int, int, int, int, bool]:
    """(level, n, row, col, on_grid) of an anchor.

    Pooled methods: (row, col) is the anchor's cell of its level's n x n grid (sampling.py order)
    and on_grid is True. Random sampling and identity take single positions: (row, col) is the
    feature cell it was taken from and on_grid is False.
    """
    S = len(geometry.level)
    if not 0 <= index < S:
        raise ValueError(f"anchor index {index} out of range 0..{S - 1}")
    level = int(geometry.level[index])
    y0, x0, y1, x1 = (int(v) for v in geometry.boxes[index])
    if not geometry.sizes:
        return 0, 0, y0, x0, False
    n = geometry.sizes[level]
    local = index - int((geometry.level < level).sum())
    row, col = local // n, local % n
    H, W = geometry.feature_hw
    if (y0, y1) == adaptive_bins(H, n)[row] and (x0, x1) == adaptive_bins(W, n)[col]:
        return level, n, row, col, True
    return level, n, y0, x0, False


def anchor_at(geometry: AnchorGeometry, level: int, x: float, y: float) -> int:
    """The anchor of `level` whose bin contains feature-map point (x, y), in feature cells."""
    index = np.flatnonzero(geometry.level.numpy() == level)
    if index.size == 0:
        raise ValueError(f"no pyramid level {level}; levels 0..{int(geometry.level.max())}")
    boxes = geometry.boxes[index].float().numpy()
    inside = (boxes[:, 0] <= y) & (y < boxes[:, 2]) & (boxes[:, 1] <= x) & (x < boxes[:, 3])
    if not inside.any():  # random sampling: the nearest sampled cell of the level
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        return int(index[np.argmin(((centres - [y, x]) ** 2).sum(1))])
    return int(index[np.flatnonzero(inside)[0]])


def image_to_feature(p: float, image_len: int, feature_len: int, align_corners: bool) -> int:
    """Nearest feature index to image coordinate p under bilinear upsampling feature -> image."""
    if align_corners:
        f = p * (feature_len - 1) / max(image_len - 1, 1)
    else:
        f = (p + 0.5) * feature_len / image_len - 0.5
    return int(min(max(round(f), 0), feature_len - 1))


def attention_entropy(weights: np.ndarray) -> tuple[float, float]:
    """(entropy in nats, effective number of anchors exp(entropy)) of one softmax row."""
    p = np.asarray(weights, dtype=np.float64)
    entropy = float(-(p * np.log(np.clip(p, 1e-30, None))).sum())
    return entropy, math.exp(entropy)


def per_class_iou(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX):
    """(K,) IoU of one image, NaN where a class is in neither map (ann.metrics convention)."""
    from ann.metrics import ConfusionMatrix

    if pred.shape != target.shape:
        raise ValueError(f"label map {target.shape} and prediction {pred.shape} differ in size")
    matrix = ConfusionMatrix(num_classes, ignore_index)
    matrix.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(target.astype(np.int64)))
    return matrix.iou().numpy()


def class_shares(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K,) fraction of pixels predicted as each class."""
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=num_classes)[:num_classes]
    return counts / max(labels.size, 1)


def error_map(pred: np.ndarray, target: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(H, W) uint8: 0 correct, 1 wrong, 2 ignored in the ground truth."""
    if pred.shape != target.shape:
        raise ValueError(f"label map {target.shape} and prediction {pred.shape} differ in size")
    out = (pred != target).astype(np.uint8)
    out[target == ignore_index] = 2
    return out


def resize_labels(target: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map to (H, W); never interpolates class ids."""
    if target.shape == tuple(size):
        return target
    t = torch.from_numpy(target.astype(np.int64))[None, None].float()
    return F.interpolate(t, size=size, mode="nearest")[0, 0].numpy().astype(target.dtype)
