"""Segmentation metrics from one confusion matrix accumulated over a whole split (paper Sec. 4.1).

IoU_k = TP / (TP + FP + FN), as the official Cityscapes evaluation: a class absent from both the
ground truth and the predictions of the whole split has IoU NaN and is left out of the mean.
Pixels labelled ignore (255) count nowhere.
"""

import torch
from torch import Tensor

from ann.data.labels import IGNORE_INDEX


def confusion_matrix(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """(K, K) int64 counts, rows = ground truth, columns = prediction."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(target.shape)} differ in shape")
    valid = target != ignore_index
    gt, pr = target[valid].long(), pred[valid].long()
    if gt.numel() and (gt.min() < 0 or gt.max() >= num_classes):
        bad = gt[(gt < 0) | (gt >= num_classes)].unique()[:10].tolist()
        raise ValueError(f"label values {bad} outside 0..{num_classes - 1} (and {ignore_index} = ignore)")
    if pr.numel() and (pr.min() < 0 or pr.max() >= num_classes):
        raise ValueError(f"predictions outside 0..{num_classes - 1}")
    counts = torch.bincount(gt * num_classes + pr, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes).cpu()


class ConfusionMatrix:
    """Accumulates predictions of a split; `all_reduce` sums it over processes."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def all_reduce(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            # gloo reduces CPU tensors, nccl needs them on the process's GPU
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            matrix = self.matrix.to(device)
            dist.all_reduce(matrix)
            self.matrix = matrix.cpu()

    def iou(self) -> Tensor:
        """(K,) float64; NaN where the class is in neither ground truth nor prediction."""
        m = self.matrix.double()
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))

    def miou(self) -> float:
        return float(self.iou().nanmean())

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(self.matrix.diag().sum() / total) if total > 0 else float("nan")

    def summary(self, class_names: list[str] | tuple[str, ...]) -> dict:
        """{"miou", "pixel_acc", "per_class_iou": {name: IoU or None for NaN}}."""
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for {self.num_classes} classes")
        iou = self.iou().tolist()
        return {
            "miou": self.miou(),
            "pixel_acc": self.pixel_accuracy(),
            "per_class_iou": {
                name: (None if v != v else v) for name, v in zip(class_names, iou, strict=True)
            },
        }
