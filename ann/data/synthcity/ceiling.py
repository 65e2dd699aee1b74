"""What a model blind to context can score at best on SynthCity (docs/synthcity.md).

Within an image the classes of a context group share one appearance (`canvas.Look`), so a model
that sees only a small neighbourhood can at best give every pixel of a group the group's most
frequent class, and be right everywhere else. Scoring that "context-blind oracle" (ground truth
with each group collapsed onto its most frequent member) gives the ceiling of such a model, and
so the room a context model has above it.
"""

import numpy as np
import torch

from ann.data.labels import CITYSCAPES_CLASSES, IGNORE_INDEX
from ann.metrics import ConfusionMatrix

from . import render

# classes separable only by context (docs/synthcity.md, "Context pairs")
CONTEXT_GROUPS = (
    ("road", "sidewalk"),
    ("building", "wall"),
    ("vegetation", "terrain"),
    ("truck", "bus", "train"),
    ("person", "rider"),
)


def collapse_map(pixel_counts: np.ndarray) -> np.ndarray:
    """trainId -> the trainId a context-blind model predicts (its group's most frequent class)."""
    mapping = np.arange(256)
    ids = {name: i for i, name in enumerate(CITYSCAPES_CLASSES)}
    for group in CONTEXT_GROUPS:
        members = [ids[name] for name in group]
        mapping[members] = members[int(np.argmax(pixel_counts[members]))]
    return mapping


def context_blind_ceiling(labels: list[np.ndarray]) -> dict:
    """Summary (mIoU, per-class IoU) of the context-blind oracle on these label maps."""
    counts = sum(np.bincount(label[label != IGNORE_INDEX].ravel(), minlength=len(CITYSCAPES_CLASSES))
                 for label in labels)  # fmt: skip
    mapping = collapse_map(counts)
    matrix = ConfusionMatrix(len(CITYSCAPES_CLASSES))
    for label in labels:
        target = torch.from_numpy(label.astype(np.int64))[None]
        matrix.update(torch.from_numpy(mapping[label].astype(np.int64))[None], target)
    return matrix.summary(CITYSCAPES_CLASSES)


def split_ceiling(seed: int, split: str, count: int, size: tuple[int, int]) -> dict:
    return context_blind_ceiling([render(seed, split, i, size)[1] for i in range(count)])
