"""Joint transforms: image/label alignment, nearest-only labels, padding, determinism, tensors."""

import numpy as np
import pytest
import torch
import torch.utils.data
from hypothesis import given, settings
from hypothesis import strategies as st

from ann.data.transforms import (
    Compose,
    Normalize,
    RandomBrightness,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    RandomScaleCrop,
    ToTensor,
    eval_transform,
    mean_fill,
    resize,
    train_transform,
)

ANN_BGR = {"mean": [102.98, 115.95, 122.77], "std": [1.0, 1.0, 1.0], "scale": 1.0, "channel_order": "BGR"}
IMAGENET = {
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "scale": 255.0,
    "channel_order": "RGB",
}
PAD = (0, 0, 0)  # blue 0 marks padding; real pixels have blue 128


def coordinate_sample(H: int, W: int, axis: str):
    """Image whose red/green encode x/y (x*6, y*6), blue 128; label = the x (or y) coordinate."""
    y, x = np.mgrid[:H, :W]
    image = np.stack([x * 6, y * 6, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    label = (x if axis == "x" else y).astype(np.uint8)
    return image, label


def augment(seed: int, crop=(20, 30)) -> Compose:
    return Compose([RandomScale(), RandomCrop(crop, PAD), RandomHorizontalFlip(0.5)], seed=seed)


@pytest.mark.parametrize("axis", ["x", "y"])
def test_scale_crop_flip_keep_label_on_its_pixels(axis):
    flips = 0
    for seed in range(12):
        image, label = augment(seed)(*coordinate_sample(24, 40, axis))
        real = label != 255
        # Padding is in the same place in both: ignore exactly where the image is pad colour.
        np.testing.assert_array_equal(real, image[..., 2] == 128)
        decoded = image[..., 0 if axis == "x" else 1].astype(np.float64) / 6
        error = np.abs(decoded[real] - label[real])
        # Bilinear vs nearest disagree by under one source pixel; a drift of 2+ pixels fails.
        assert error.max() <= 1.0 and error.mean() < 0.5, (seed, error.max())
        if axis == "x":  # x decreasing along the row means this seed flipped
            flips += np.corrcoef(np.nonzero(real)[1], label[real])[0, 1] < 0
    assert axis == "y" or flips > 0  # some seeds flipped, so the flip branch was checked too


def test_alignment_check_catches_a_drifted_label():
    image, label = coordinate_sample(24, 40, "x")
    image, label = RandomCrop((20, 30), PAD)(image, label, np.random.default_rng(0))
    drifted = np.roll(label, 2, axis=1)
    assert np.abs(image[..., 0] / 6 - drifted)[:, 2:].max() >= 2


@settings(max_examples=40, deadline=None)
@given(
    H=st.integers(1, 30), W=st.integers(1, 30), seed=st.integers(0, 2**32 - 1),
    values=st.lists(st.sampled_from([0, 1, 5, 18, 100, 255]), min_size=1, max_size=4, unique=True),
)  # fmt: skip
def test_scaled_labels_keep_their_value_set(H, W, seed, values):
    rng = np.random.default_rng(seed)
    label = rng.choice(np.asarray(values, dtype=np.uint8), (H, W))
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    out_image, out_label = RandomScale()(image, label, rng)
    assert set(np.unique(out_label)) <= set(values)
    assert out_image.shape[:2] == out_label.shape and out_image.dtype == np.uint8


def test_resize_never_blends_class_ids():
    label = np.array([[0, 10], [20, 30]], dtype=np.uint8)
    _, big = resize(np.zeros((2, 2, 3), np.uint8), label, 7, 9)
    assert set(np.unique(big)) == {0, 10, 20, 30}


@settings(max_examples=60, deadline=None)
@given(
    H=st.integers(1, 40), W=st.integers(1, 40), crop_h=st.integers(1, 40), crop_w=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_crop_is_a_window_of_the_padded_input(H, W, crop_h, crop_w, seed):
    y, x = np.mgrid[:H, :W]
    image = np.stack([y, x, np.ones_like(x)], axis=-1).astype(np.uint8)
    label = ((y * 7 + x) % 250).astype(np.uint8)
    out_image, out_label = RandomCrop((crop_h, crop_w), (9, 9, 0))(image, label, np.random.default_rng(seed))
    assert out_image.shape == (crop_h, crop_w, 3) and out_label.shape == (crop_h, crop_w)
    real = out_image[..., 2] == 1
    np.testing.assert_array_equal(out_label == 255, ~real)
    assert (out_image[~real] == (9, 9, 0)).all()
    rows, cols = np.nonzero(real)
    if rows.size:
        # Real pixels form one top-left block of consecutive source rows and columns.
        top, left = out_image[0, 0, :2].astype(int)
        assert rows.min() == 0 and cols.min() == 0
        np.testing.assert_array_equal(out_image[rows, cols, 0], top + rows)
        np.testing.assert_array_equal(out_image[rows, cols, 1], left + cols)
        np.testing.assert_array_equal(out_label[rows, cols], ((top + rows) * 7 + left + cols) % 250)
        assert real.sum() == min(H - top, crop_h) * min(W - left, crop_w)
    if H >= crop_h and W >= crop_w:
        assert real.all()


def test_flip_mirrors_both():
    image, label = coordinate_sample(4, 6, "x")
    out_image, out_label = RandomHorizontalFlip(1.0)(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(out_image, image[:, ::-1])
    np.testing.assert_array_equal(out_label, label[:, ::-1])


def test_brightness_shifts_within_ten_and_leaves_the_label():
    image = np.full((4, 4, 3), 100, np.uint8)
    label = np.arange(16, dtype=np.uint8).reshape(4, 4)
    shifts = set()
    for seed in range(20):
        out, out_label = RandomBrightness(10)(image, label, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and len(np.unique(out)) == 1 and abs(int(out[0, 0, 0]) - 100) <= 10
        assert out_label is label
        shifts.add(int(out[0, 0, 0]))
    assert len(shifts) > 5
    # saturation at 0 and 255: test_brightness_saturates_instead_of_wrapping


def test_same_seed_same_augmentation_and_different_seed_differs():
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    label = np.random.default_rng(1).integers(0, 19, (30, 40), dtype=np.uint8)
    first = [train_transform(24, ANN_BGR, seed=7)(image, label) for _ in range(2)]
    torch.testing.assert_close(first[0], first[1])
    repeated = train_transform(24, ANN_BGR, seed=7)
    stream = [repeated(image, label)[0] for _ in range(3)]
    other = train_transform(24, ANN_BGR, seed=8)(image, label)[0]
    assert not torch.equal(stream[0], stream[1]) and not torch.equal(stream[0], other)


def test_normalize_bgr_and_scale():
    image = np.array([[[10, 20, 30]]], dtype=np.uint8)
    spec = {"mean": [1.0, 2.0, 3.0], "std": [2.0, 2.0, 2.0], "scale": 1.0, "channel_order": "BGR"}
    out, _ = Normalize(spec)(image, None)
    np.testing.assert_allclose(out[0, 0], [(30 - 1) / 2, (20 - 2) / 2, (10 - 3) / 2])
    out, _ = Normalize(IMAGENET)(np.full((1, 1, 3), 255, np.uint8), None)
    np.testing.assert_allclose(out[0, 0], (1 - np.array(IMAGENET["mean"])) / IMAGENET["std"], rtol=1e-6)


@pytest.mark.parametrize("spec", [ANN_BGR, IMAGENET])
def test_mean_padding_normalises_to_zero(spec):
    fill = mean_fill(spec)
    out, _ = Normalize(spec)(np.array([[fill]], dtype=np.uint8), None)
    assert np.abs(out * np.asarray(spec["std"])).max() <= 0.5 / spec["scale"] * 1.0001
    assert mean_fill(ANN_BGR) == (123, 116, 103)  # RGB order of the BGR mean


@pytest.mark.parametrize(
    "bad",
    [
        {"mean": [0, 0, 0], "std": [1, 1, 1], "scale": 1.0},
        {**ANN_BGR, "channel_order": "RGBA"},
        {**ANN_BGR, "mean": [1]},
    ],
)
def test_bad_normalization_is_rejected(bad):
    with pytest.raises(ValueError, match="channel_order|mean"):
        Normalize(bad)


def test_bad_pad_mode_lists_valid_ones():
    with pytest.raises(ValueError, match="mean.*zero"):
        train_transform(8, ANN_BGR, pad="reflect")


def test_train_transform_outputs_tensors_of_crop_size():
    image = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    label = np.full((16, 32), 3, np.uint8)
    out_image, out_label = train_transform((24, 20), IMAGENET, seed=1)(image, label)
    assert out_image.shape == (3, 24, 20) and out_image.dtype == torch.float32
    assert out_label.shape == (24, 20) and out_label.dtype == torch.int64
    assert set(out_label.unique().tolist()) <= {3, 255}


def test_eval_transform_keeps_size_and_values():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    label = np.random.default_rng(1).integers(0, 19, (5, 7), dtype=np.uint8)
    out_image, out_label = eval_transform(ANN_BGR)(image, label)
    expected = image[..., ::-1].astype(np.float32) - np.float32(ANN_BGR["mean"])
    np.testing.assert_allclose(out_image.permute(1, 2, 0).numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(out_label.numpy(), label)
    assert ToTensor()(image, label)[0].is_contiguous()


class RandomNumbers(torch.utils.data.Dataset):
    """Each item is one draw of the transform's generator, to see which stream a worker uses."""

    def __init__(self) -> None:
        self.transform = Compose([lambda image, label, rng: (rng.random(), label)], seed=3)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        return self.transform(None, index)[0]


def draws(seed: int) -> list[float]:
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(RandomNumbers(), batch_size=1, num_workers=2)
    return [float(x) for x in loader]


def test_dataloader_workers_draw_distinct_reproducible_streams():
    first, again, other = draws(0), draws(0), draws(1)
    assert first == again
    assert len(set(first)) == len(first)  # workers did not replay one stream
    assert first != other


@settings(max_examples=80, deadline=None)
@given(
    H=st.integers(4, 60), W=st.integers(4, 60), crop_h=st.integers(1, 50), crop_w=st.integers(1, 50),
    seed=st.integers(0, 2**32 - 1), axis=st.sampled_from([0, 1]),
)  # fmt: skip
def test_fused_scale_crop_equals_scale_then_crop(H, W, crop_h, crop_w, seed, axis):
    """The fast path resamples only the kept window: same window, same padding, same draws.

    Labels hold a source coordinate (row or column index). Two nearest-neighbour resamplers may
    break exact ties (a sample centre on a pixel border) differently, so they may differ by one
    source pixel, never more; the bilinear images differ by intermediate rounding only.
    """
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    label = np.indices((H, W))[axis].astype(np.uint8)
    fill = (7, 8, 9)
    slow_rng, fast_rng = np.random.default_rng(seed + 1), np.random.default_rng(seed + 1)
    slow, slow_label = RandomCrop((crop_h, crop_w), fill)(*RandomScale()(image, label, slow_rng), slow_rng)
    fast, fast_label = RandomScaleCrop((crop_h, crop_w), fill)(image, label, fast_rng)
    assert fast.shape == slow.shape and fast_label.shape == slow_label.shape
    padding = slow_label == 255
    np.testing.assert_array_equal(fast_label == 255, padding)
    assert (fast[padding] == fill).all()
    assert np.abs(fast_label[~padding].astype(int) - slow_label[~padding]).max(initial=0) <= 1
    assert np.abs(fast.astype(int) - slow).max() <= 2
    assert slow_rng.random() == fast_rng.random()  # the next transform draws the same numbers


def test_fused_scale_crop_keeps_alignment_on_a_large_image():
    """Red = column, label = column, on an image larger than the crop at every scale."""
    y, x = np.mgrid[:300, :250]
    image = np.stack([x, y % 256, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    label = x.astype(np.uint8)
    for seed in range(8):
        out, out_label = RandomScaleCrop((64, 96), PAD)(image, label, np.random.default_rng(seed))
        assert (out_label != 255).all()
        assert np.abs(out[..., 0].astype(int) - out_label).max() <= 1, seed


@pytest.mark.parametrize("norm", [ANN_BGR, IMAGENET])
def test_uint8_batches_normalised_on_the_device_equal_the_cpu_path(norm):
    """The trainer's uint8 samples + ann.inference.Normalization give the very same floats."""
    from ann.inference import Normalization

    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    label = rng.integers(0, 19, (40, 50), dtype=np.uint8)
    float_image, long_label = train_transform(24, norm, seed=3)(image, label)
    u8_image, u8_label = train_transform(24, norm, seed=3, normalize=False)(image, label)
    assert u8_image.dtype == torch.uint8 and u8_label.dtype == torch.uint8
    assert torch.equal(Normalization(norm)(u8_image[None])[0], float_image)
    assert torch.equal(u8_label.long(), long_label)


@settings(max_examples=40, deadline=None)
@given(
    H=st.integers(2, 30), W=st.integers(2, 30), crop=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
    values=st.lists(st.sampled_from([0, 1, 5, 18, 100, 254]), min_size=2, max_size=4, unique=True),
)  # fmt: skip
def test_fused_scale_crop_labels_keep_their_value_set(H, W, crop, seed, values):
    """The training path (RandomScaleCrop) resamples labels by nearest neighbour too: a blended
    label would invent class ids between the real ones."""
    rng = np.random.default_rng(seed)
    label = rng.choice(np.asarray(values, dtype=np.uint8), (H, W))
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    _, out_label = RandomScaleCrop(crop, PAD)(image, label, rng)
    assert set(np.unique(out_label)) <= set(values) | {255}


def test_brightness_saturates_instead_of_wrapping():
    """Every shift keeps the order of intensities: 255 + 7 stays white, 3 - 7 stays black."""
    image = np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None], (1, 256, 3))
    for seed in range(10):
        out, _ = RandomBrightness(10)(image, None, np.random.default_rng(seed))
        assert (np.diff(out[0, :, 0].astype(int)) >= 0).all(), seed
        assert out[0, 0, 0] == 0 or out[0, -1, 0] == 255  # one end saturates, whichever the sign


def test_random_scale_stretches_by_scale_and_aspect_as_documented():
    """Fixed ranges make the draw exact: s = 2, a = 0.81, so width x s*sqrt(a) = 1.8 and
    height x s/sqrt(a) = 2.222; with a = 1, s = 0.5 (the scale range's lower end) halves."""
    rng = np.random.default_rng(0)
    assert RandomScale((2.0, 2.0), (0.81, 0.81)).draw_size(100, 200, rng) == (222, 360)
    assert RandomScale((0.5, 0.5), (1.0, 1.0)).draw_size(100, 200, rng) == (50, 100)
    sizes = [RandomScale().draw_size(100, 100, rng) for _ in range(200)]
    assert min(sizes)[0] < 55 and max(sizes)[0] > 190  # the paper's 0.5..2.0, both ends reached


def test_train_transform_flips_about_half_the_samples():
    """Scale, crop and brightness held fixed, the label (= column index) shows each flip."""
    image = np.zeros((6, 10, 3), np.uint8)
    label = np.broadcast_to(np.arange(10, dtype=np.uint8), (6, 10))
    transform = train_transform((6, 10), ANN_BGR, (1.0, 1.0), (1.0, 1.0), 0.0, normalize=False)
    flips = 0
    for _ in range(60):
        out = transform(image, label)[1][0].tolist()
        assert out in (list(range(10)), list(range(9, -1, -1)))
        flips += out[0] == 9
    assert 15 <= flips <= 45
