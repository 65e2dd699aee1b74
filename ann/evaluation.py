"""Evaluation of a network over a split (paper Sec. 4.1-4.2): the confusion matrix behind per-class
IoU, mIoU and pixel accuracy, and the prediction files it can write on the way. The evaluator
(`python -m ann.evaluate`) and the trainer's periodic validation both call `evaluate`.
"""

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ann.inference import autocast, predict
from ann.metrics import ConfusionMatrix
from ann.progress import progress as shown

Prediction = Callable[[torch.Tensor, torch.Tensor, int], None]  # (pred HxW, image HxWx3, index)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    num_classes: int,
    mode: str = "whole",
    options: dict | None = None,
    device: str | torch.device = "cpu",
    amp: bool = False,
    progress: bool = False,
    on_prediction: Prediction | None = None,
) -> ConfusionMatrix:
    """Confusion matrix of `model` over the (x, label, image, index) batches of `loader`."""
    matrix = ConfusionMatrix(num_classes)
    was_training = model.training
    model.eval()
    device = torch.device(device)
    try:
        for x, target, image, index in shown(loader, len(loader), "eval") if progress else loader:
            with autocast(device, amp):
                logits = predict(model, x.to(device, non_blocking=True), mode, **(options or {}))
            pred = logits.float().argmax(1).cpu()  # (B, H, W)
            matrix.update(pred, target)
            if on_prediction is not None:
                for b in range(len(pred)):
                    on_prediction(pred[b], image[b], int(index[b]))
    finally:
        model.train(was_training)
    return matrix


class PredictionWriter:
    """Writes `<name>.png` (trainIds, 255 nowhere) and `<name>_overlay.png` (colours on the image);
    a name may hold subfolders. Each file is written whole or not at all (temp file + rename)."""

    def __init__(self, folder: Path, names: Callable[[int], str], palette) -> None:
        self.folder, self.names = folder, names
        self.palette = np.asarray(palette, dtype=np.uint8)
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, pred: torch.Tensor, image: torch.Tensor, index: int) -> None:
        path = self.folder / self.names(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        label = pred.numpy().astype(np.uint8)
        overlay = (0.5 * image.numpy() + 0.5 * self.palette[label]).round().astype(np.uint8)
        save_png(label, path.with_name(f"{path.name}.png"))
        save_png(overlay, path.with_name(f"{path.name}_overlay.png"))


def save_png(array: np.ndarray, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        Image.fromarray(array).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
