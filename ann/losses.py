"""Training objective of Sec. 4.2, Eq. 18: OHEM cross-entropy on the final output + 0.4 x CE on
the auxiliary Stage4 output, as released (ANN-REFERENCE.md "Loss")."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ann.data.labels import IGNORE_INDEX

# Cityscapes class weights used by the released code (from OCNet/torchcv), trainId order.
CITYSCAPES_CLASS_WEIGHTS = (
    0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
    0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507,
)  # fmt: skip


def ohem_keep_mask(logits: Tensor, target: Tensor, threshold: float, min_kept: int) -> Tensor:
    """Pixels of each image whose ground-truth probability is below max(p[min_kept], threshold).

    logits (B, K, H, W), target (B, H, W) -> (B, H, W). Per image, as released: p sorted ascending
    over its valid pixels, index clipped to the last one, strict comparison; ignored pixels are
    never kept. All images at once, without a host round trip per image (a GPU step would wait
    on each one).
    """
    valid = target != IGNORE_INDEX  # (B, H, W)
    with torch.no_grad():
        prob = logits.float().softmax(dim=1)  # (B, K, H, W)
        gt_prob = prob.gather(1, target.masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)  # (B, H, W)
        # ignored pixels sort last, so the first n_valid entries are the released sorted list
        ordered = gt_prob.masked_fill(~valid, float("inf")).flatten(1).sort(dim=1).values  # (B, HW)
        last = valid.flatten(1).sum(1) - 1  # (B,) index of the last valid pixel (-1: none)
        index = last.clamp(max=min_kept).clamp(min=0)
        cut = ordered.gather(1, index.unsqueeze(1)).clamp(min=threshold)  # (B, 1)
        return valid & (gt_prob < cut.view(-1, 1, 1))


class OhemCrossEntropy(nn.Module):
    """Cross-entropy over the hard pixels of each image (online hard example mining).

    The mean is over kept pixels of their (class-weighted) losses, as released, not torch's
    weight-normalised mean.
    """

    def __init__(self, threshold: float = 0.7, min_kept: int = 100_000, weight: Tensor | None = None) -> None:
        super().__init__()
        self.threshold = threshold
        self.min_kept = min_kept
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        keep = ohem_keep_mask(logits, target, self.threshold, self.min_kept)  # min_kept per image
        losses = F.cross_entropy(
            logits, target, weight=self.weight, ignore_index=IGNORE_INDEX, reduction="none"
        )
        # the mean over kept pixels; 0 with a graph (DDP needs one) when none is kept
        return (losses * keep).sum() / keep.sum().clamp(min=1)


class SegmentationLoss(nn.Module):
    """L = L_final (OHEM CE) + aux_weight * L_Stage4 (plain CE), Eq. 18 with lambda = 0.4."""

    def __init__(
        self,
        aux_weight: float = 0.4,
        ohem: bool = True,
        threshold: float = 0.7,
        min_kept: int = 100_000,
        class_weights: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.aux_weight = aux_weight
        self.main = OhemCrossEntropy(threshold, min_kept, weight) if ohem else None
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: Tensor, aux: Tensor | None, target: Tensor) -> dict[str, Tensor]:
        if self.main is not None:
            main = self.main(logits, target)
        else:
            main = F.cross_entropy(logits, target, weight=self.weight, ignore_index=IGNORE_INDEX)
        losses = {"main": main, "total": main}
        if aux is not None and self.aux_weight > 0:
            losses["aux"] = F.cross_entropy(aux, target, weight=self.weight, ignore_index=IGNORE_INDEX)
            losses["total"] = main + self.aux_weight * losses["aux"]
        return losses
