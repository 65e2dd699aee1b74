"""OHEM cross-entropy + 0.4 x auxiliary CE (Eq. 18), against a brute-force reading of the rule."""

import pytest
import torch
import torch.nn.functional as F

from ann.losses import OhemCrossEntropy, SegmentationLoss, ohem_keep_mask


def brute_force_keep(logits, target, threshold, min_kept):
    probs = logits.softmax(0)
    valid = [(y, x) for y in range(target.shape[0]) for x in range(target.shape[1]) if target[y, x] != 255]
    p = sorted(float(probs[target[y, x], y, x]) for y, x in valid)
    cut = max(p[min(min_kept, len(p) - 1)], threshold)
    keep = torch.zeros_like(target, dtype=torch.bool)
    for y, x in valid:
        keep[y, x] = float(probs[target[y, x], y, x]) < cut
    return keep


@pytest.mark.parametrize("min_kept, threshold", [(5, 0.7), (40, 0.7), (0, 0.3), (1000, 0.7)])
def test_keep_mask_matches_the_rule(min_kept, threshold):
    torch.manual_seed(min_kept)
    logits = torch.randn(4, 6, 7) * 3
    target = torch.randint(0, 4, (6, 7))
    target[0, :3] = 255
    expected = brute_force_keep(logits, target, threshold, min_kept)
    assert torch.equal(ohem_keep_mask(logits[None], target[None], threshold, min_kept)[0], expected)


def test_batched_mask_is_the_rule_image_by_image():
    """Images with different numbers of valid pixels (one with none, one with fewer than
    min_kept) in one batch: each gets exactly its own released mask."""
    torch.manual_seed(3)
    logits = torch.randn(4, 5, 6, 7) * 3
    target = torch.randint(0, 5, (4, 6, 7))
    target[1] = 255  # nothing valid
    target[2, :5] = 255  # 7 valid pixels < min_kept
    target[3, 0] = 255
    keep = ohem_keep_mask(logits, target, 0.7, 20)
    for b in range(4):
        expected = (
            brute_force_keep(logits[b], target[b], 0.7, 20) if b != 1 else torch.zeros(6, 7, dtype=bool)
        )
        assert torch.equal(keep[b], expected), b


def test_min_kept_is_per_image():
    """A confident image and a hard image each keep their own hardest pixels."""
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    logits = torch.zeros(2, 2, 4, 4)
    logits[0, 0] = torch.linspace(5, 10, 16).view(4, 4)  # image 0: every pixel confidently right
    logits[1, 0] = torch.linspace(-2, 2, 16).view(4, 4)
    loss = OhemCrossEntropy(threshold=0.7, min_kept=4)
    keep0, keep1 = ohem_keep_mask(logits, target, 0.7, 4)
    assert keep0.sum() == 4  # only min_kept pixels, though all are above the 0.7 threshold
    assert keep1.sum() > 4  # the hard image keeps everything below 0.7
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    expected = per_pixel[torch.stack([keep0, keep1])].mean()
    assert torch.allclose(loss(logits, target), expected)


def test_total_is_main_plus_0_4_aux_and_ignore_is_ignored():
    torch.manual_seed(0)
    logits, aux = torch.randn(2, 3, 5, 5, requires_grad=True), torch.randn(2, 3, 5, 5)
    target = torch.randint(0, 3, (2, 5, 5))
    target[:, 0] = 255
    losses = SegmentationLoss(ohem=False)(logits, aux, target)
    expected_aux = F.cross_entropy(aux, target, ignore_index=255)
    assert torch.allclose(losses["aux"], expected_aux)
    assert torch.allclose(losses["total"], losses["main"] + 0.4 * expected_aux)
    losses["total"].backward()
    assert logits.grad[:, :, 0].abs().sum() == 0  # ignored row gets no gradient


def test_class_weights_apply_to_both_terms():
    logits, target = torch.randn(1, 2, 3, 3), torch.randint(0, 2, (1, 3, 3))
    plain = SegmentationLoss(ohem=False)(logits, logits, target)
    weighted = SegmentationLoss(ohem=False, class_weights=(1.0, 3.0))(logits, logits, target)
    assert not torch.allclose(plain["main"], weighted["main"])
    assert not torch.allclose(plain["aux"], weighted["aux"])


def test_all_ignored_batch_gives_zero_with_a_graph():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = OhemCrossEntropy(min_kept=2)(logits, torch.full((1, 4, 4), 255))
    loss.backward()
    assert loss.item() == 0 and logits.grad is not None


def test_ohem_class_weights_scale_each_kept_pixel():
    """As released: the mean over kept pixels of weight[target] x CE, not torch's mean normalised
    by the summed weights, and the weights apply at all (Cityscapes weights in both terms)."""
    torch.manual_seed(1)
    logits, target = torch.randn(2, 3, 5, 6) * 2, torch.randint(0, 3, (2, 5, 6))
    target[0, 0] = 255
    weight = torch.tensor([0.5, 1.0, 3.0])
    keep = ohem_keep_mask(logits, target, 0.7, 4)
    per_pixel = (
        F.cross_entropy(logits, target, ignore_index=255, reduction="none") * weight[target.clamp(max=2)]
    )
    expected = per_pixel[keep].mean()
    assert torch.allclose(OhemCrossEntropy(0.7, 4, weight)(logits, target), expected)
    weighted = SegmentationLoss(threshold=0.7, min_kept=4, class_weights=tuple(weight.tolist()))
    assert torch.allclose(weighted(logits, None, target)["main"], expected)


def test_segmentation_loss_passes_its_threshold_and_min_kept_on():
    torch.manual_seed(2)
    logits, target = torch.randn(1, 3, 6, 6) * 3, torch.randint(0, 3, (1, 6, 6))
    loss = SegmentationLoss(threshold=0.3, min_kept=2)(logits, None, target)["main"]
    assert torch.allclose(loss, OhemCrossEntropy(0.3, 2)(logits, target))
    # the two settings keep different pixels here, so a dropped argument shows
    assert not torch.allclose(loss, OhemCrossEntropy(0.7, 2)(logits, target))
    assert not torch.allclose(loss, OhemCrossEntropy(0.3, 100_000)(logits, target))
