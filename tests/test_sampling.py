"""Samplers of Table 7: anchor counts, order, geometry, determinism."""

import pytest
import torch
import torch.nn.functional as F

from ann.models.sampling import METHODS, Sampler, SamplingConfig, adaptive_bins


@pytest.mark.parametrize(
    "sizes, S", [((1, 3, 6, 8), 110), ((1, 2, 3, 6), 50), ((1, 4, 8, 12), 225), ((2, 5), 29)]
)
@pytest.mark.parametrize("kind", ["random", "max", "average"])
def test_pyramid_anchor_count(sizes, S, kind):
    sampler = Sampler(SamplingConfig(f"pyramid_{kind}", sizes))
    x = torch.randn(2, 4, 13, 17)
    assert sampler(x).shape == (2, 4, S)
    assert SamplingConfig(f"pyramid_{kind}", sizes).num_anchors == S
    assert sampler.anchors(13, 17).boxes.shape == (S, 4)


@pytest.mark.parametrize("kind", ["random", "max", "average"])
def test_single_level_takes_n_squared(kind):
    sampler = Sampler(SamplingConfig(kind, (15,)))
    assert sampler(torch.randn(1, 2, 20, 30)).shape == (1, 2, 225)


def test_pyramid_average_is_level_by_level_row_major():
    x = torch.randn(1, 3, 11, 14)
    out = Sampler(SamplingConfig("pyramid_average", (1, 3, 6, 8)))(x)
    expected = torch.cat([F.adaptive_avg_pool2d(x, n).flatten(2) for n in (1, 3, 6, 8)], dim=2)
    assert torch.equal(out, expected)
    # anchor 1 + 3 + 1 = 5 is the centre cell (row 1, col 1) of the 3x3 level
    assert torch.allclose(out[0, :, 5], F.adaptive_avg_pool2d(x, 3)[0, :, 1, 1])


def test_geometry_boxes_are_the_pooled_rectangles():
    """Each anchor's box, averaged over directly, gives the anchor's value (overlapping bins too)."""
    H, W = 13, 10  # 13 is not divisible by 3, 6 or 8: bins overlap
    x = torch.randn(1, 2, H, W)
    sampler = Sampler(SamplingConfig("pyramid_average", (1, 3, 6, 8)))
    out = sampler(x)[0]
    geometry = sampler.anchors(H, W)
    for s, (y0, x0, y1, x1) in enumerate(geometry.boxes.tolist()):
        assert torch.allclose(out[:, s], x[0, :, y0:y1, x0:x1].mean(dim=(1, 2)), atol=1e-6)
    assert geometry.level.tolist() == [0] + [1] * 9 + [2] * 36 + [3] * 64


def test_adaptive_bins_overlap_like_torch():
    assert adaptive_bins(5, 3) == [(0, 2), (1, 4), (3, 5)]
    assert adaptive_bins(8, 8) == [(i, i + 1) for i in range(8)]


def test_max_sampling_matches_box_maximum():
    x = torch.randn(1, 1, 9, 7)
    sampler = Sampler(SamplingConfig("pyramid_max", (2, 3)))
    out, geometry = sampler(x)[0, 0], sampler.anchors(9, 7)
    for s, (y0, x0, y1, x1) in enumerate(geometry.boxes.tolist()):
        assert out[s] == x[0, 0, y0:y1, x0:x1].max()


def test_random_sampling_reproducible_and_seeded():
    x = torch.randn(1, 3, 12, 12)
    a = Sampler(SamplingConfig("pyramid_random", (1, 2, 3), seed=7)).eval()
    b = Sampler(SamplingConfig("pyramid_random", (1, 2, 3), seed=7)).eval()
    c = Sampler(SamplingConfig("pyramid_random", (1, 2, 3), seed=8)).eval()
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))
    # the geometry names the very pixels that were sampled
    geometry = a.anchors(12, 12)
    ys, xs = geometry.boxes[:, 0], geometry.boxes[:, 1]
    assert torch.equal(a(x)[0], x[0][:, ys, xs])


def test_random_sampling_draws_anew_in_training():
    x = torch.randn(1, 3, 12, 12)
    sampler = Sampler(SamplingConfig("random", (3,), seed=1)).train()
    assert not torch.equal(sampler(x), sampler(x))
    index = sampler.random_index(12, 12, torch.device("cpu"))
    assert len(set(index.tolist())) == 9  # without replacement within a level


def test_identity_keeps_every_position():
    x = torch.randn(2, 3, 4, 5)
    sampler = Sampler(SamplingConfig("identity"))
    assert torch.equal(sampler(x), x.flatten(2))
    assert sampler.anchors(4, 5).boxes.shape == (20, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="pyramid"), "valid: identity"),
        (dict(method="average", sizes=(1, 3)), "takes one size"),
        (dict(method="pyramid_max", sizes=(0, 3)), "positive"),
    ],
)
def test_bad_config_names_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig(**kwargs)


def test_methods_are_the_six_of_table_7_plus_identity():
    assert set(METHODS) - {"identity"} == {
        "random", "max", "average", "pyramid_random", "pyramid_max", "pyramid_average"
    }  # fmt: skip


def test_eval_draw_does_not_depend_on_earlier_training_steps():
    """The app and the evaluator switch a trained sampler to eval: its anchors must be the fixed
    (seed, H, W) set, not one shifted by how many training steps the sampler happened to see."""
    x = torch.randn(1, 3, 12, 12)
    trained = Sampler(SamplingConfig("pyramid_random", (1, 2, 3), seed=5)).train()
    for _ in range(3):
        trained(x)
    fresh = Sampler(SamplingConfig("pyramid_random", (1, 2, 3), seed=5)).eval()
    assert torch.equal(trained.eval()(x), fresh(x))


def test_random_geometry_names_the_sampled_pixels_on_a_wide_map():
    # a non-square map: a flat index split by H instead of W (or rows for columns) names other
    # pixels, which a square map cannot tell apart
    H, W = 5, 11
    x = torch.arange(H * W, dtype=torch.float32).view(1, 1, H, W)
    sampler = Sampler(SamplingConfig("pyramid_random", (1, 2), seed=2)).eval()
    geometry = sampler.anchors(H, W)
    ys, xs = geometry.boxes[:, 0], geometry.boxes[:, 1]
    assert (ys < H).all() and (xs < W).all()
    assert torch.equal(sampler(x)[0, 0], x[0, 0, ys, xs])
    assert geometry.level.tolist() == [0] + [1] * 4  # which pyramid level each anchor belongs to


def test_anchor_boxes_scale_rows_by_height_and_columns_by_width():
    """A 4x8 feature map of a 32x128 image: 8 pixels per row cell, 16 per column cell."""
    geometry = Sampler(SamplingConfig("pyramid_average", (2,))).anchors(4, 8)
    assert geometry.boxes.tolist()[1] == [0, 4, 2, 8]  # top-right bin: rows 0..2, columns 4..8
    assert geometry.to_pixels((32, 128)).tolist()[1] == [0.0, 64.0, 16.0, 128.0]


def test_random_sampling_of_more_anchors_than_positions_says_why():
    """The sampler refuses with the words of the one fit check, `misfit`, that the app also asks."""
    sampler = Sampler(SamplingConfig("random", (5,))).eval()
    with pytest.raises(ValueError, match="needs 25 distinct positions; the 4x4 feature map has 16"):
        sampler(torch.randn(1, 3, 4, 4))
