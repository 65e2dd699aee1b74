"""ann.explore: the Explorer the app is built on (cached stages, head-only resampling, attention)."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from ann.analysis.explore import (
    Explorer,
    anchor_at,
    anchor_position,
    attention_entropy,
    class_shares,
    error_map,
    per_class_iou,
    resize_labels,
)
from ann.inference import preprocess
from ann.models import SamplingConfig, build_network, variant

H, W = 72, 104  # image; feature map 10 x 14 at output stride 8


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = variant("full", backbone="resnet18", head_channels=32, key_channels=16, value_channels=16)
    net = build_network(config).eval()
    with torch.no_grad():  # non-zero W so the attention changes the output
        for module in net.modules():
            if hasattr(module, "W") and isinstance(module.W, torch.nn.Conv2d):
                module.W.weight.normal_(0, 0.5)
    return net


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.fixture
def explorer(model, image):
    explorer = Explorer(model)
    explorer.run(image)
    return explorer


def test_result_matches_the_network_forward(explorer, model, image):
    result = explorer.result
    with torch.no_grad():
        logits = model(preprocess(image, explorer.meta.normalization))[0]
    torch.testing.assert_close(result.logits, logits, rtol=1e-4, atol=1e-4)
    assert result.labels.shape == (H, W) and result.labels.dtype == np.uint8
    np.testing.assert_array_equal(result.labels, logits.argmax(0).numpy())
    probs = torch.softmax(logits, 0)
    np.testing.assert_allclose(result.confidence, probs.max(0).values.numpy(), rtol=1e-4)
    entropy = -(probs * torch.log(probs)).sum(0)  # nats of each pixel's class distribution
    np.testing.assert_allclose(result.entropy, entropy.numpy(), rtol=1e-4, atol=1e-5)
    assert result.entropy.max() <= math.log(19) + 1e-4
    assert len(explorer.stages) == 5 and set(explorer.blocks()) == {"afnb", "apnb"}


@pytest.mark.parametrize("block", ["apnb", "afnb"])
def test_attention_at_is_the_recorded_row(explorer, block):
    weights, geometry = explorer.attention_at(0, 0, block)
    assert weights.shape == (110,) and geometry.sizes == (1, 3, 6, 8)
    assert weights.sum() == pytest.approx(1.0, abs=1e-5)
    recorded = explorer.attention(block).weights[0]
    h, w = explorer.attention(block).query_hw
    np.testing.assert_array_equal(weights, recorded[0].numpy())
    last, _ = explorer.attention_at(W - 1, H - 1, block)
    np.testing.assert_array_equal(last, recorded[h * w - 1].numpy())


def test_feature_cell_follows_align_corners(explorer):
    h, w = explorer.attention("apnb").query_hw
    assert explorer.feature_cell(0, 0) == (0, 0)
    assert explorer.feature_cell(W - 1, H - 1) == (h - 1, w - 1)
    # align_corners=True: cell j sits at pixel j (W - 1) / (w - 1)
    x = 3 * (W - 1) / (w - 1)
    assert explorer.feature_cell(x + 0.4 * (W - 1) / (w - 1), 0) == (0, 3)


@pytest.mark.parametrize("x, y", [(W, 0), (0, H), (-0.5, 3), (float("nan"), 2)])
def test_points_outside_the_image_raise(explorer, x, y):
    with pytest.raises(ValueError, match="outside"):
        explorer.attention_at(x, y)


def test_anchor_map_agrees_with_attention_at_corners(explorer):
    for index in (0, 5, 60, 109):
        amap = explorer.anchor_map(index, "apnb")
        assert amap.shape == (H, W)
        assert amap[0, 0] == pytest.approx(explorer.attention_at(0, 0)[0][index], rel=1e-5)
        assert amap[-1, -1] == pytest.approx(explorer.attention_at(W - 1, H - 1)[0][index], rel=1e-5)
        # the off-diagonal corners tell rows from columns (a (w, h) layout agrees on the diagonal)
        assert amap[0, -1] == pytest.approx(explorer.attention_at(W - 1, 0)[0][index], rel=1e-5)
        assert amap[-1, 0] == pytest.approx(explorer.attention_at(0, H - 1)[0][index], rel=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        explorer.anchor_map(110)


def test_set_sampling_reruns_only_the_head(explorer, model):
    labels = explorer.result.labels.copy()
    logits = explorer.result.logits.clone()
    backbone, model.backbone = model.backbone, None  # any backbone call would fail
    try:
        result = explorer.set_sampling(SamplingConfig("pyramid_max", (1, 2, 3, 6)))
        assert explorer.attention_at(5, 5, "apnb")[0].shape == (50,)
        assert explorer.attention_at(5, 5, "afnb")[0].shape == (50,)
        assert not torch.equal(result.logits, logits)
        assert len(explorer.differences()) == 2
        back = explorer.set_sampling(None)
    finally:
        model.backbone = backbone
    assert explorer.differences() == []
    np.testing.assert_array_equal(back.labels, labels)
    torch.testing.assert_close(back.logits, logits)


def test_set_sampling_equals_a_network_switched_before_forward(model, image):
    config = SamplingConfig("pyramid_average", (1, 4, 8, 12))
    explorer = Explorer(model)
    explorer.run(image)
    switched = explorer.set_sampling(config).logits
    reference = build_network(model.config).eval()
    reference.load_state_dict(model.state_dict())
    reference.set_sampling(config)
    with torch.no_grad():
        expected = reference(preprocess(image, explorer.meta.normalization))[0]
    torch.testing.assert_close(switched, expected, rtol=1e-4, atol=1e-4)


def test_explorers_sharing_a_model_keep_their_own_sampling(model, image):
    first, second = Explorer(model), Explorer(model)
    first.run(image)
    first.set_sampling(SamplingConfig("pyramid_max", (1, 2, 3, 6)))
    second.run(image)
    assert second.attention_at(1, 1)[0].shape == (110,)
    assert first.attention_at(1, 1)[0].shape == (50,)
    first.set_sampling(SamplingConfig("random", (5,), seed=3))
    assert first.attention_at(1, 1)[0].shape == (25,)


def test_random_sampling_is_reproducible_by_seed(model, image):
    explorer = Explorer(model)
    explorer.run(image)
    a = explorer.set_sampling(SamplingConfig("pyramid_random", (1, 2, 3), seed=7)).logits.clone()
    b = explorer.set_sampling(SamplingConfig("pyramid_random", (1, 2, 3), seed=7)).logits
    c = explorer.set_sampling(SamplingConfig("pyramid_random", (1, 2, 3), seed=8)).logits
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_anchor_positions_follow_the_sampler_order(explorer):
    geometry = explorer.attention("apnb").anchors
    assert anchor_position(geometry, 0) == (0, 1, 0, 0, True)
    assert anchor_position(geometry, 1 + 3 * 1 + 2) == (1, 3, 1, 2, True)
    assert anchor_position(geometry, 109) == (3, 8, 7, 7, True)
    for index in range(110):  # a click at an anchor's bin centre finds that anchor
        level = int(geometry.level[index])
        y0, x0, y1, x1 = geometry.boxes[index].float().tolist()
        assert anchor_at(geometry, level, (x0 + x1) / 2, (y0 + y1) / 2) == index


def test_random_anchor_positions_are_feature_cells(model, image):
    explorer = Explorer(model)
    explorer.run(image)
    explorer.set_sampling(SamplingConfig("random", (4,), seed=1))
    geometry = explorer.attention("apnb").anchors
    level, n, row, col, on_grid = anchor_position(geometry, 3)
    assert (level, n, on_grid) == (0, 4, False)
    assert (row, col) == tuple(geometry.boxes[3, :2].tolist())


def test_block_gmacs_matches_the_benchmark_counter(explorer):
    bench = pytest.importorskip("ann.analysis.efficiency")
    h, w = explorer.stages[4].shape[-2:]
    sampling = explorer.sampling["context"]
    assert explorer.block_gmacs("context") == pytest.approx(bench.block_gmacs("apnb", h, w, 32, 16, sampling))
    low = explorer.stages[3].shape[1]
    expected = bench.block_gmacs("afnb", h, w, explorer.stages[4].shape[1], 16, sampling, low_channels=low)
    assert explorer.block_gmacs("fusion") == pytest.approx(expected)


def test_attention_entropy():
    assert attention_entropy(np.full(110, 1 / 110)) == pytest.approx((math.log(110), 110))
    one_hot = np.zeros(50)
    one_hot[3] = 1
    assert attention_entropy(one_hot) == pytest.approx((0.0, 1.0))


def test_label_helpers():
    pred = np.array([[0, 0, 1], [1, 2, 2]], np.uint8)
    target = np.array([[0, 1, 1], [1, 2, 255]], np.uint8)
    iou = per_class_iou(pred, target, 4)
    np.testing.assert_allclose(iou[:3], [1 / 2, 2 / 3, 1.0])
    assert np.isnan(iou[3])
    np.testing.assert_array_equal(error_map(pred, target), [[0, 1, 0], [0, 0, 2]])
    three_two_one = np.array([[0, 0, 0], [1, 1, 2]], np.uint8)
    np.testing.assert_allclose(class_shares(three_two_one, 4), [1 / 2, 1 / 3, 1 / 6, 0])
    up = resize_labels(target, (4, 6))
    assert set(np.unique(up)) <= {0, 1, 2, 255}
    with pytest.raises(ValueError, match="differ"):
        per_class_iou(pred, target[:1], 4)


def test_library_does_not_import_gradio():
    code = "import sys, ann.analysis.explore, ann.analysis.features; assert 'gradio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_identity_anchor_positions_are_the_feature_cells(model, image):
    # NB (identity sampling): anchor i is feature cell i in row-major order, one cell per anchor
    explorer = Explorer(model)
    explorer.run(image)
    explorer.set_sampling(SamplingConfig("identity"))
    h, w = explorer.attention("apnb").query_hw
    geometry = explorer.attention("apnb").anchors
    assert anchor_position(geometry, 0) == (0, 0, 0, 0, False)
    assert anchor_position(geometry, 2 * w + 5) == (0, 0, 2, 5, False)
    assert anchor_position(geometry, h * w - 1) == (0, 0, h - 1, w - 1, False)


def test_a_failed_run_keeps_the_previous_images_stages(model, image, monkeypatch):
    """After a run that fails in the head, the cached stages still belong to the image of the last
    result, so a later sampling switch recomputes that image, not a mix of two."""
    explorer = Explorer(model)
    first = explorer.run(image).logits.clone()
    other = np.ascontiguousarray(image[::-1])

    def broken(image):
        raise RuntimeError("head failed")

    monkeypatch.setattr(explorer, "_head", broken)
    with pytest.raises(RuntimeError, match="head failed"):
        explorer.run(other)
    monkeypatch.undo()
    torch.testing.assert_close(explorer.set_sampling(None).logits, first)
