import numpy as np
import pytest
import torch

from ann.analysis import features
from ann.analysis.features import (
    MaskedLogitSum,
    TargetError,
    class_mask,
    cosine_map,
    cosine_maps,
    feature_cell,
    majority_class,
    named_features,
    normalize_maps,
    pca_projection,
    reduce_channels,
    region_mask,
    stage_module,
)
from ann.models import build_network, variant

TINY = dict(backbone="resnet18", num_classes=5, head_channels=16, key_channels=8, value_channels=8)


@pytest.fixture(scope="module")
def full():
    torch.manual_seed(0)
    return build_network(variant("full", **TINY)).eval()


def test_named_features_follow_the_blocks_of_the_variant(full):
    x = torch.randn(1, 3, 32, 32)
    stages = full.backbone(x)
    head = full.head(stages)
    names = named_features(stages, head, full.config)
    assert list(names) == [*features.STAGES, "afnb", "apnb"]
    assert names["afnb"] is head.fused and names["apnb"] is head.context_out
    baseline = variant("baseline", **TINY)
    assert list(named_features(stages, head, baseline)) == list(features.STAGES)
    with pytest.raises(ValueError, match="five backbone stages"):
        named_features(stages[:4])


def test_mean_and_max_reduce_over_channels():
    x = torch.arange(24.0).reshape(1, 2, 3, 4)
    assert torch.equal(reduce_channels(x, "mean"), x[0].mean(0))
    assert torch.equal(reduce_channels(x, "max"), x[0, 1])
    with pytest.raises(ValueError, match="valid: mean, max, pca"):
        reduce_channels(x, "median")
    with pytest.raises(ValueError, match="batch of 2"):
        reduce_channels(torch.zeros(2, 2, 3, 4), "mean")


def numpy_pca(x: torch.Tensor, k: int = 3) -> np.ndarray:
    X = x.flatten(1).T.double().numpy()
    X = X - X.mean(0)
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    axes = vt[:k].T
    axes *= np.sign(axes[np.abs(axes).argmax(0), range(k)])
    return (X @ axes).T.reshape(k, *x.shape[1:])


@pytest.mark.parametrize("shape", [(6, 8, 9), (64, 4, 4)])  # Gram over channels, over positions
def test_pca_matches_svd_with_a_fixed_sign(shape):
    torch.manual_seed(1)
    scales = torch.tensor([5.0, 3.0, 2.0] + [0.1] * (shape[0] - 3))
    x = torch.randn(*shape) * scales[:, None, None]
    projected = pca_projection(x)
    assert projected.shape == (3, *shape[1:])
    np.testing.assert_allclose(projected.numpy(), numpy_pca(x), atol=1e-4)
    # the sign convention makes the result independent of a flip of the input's direction
    flipped = pca_projection(-x)
    assert torch.allclose(flipped.abs(), projected.abs(), atol=1e-4)


def test_pca_of_fewer_channels_than_components_pads_with_zeros():
    x = torch.randn(2, 5, 5)
    projected = reduce_channels(x, "pca")
    assert projected.shape == (3, 5, 5) and torch.all(projected[2] == 0)


def test_shared_normalisation_gives_equal_values_equal_colours():
    small = torch.linspace(0, 1, 100).reshape(10, 10)
    large = torch.linspace(0, 10, 100).reshape(10, 10)
    shared = normalize_maps({"small": small, "large": large}, shared=True)
    own = normalize_maps({"small": small, "large": large}, shared=False)
    assert shared["small"].max() < 0.2 and shared["large"].max() == 1.0
    assert own["small"].max() == 1.0 and own["small"].min() == 0.0
    # one range, the envelope of the maps' 1st-99th percentile ranges, for both maps
    low = min(np.percentile(small, 1), np.percentile(large, 1))
    high = max(np.percentile(small, 99), np.percentile(large, 99))
    for name, values in (("small", small), ("large", large)):
        assert torch.allclose(shared[name], ((values - low) / (high - low)).clamp(0, 1), atol=1e-5)


def test_pca_normalisation_is_symmetric_about_zero_and_cannot_mix():
    pca = torch.randn(3, 6, 6)
    out = normalize_maps({"a": pca, "b": 0 * pca})
    assert torch.all(out["b"] == 0.5)
    with pytest.raises(ValueError, match="cannot share"):
        normalize_maps({"a": pca, "b": pca[0]})


def test_feature_cell_aligns_corners_like_the_upsampling():
    assert feature_cell((0, 0), (1024, 2048), (129, 257), True) == (0, 0)
    assert feature_cell((1023, 2047), (1024, 2048), (129, 257), True) == (128, 256)
    assert feature_cell((8, 16), (1024, 2048), (129, 257), True) == (1, 2)
    assert feature_cell((7, 15), (64, 64), (8, 8), False) == (0, 1)
    with pytest.raises(ValueError, match="outside the image"):
        feature_cell((64, 0), (64, 64), (8, 8), True)


