"""Confusion-matrix metrics against hand-computed values (Cityscapes definition)."""

import math

import pytest
import torch

from ann.metrics import ConfusionMatrix, confusion_matrix


def test_confusion_matrix_counts_rows_gt_columns_pred():
    target = torch.tensor([[0, 0, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 2]])
    assert confusion_matrix(pred, target, 3).tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_iou_miou_and_pixel_accuracy_by_hand():
    # class 0: TP 2, FP 1, FN 1 -> 2/4; class 1: TP 1, FP 1, FN 2 -> 1/4; class 2 absent -> NaN
    # class 3: predicted once, never in GT -> 0
    target = torch.tensor([0, 0, 0, 1, 1, 255, 1])
    pred = torch.tensor([0, 0, 1, 1, 0, 3, 3])
    m = ConfusionMatrix(4)
    m.update(pred, target)
    iou = m.iou()
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(1 / 4) and iou[3] == 0
    assert math.isnan(iou[2])
    assert m.miou() == pytest.approx((0.5 + 1 / 4 + 0) / 3)  # NaN class left out of the mean
    assert m.pixel_accuracy() == pytest.approx(3 / 6)  # the ignored pixel counts nowhere
    summary = m.summary(["a", "b", "c", "d"])
    assert summary["per_class_iou"]["c"] is None and summary["miou"] == pytest.approx(m.miou())


def test_accumulation_equals_one_pass():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (4, 8, 8), generator=gen)
    pred = torch.randint(0, 5, (4, 8, 8), generator=gen)
    whole, parts = ConfusionMatrix(5), ConfusionMatrix(5)
    whole.update(pred, target)
    for b in range(4):
        parts.update(pred[b], target[b])
    assert torch.equal(whole.matrix, parts.matrix)
    # a split-wide IoU is not the mean of per-image IoUs
    assert whole.miou() != pytest.approx(sum(_single(pred[b], target[b]) for b in range(4)) / 4, abs=1e-9)


def _single(pred, target):
    m = ConfusionMatrix(5)
    m.update(pred, target)
    return m.miou()


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(ValueError, match=r"label values \[7\] outside 0..4"):
        confusion_matrix(torch.zeros(3, dtype=torch.long), torch.tensor([0, 7, 255]), 5)
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(torch.zeros(3), torch.zeros(4), 5)


def test_negative_labels_and_predictions_outside_the_classes_are_refused():
    """A -1 label (another ignore convention) or a head with more outputs than classes would
    otherwise land in other cells of the flattened bincount: wrong IoUs without an error."""
    with pytest.raises(ValueError, match=r"label values \[-1\] outside 0..4 \(and 255 = ignore\)"):
        confusion_matrix(torch.zeros(3, dtype=torch.long), torch.tensor([0, -1, 255]), 5)
    for bad in (5, -1):
        with pytest.raises(ValueError, match="predictions outside 0..4"):
            confusion_matrix(torch.tensor([0, bad, 0]), torch.tensor([0, 1, 255]), 5)
    # a wrong prediction where the label is ignored counts nowhere, so it is no error either
    assert confusion_matrix(torch.tensor([0, 9]), torch.tensor([0, 255]), 5).sum() == 1


def test_summary_needs_one_name_per_class():
    """zip would drop the last classes from the table without a word."""
    m = ConfusionMatrix(4)
    with pytest.raises(ValueError, match="3 class names for 4 classes"):
        m.summary(["a", "b", "c"])
