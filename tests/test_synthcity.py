"""SynthCity: determinism, label space, context pairs that share appearance, CLI layout, dataset API."""

import hashlib
import subprocess
import sys
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest
from PIL import Image

from ann.cli.synthcity import main, paths
from ann.data import synthcity
from ann.data.labels import CITYSCAPES_CLASSES, IGNORE_INDEX
from ann.data.synthcity import SPLITS, SynthCity, render, scene

SIZE = (256, 128)
N_SAMPLE = 32
ROAD, SIDEWALK, BUILDING, WALL, VEGETATION, TERRAIN, SKY = 0, 1, 2, 3, 8, 9, 10
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN = 11, 12, 13, 14, 15, 16
PAIRS = [
    (ROAD, SIDEWALK),
    (BUILDING, WALL),
    (VEGETATION, TERRAIN),
    (TRUCK, BUS),
    (BUS, TRAIN),
    (PERSON, RIDER),
]


@lru_cache(maxsize=1)
def sample() -> list[tuple[np.ndarray, np.ndarray]]:
    return [render(1, "train", i, SIZE) for i in range(N_SAMPLE)]


def digest(seed: int, split: str, index: int) -> str:
    image, label = render(seed, split, index, SIZE)
    return hashlib.sha256(image.tobytes() + label.tobytes()).hexdigest()


def test_render_shapes_and_label_space():
    image, label = render(0, "val", 3, (200, 100))
    assert image.shape == (100, 200, 3) and image.dtype == np.uint8
    assert label.shape == (100, 200) and label.dtype == np.uint8
    values = set(np.unique(label).tolist())
    assert values <= set(range(len(CITYSCAPES_CLASSES))) | {IGNORE_INDEX}