def test_cosine_map_is_one_at_the_query_and_zero_for_orthogonal_features():
    x = torch.zeros(2, 3, 3)
    x[0, :, :2] = 1.0  # left two columns along e0
    x[1, :, 2] = 2.0  # right column along e1
    similarity = cosine_map(x, (1, 0))
    assert torch.allclose(similarity[:, :2], torch.ones(3, 2))
    assert torch.allclose(similarity[:, 2], torch.zeros(3))
    result = cosine_maps({"a": x, "b": x[:, :1, :1]}, (63, 0), (64, 64))
    assert result["a"][1] == (2, 0) and result["b"][1] == (0, 0)


@pytest.mark.parametrize("name", [*features.STAGES, "afnb", "apnb"])
def test_stage_module_outputs_the_named_feature(full, name):
    x = torch.randn(1, 3, 32, 32)
    seen = []
    handle = stage_module(full, name).register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        stages = full.backbone(x)
        expected = named_features(stages, full.head(stages), full.config)[name]
    handle.remove()
    assert torch.allclose(seen[-1], expected)


def test_stage_module_names_the_valid_layers():
    baseline = build_network(variant("baseline", **TINY))
    with pytest.raises(ValueError, match="valid: stage1, stage2, stage3, stage4, stage5$"):
        stage_module(baseline, "apnb")


def test_absent_class_error_names_the_present_classes():
    prediction = torch.tensor([[0, 0], [2, 2]])
    assert class_mask(prediction, 2).sum() == 2
    with pytest.raises(TargetError, match="'car' is absent.*road, sidewalk"):
        class_mask(prediction, 1, ["road", "car", "sidewalk"])


def test_region_mask_is_a_clipped_disc():
    mask = region_mask((5, 7), (0, 6), 1)
    assert mask.sum() == 3 and mask[0, 6] and mask[1, 6] and mask[0, 5] and not mask[1, 5]
    with pytest.raises(TargetError, match="outside"):
        region_mask((5, 7), (5, 0), 1)
    prediction = torch.tensor([[1, 1, 3], [3, 3, 3]])
    assert majority_class(prediction, torch.ones(2, 3, dtype=torch.bool)) == 3


def test_masked_logit_sum_is_the_class_logit_over_the_mask(full):
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[4:9, 20:30] = True
    target = MaskedLogitSum(full, 3, mask)
    value = target(x)
    expected = full(x)[:, 3][:, mask].sum(1)
    assert value.shape == (2,) and torch.allclose(value, expected, rtol=1e-5, atol=1e-4)
    value.sum().backward()
    assert x.grad.abs().sum() > 0
    # one pixel stays a target on a half-size copy of the image
    point = torch.zeros(32, 32, dtype=torch.bool)
    point[31, 31] = True
    half = MaskedLogitSum(full, 0, point)(x[:, :, ::2, ::2])
    assert torch.allclose(half, full(x[:, :, ::2, ::2])[:, 0, 15, 15], atol=1e-5)
    with pytest.raises(TargetError, match="non-empty"):
        MaskedLogitSum(full, 0, torch.zeros(4, 4, dtype=torch.bool))


def test_imagenet_backbone_is_the_pretrained_efficientnet():
    from ann.models.efficientnet import efficientnet_lite0

    backbone, normalization = features.imagenet_backbone()
    assert normalization["mean"] == [127.0, 127.0, 127.0] and not backbone.training
    stages = features.backbone_stages(backbone, torch.randn(1, 3, 32, 32))
    assert [s.shape[1] for s in stages] == [16, 24, 40, 112, 320]
    untrained = efficientnet_lite0(8, pretrained=False)
    assert not torch.equal(backbone.stem.conv.weight, untrained.stem.conv.weight)


def test_stage_modules_of_the_efficientnet_backbone():
    torch.manual_seed(0)
    model = build_network(variant("apnb", **{**TINY, "backbone": "efficientnet_lite0"}))
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    for name in (*features.STAGES, "apnb"):
        seen = []
        handle = stage_module(model, name).register_forward_hook(lambda m, i, o, seen=seen: seen.append(o))
        with torch.no_grad():
            stages = model.backbone(x)
            expected = named_features(stages, model.head(stages), model.config)[name]
        handle.remove()
        assert torch.allclose(seen[-1], expected), name


def test_cosine_map_queries_row_then_column():
    # (row, col) = (1, 3) on a 2 x 4 map: a (col, row) mix-up would read another cell or fail
    x = torch.randn(5, 2, 4, generator=torch.Generator().manual_seed(0))
    similarity = cosine_map(x, (1, 3))
    query = x[:, 1, 3].numpy()
    flat = x.flatten(1).numpy()  # (C, N)
    expected = query @ flat / (np.linalg.norm(query) * np.linalg.norm(flat, axis=0))
    np.testing.assert_allclose(similarity.flatten().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert similarity[1, 3] == pytest.approx(1.0)