def test_same_bytes_in_another_process():
    code = (
        "import hashlib; from ann.data.synthcity import render;"
        f"im, lb = render(5, 'test', 17, {SIZE});"
        "print(hashlib.sha256(im.tobytes() + lb.tobytes()).hexdigest())"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == digest(5, "test", 17)


def test_seed_split_and_index_change_the_scene():
    reference = digest(0, "val", 0)
    assert reference == digest(0, "val", 0)
    others = {digest(1, "val", 0), digest(0, "test", 0), digest(0, "val", 1), digest(0, "train", 0)}
    assert len({reference} | others) == 5  # val 0 is neither train 0 nor test 0: splits do not overlap


def test_every_class_appears_in_a_modest_sample_and_ignore_is_rare():
    counts = Counter()
    for _, label in sample():
        counts.update(np.unique(label).tolist())
    assert set(range(len(CITYSCAPES_CLASSES))) <= set(counts)
    ignored = sum(int((label == IGNORE_INDEX).sum()) for _, label in sample())
    assert ignored < 0.03 * N_SAMPLE * SIZE[0] * SIZE[1]


def texture_shares(canvas, classes: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Per class: the fraction of its pixels drawn with each texture."""
    counts = np.bincount(np.asarray(canvas.slots).ravel(), minlength=256)
    shares = {c: np.zeros(16) for c in classes}
    for i, (c, _, tex) in enumerate(canvas.table):
        if c in shares:
            shares[c][tex] += counts[i]
    return {c: v / v.sum() for c, v in shares.items() if v.sum() > 0}


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_pairs_share_their_texture_in_every_image(a, b):
    """Within an image the texture that dominates the pair covers a large part of both classes."""
    both = 0
    for index in range(64):
        rng = np.random.default_rng(np.random.SeedSequence([1, synthcity.SPLIT_IDS["train"], index]))
        shares = texture_shares(scene.build(rng, SIZE), (a, b))
        if len(shares) == 2:
            shared = int(np.argmax(shares[a] + shares[b]))
            assert min(shares[a][shared], shares[b][shared]) > 0.25, (
                CITYSCAPES_CLASSES[a],
                CITYSCAPES_CLASSES[b],
            )
            both += 1
    assert both >= 2


def test_road_and_sidewalk_have_the_same_colour_per_image():
    gaps = []
    for image, label in sample():
        road, walk = image[label == ROAD].astype(float), image[label == SIDEWALK].astype(float)
        if len(road) > 50 and len(walk) > 50:
            spread = np.sqrt((road.var(0) + walk.var(0)) / 2).mean()
            gaps.append(np.abs(road.mean(0) - walk.mean(0)).mean() / spread)
    # Between-class controls (road vs car, road vs sky) are 1 to 3 spreads apart.
    assert np.median(gaps) < 0.35


def pooled_mean(cls: int) -> np.ndarray:
    return np.concatenate([image[label == cls] for image, label in sample()]).astype(float).mean(0)


@pytest.mark.parametrize(("a", "b"), [(ROAD, SIDEWALK), (VEGETATION, TERRAIN)])
def test_pairs_have_close_mean_colours_unlike_other_classes(a, b):
    close = np.abs(pooled_mean(a) - pooled_mean(b)).mean()
    far = np.abs(pooled_mean(ROAD) - pooled_mean(SKY)).mean()
    assert close < 15 < far


def centroid(cls: int) -> tuple[float, float]:
    """Mean (|column - centre| / width, row / height) of a class's pixels."""
    cols, rows = [], []
    for _, label in sample():
        r, c = np.nonzero(label == cls)
        cols.append(np.abs(c - SIZE[0] / 2) / SIZE[0])
        rows.append(r / SIZE[1])
    return float(np.concatenate(cols).mean()), float(np.concatenate(rows).mean())


def test_pairs_differ_in_layout():
    assert centroid(SIDEWALK)[0] > centroid(ROAD)[0] + 0.1  # sidewalks flank the road
    assert centroid(TERRAIN)[1] > centroid(VEGETATION)[1] + 0.1  # grass on the ground, crowns above
    assert centroid(WALL)[1] > centroid(BUILDING)[1] + 0.05  # walls are low


def test_cli_writes_the_cityscapes_layout(tmp_path):
    main(
        [
            "--split",
            "test",
            "--count",
            "2",
            "--start",
            "3",
            "--out",
            str(tmp_path),
            "--size",
            "64x32",
            "--seed",
            "2",
        ]
    )
    for index in (3, 4):
        image_path, label_path = paths(tmp_path, "test", index)
        assert image_path == tmp_path / f"leftImg8bit/test/synthcity/synthcity_{index:06d}_leftImg8bit.png"
        assert (
            label_path == tmp_path / f"gtFine/test/synthcity/synthcity_{index:06d}_gtFine_labelTrainIds.png"
        )
        image, label = render(2, "test", index, (64, 32))
        with Image.open(image_path) as written_image, Image.open(label_path) as written_label:
            assert written_label.mode == "L"
            np.testing.assert_array_equal(np.asarray(written_image), image)
            np.testing.assert_array_equal(np.asarray(written_label), label)


def test_dataset_api():
    assert SPLITS["val"] == SPLITS["test"] == 500
    val = SynthCity("val", seed=0, size=(64, 32))
    assert len(val) == 500
    image, label = val[7]
    np.testing.assert_array_equal(image, render(0, "val", 7, (64, 32))[0])
    train = SynthCity("train", size=(64, 32), length=10**9, transform=lambda im, lb: (im.shape, lb.max()))
    assert train[123456789][0] == (32, 64, 3)
    with pytest.raises(ValueError, match="length"):
        SynthCity("train")
    with pytest.raises(ValueError, match="split"):
        SynthCity("training")
    with pytest.raises(IndexError):
        val[500]
    with pytest.raises(IndexError):
        render(0, "test", 500, (64, 32))


def test_context_blind_oracle_collapses_each_group_onto_its_most_frequent_class():
    from ann.data.synthcity.ceiling import context_blind_ceiling

    label = np.full((4, 10), SKY, np.uint8)
    label[2:, :6] = ROAD  # 12 road pixels
    label[2:, 6:] = SIDEWALK  # 8 sidewalk pixels: a context-blind model calls them road
    label[0, 0] = IGNORE_INDEX
    summary = context_blind_ceiling([label])
    iou = summary["per_class_iou"]
    assert iou["sidewalk"] == 0 and iou["road"] == pytest.approx(12 / 20) and iou["sky"] == 1
    assert iou["wall"] is None  # absent classes stay out of the mean
    assert summary["miou"] == pytest.approx((0.6 + 0 + 1) / 3)


def test_ceiling_cli_reports_the_mean_and_every_class(capsys):
    main(["--ceiling", "4", "--size", "128x64"])
    out = capsys.readouterr().out
    assert out.startswith("context-blind oracle on val 0..3 (128x64): mIoU ")
    assert sum(line.startswith("  ") for line in out.splitlines()) == 19


def test_the_ego_bonnet_is_void_and_spans_the_bottom_row():
    # Cityscapes labels the ego car's bonnet 255 (ground.draw_hood, drawn in a quarter of the
    # scenes); labelled as road it would teach the network that the bottom edge is road.
    with_void = [label for _, label in sample() if (label == IGNORE_INDEX).any()]
    assert len(with_void) >= 2
    assert all((label[-1] == IGNORE_INDEX).all() for label in with_void)


def test_dataset_renders_its_own_seed_and_refuses_more_than_the_split():
    city = SynthCity("test", seed=3, size=(64, 32), length=2)
    np.testing.assert_array_equal(city[1][0], render(3, "test", 1, (64, 32))[0])
    assert not np.array_equal(city[1][0], render(0, "test", 1, (64, 32))[0])
    with pytest.raises(ValueError, match="has 500 images, length=501"):
        SynthCity("val", length=501)
