"""Each dataset layout on a tiny fixture built in that layout, and every bad-data error."""

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from ann.data.datasets import DatasetError, SegmentationFolder, build_dataset
from ann.data.labels import CITYSCAPES_LABELID_TO_TRAINID
from ann.data.layouts import CITYSCAPES, INVALID, LAYOUTS, coco_stuff_raw_lut
from ann.data.transforms import eval_transform

H, W = 16, 32
NORMALIZATION = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "scale": 1.0, "channel_order": "RGB"}


def random_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def random_label(seed: int, values) -> np.ndarray:
    return np.random.default_rng(seed).choice(np.asarray(values, dtype=np.uint8), (H, W))


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".mat":
        scipy.io.savemat(path, {"S": array})
    else:
        Image.fromarray(array).save(path)
    return path


def write_pairs(image_dir, label_dir, stems, image_suffix, label_suffix, raw_values):
    """Write one image and one raw label per stem; return {name: (image, raw label)}."""
    written = {}
    for seed, stem in enumerate(stems):
        image, raw = random_image(seed), random_label(seed, raw_values)
        save(image_dir / (stem + image_suffix), image)
        save(label_dir / (stem + label_suffix), raw)
        written[Path(stem).name] = (image, raw)
    return written


def build_cityscapes(root: Path):
    stems = ["aachen/aachen_000000_000019", "aachen/aachen_000001_000019", "bremen/bremen_000000_000019"]
    values = [*range(19), 255]
    written = write_pairs(
        root / "leftImg8bit/val", root / "gtFine/val", stems,
        "_leftImg8bit.png", "_gtFine_labelTrainIds.png", values,
    )  # fmt: skip
    return "cityscapes", "val", written, lambda raw: raw


def build_ade20k(root: Path):
    base = root / "ADEChallengeData2016"
    stems = ["ADE_train_00000001", "ADE_train_00000002"]
    written = write_pairs(
        base / "images/training", base / "annotations/training", stems, ".jpg", ".png", range(151)
    )
    return "ade20k", "train", written, lambda raw: np.where(raw == 0, 255, raw - 1).astype(np.uint8)


def build_pascal_context(root: Path):
    stems = ["2008_000002", "2008_000003", "2008_000007"]
    written = write_pairs(
        root / "JPEGImages", root / "SegmentationClassContext", stems, ".jpg", ".png", range(60)
    )
    # An image that is not in val.txt must not be loaded.
    lists = root / "ImageSets/SegmentationContext"
    lists.mkdir(parents=True)
    (lists / "val.txt").write_text("2008_000002\n2008_000007\n")
    del written["2008_000003"]
    return "pascal_context", "val", written, lambda raw: raw


def build_pascal_context_59(root: Path):
    """The same masks as the 60-class layout, background (0) ignored."""
    _, split, written, _ = build_pascal_context(root)
    return "pascal_context_59", split, written, lambda raw: np.where(raw == 0, 255, raw - 1).astype(np.uint8)


def build_coco_stuff10k(root: Path):
    stems = ["COCO_train2014_000000000077", "COCO_train2014_000000000110"]
    written = write_pairs(
        root / "images/train2014",
        root / "annotations/train2014",
        stems,
        ".jpg",
        "_labelTrainIds.png",
        range(172),
    )
    return "coco_stuff10k", "train", written, lambda raw: np.where(raw == 0, 255, raw - 1).astype(np.uint8)


def build_coco_stuff10k_mat(root: Path):
    stems = ["COCO_train2014_000000000077", "COCO_train2014_000000000110"]
    written = write_pairs(root / "images", root / "annotations", stems, ".jpg", ".mat", range(183))
    (root / "imageLists").mkdir()
    (root / "imageLists/test.txt").write_text("\n".join(stems) + "\n")
    return "coco_stuff10k_mat", "test", written, lambda raw: coco_stuff_raw_lut()[raw].astype(np.uint8)


def build_nyud_v2(root: Path):
    stems = ["000001", "000002"]
    written = write_pairs(root / "image/test", root / "label40/test", stems, ".png", ".png", range(41))
    return "nyud_v2", "val", written, lambda raw: np.where(raw == 0, 255, raw - 1).astype(np.uint8)


BUILDERS = [
    build_cityscapes, build_ade20k, build_pascal_context, build_pascal_context_59,
    build_coco_stuff10k, build_coco_stuff10k_mat, build_nyud_v2,
]  # fmt: skip


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__[6:])
def test_loader_reads_its_layout(tmp_path, builder):
    name, split, written, to_train_ids = builder(tmp_path)
    dataset = build_dataset(name, tmp_path, split)
    assert dataset.names == sorted(written)
    assert len(dataset) == len(written)
    for index, stem in enumerate(dataset.names):
        image, label = dataset[index]
        written_image, raw = written[stem]
        assert image.dtype == np.uint8 and image.shape == (H, W, 3)
        assert label.dtype == np.uint8 and label.shape == (H, W)
        np.testing.assert_array_equal(label, to_train_ids(raw))
        if not name.startswith(("ade", "coco", "pascal")):  # JPEG is lossy; PNG must be exact
            np.testing.assert_array_equal(image, written_image)
        valid = label[label != 255]
        assert valid.size and valid.max() < dataset.num_classes


def test_every_layout_is_complete():
    for layout in LAYOUTS.values():
        assert len(layout.class_names) == layout.num_classes == len(layout.palette)
        assert all(lut.shape == (256,) for lut in [f.lut for f in layout.label_formats])


def test_cityscapes_labelids_are_mapped_to_train_ids(tmp_path):
    label_ids = np.array([[7, 8, 26, 0, 33, 1, 24, 23]] * 2, dtype=np.uint8)
    save(tmp_path / "leftImg8bit/train/ulm/ulm_000000_000019_leftImg8bit.png", random_image(0)[:2, :8])
    save(tmp_path / "gtFine/train/ulm/ulm_000000_000019_gtFine_labelIds.png", label_ids)
    _, label = build_dataset("cityscapes", tmp_path, "train")[0]
    expected = [CITYSCAPES_LABELID_TO_TRAINID.get(int(v), 255) for v in label_ids[0]]
    assert expected == [0, 1, 13, 255, 18, 255, 11, 10]
    np.testing.assert_array_equal(label[0], expected)


def test_cityscapes_prefers_train_ids_over_label_ids(tmp_path):
    save(tmp_path / "leftImg8bit/train/ulm/ulm_0_leftImg8bit.png", random_image(0))
    save(tmp_path / "gtFine/train/ulm/ulm_0_gtFine_labelIds.png", np.full((H, W), 7, np.uint8))
    save(tmp_path / "gtFine/train/ulm/ulm_0_gtFine_labelTrainIds.png", np.full((H, W), 5, np.uint8))
    _, label = build_dataset("cityscapes", tmp_path, "train")[0]
    assert (label == 5).all()


def test_synthcity_uses_the_cityscapes_layout(tmp_path):
    save(tmp_path / "leftImg8bit/train/synthcity/synthcity_000000_leftImg8bit.png", random_image(0))
    save(
        tmp_path / "gtFine/train/synthcity/synthcity_000000_gtFine_labelTrainIds.png",
        random_label(0, range(19)),
    )
    dataset = build_dataset("synthcity", tmp_path, "train")
    assert dataset.layout is CITYSCAPES and dataset.names == ["synthcity_000000"]


def test_transform_is_applied(tmp_path):
    build_cityscapes(tmp_path)
    dataset = build_dataset("cityscapes", tmp_path, "val", transform=eval_transform(NORMALIZATION))
    image, label = dataset[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    assert label.shape == (H, W) and label.dtype == torch.int64
    raw_image, raw_label = build_dataset("cityscapes", tmp_path, "val")[0]
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), raw_image.astype(np.float32))
    np.testing.assert_array_equal(label.numpy(), raw_label)


def test_unknown_names_list_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="cityscapes.*nyud_v2|ade20k.*cityscapes"):
        build_dataset("kitti", tmp_path, "train")
    with pytest.raises(ValueError, match=r"'train', 'val'"):
        build_dataset("ade20k", tmp_path, "validation")


def test_missing_root_and_split_folder_are_named(tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        build_dataset("cityscapes", tmp_path / "nowhere", "train")
    build_cityscapes(tmp_path)
    with pytest.raises(DatasetError, match=r"leftImg8bit/train"):
        build_dataset("cityscapes", tmp_path, "train")


def test_empty_split_folder_is_an_error(tmp_path):
    (tmp_path / "leftImg8bit/train").mkdir(parents=True)
    (tmp_path / "gtFine/train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no \\*_leftImg8bit.png images under"):
        build_dataset("cityscapes", tmp_path, "train")


def test_missing_label_names_the_image(tmp_path):
    build_cityscapes(tmp_path)
    next((tmp_path / "gtFine/val/bremen").glob("*.png")).unlink()
    with pytest.raises(DatasetError, match="bremen_000000_000019_leftImg8bit.png"):
        build_dataset("cityscapes", tmp_path, "val")


def test_missing_listed_image_is_named(tmp_path):
    build_pascal_context(tmp_path)
    (tmp_path / "JPEGImages/2008_000007.jpg").unlink()
    with pytest.raises(DatasetError, match="2008_000007.jpg"):
        build_dataset("pascal_context", tmp_path, "val")


def test_missing_split_list_is_named(tmp_path):
    build_pascal_context(tmp_path)
    with pytest.raises(DatasetError, match="SegmentationContext/train.txt"):
        build_dataset("pascal_context", tmp_path, "train")


def cityscapes_pair(root: Path, image: np.ndarray, label: np.ndarray) -> tuple[Path, Path]:
    stem = "ulm/ulm_000000_000019"
    return (
        save(root / f"leftImg8bit/train/{stem}_leftImg8bit.png", image),
        save(root / f"gtFine/train/{stem}_gtFine_labelTrainIds.png", label),
    )


def test_size_mismatch_names_both_files(tmp_path):
    image_path, label_path = cityscapes_pair(tmp_path, random_image(0), np.zeros((H, W + 1), np.uint8))
    dataset = build_dataset("cityscapes", tmp_path, "train")
    with pytest.raises(DatasetError, match="size mismatch") as error:
        dataset[0]
    assert str(image_path) in str(error.value) and str(label_path) in str(error.value)


@pytest.mark.parametrize("bad_value", [19, 100, 254])
def test_label_values_outside_the_classes_name_the_file(tmp_path, bad_value):
    label = np.zeros((H, W), np.uint8)
    label[3, 4] = bad_value
    _, label_path = cityscapes_pair(tmp_path, random_image(0), label)
    with pytest.raises(DatasetError, match=rf"\[{bad_value}\]") as error:
        build_dataset("cityscapes", tmp_path, "train")[0]
    assert str(label_path) in str(error.value)


def test_ade20k_raw_value_above_150_is_rejected(tmp_path):
    name, split, written, _ = build_ade20k(tmp_path)
    label_path = tmp_path / "ADEChallengeData2016/annotations/training/ADE_train_00000002.png"
    save(label_path, np.full((H, W), 151, np.uint8))
    dataset = build_dataset(name, tmp_path, split)
    dataset[0]
    with pytest.raises(DatasetError, match=re.escape(str(label_path))):
        dataset[1]


def test_colour_label_is_rejected(tmp_path):
    _, label_path = cityscapes_pair(tmp_path, random_image(0), random_image(1))
    with pytest.raises(DatasetError, match="one channel") as error:
        build_dataset("cityscapes", tmp_path, "train")[0]
    assert str(label_path) in str(error.value)


@pytest.mark.parametrize("which", ["image", "label"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file_is_named(tmp_path, which, damage):
    image_path, label_path = cityscapes_pair(tmp_path, random_image(0), np.zeros((H, W), np.uint8))
    path = image_path if which == "image" else label_path
    data = path.read_bytes()
    path.write_bytes(b"not a png at all" if damage == "garbage" else data[: len(data) // 2])
    dataset = build_dataset("cityscapes", tmp_path, "train")
    with pytest.raises(DatasetError, match=f"unreadable {which}") as error:
        dataset[0]
    assert str(path) in str(error.value)


def test_corrupt_mat_label_is_named(tmp_path):
    build_coco_stuff10k_mat(tmp_path)
    bad = tmp_path / "annotations/COCO_train2014_000000000110.mat"
    bad.write_bytes(b"MATLAB garbage")
    dataset = build_dataset("coco_stuff10k_mat", tmp_path, "test")
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        dataset[1]


def test_skip_bad_returns_the_next_good_sample(tmp_path, caplog):
    name, split, written, _ = build_cityscapes(tmp_path)
    bad = tmp_path / "leftImg8bit/val/aachen/aachen_000001_000019_leftImg8bit.png"
    bad.write_bytes(b"corrupt")
    strict = build_dataset(name, tmp_path, split)
    with pytest.raises(DatasetError):
        strict[1]
    lenient = build_dataset(name, tmp_path, split, skip_bad=True)
    with caplog.at_level(logging.WARNING):
        image, _ = lenient[1]
    np.testing.assert_array_equal(image, written["bremen_000000_000019"][0])
    assert str(bad) in caplog.text
    np.testing.assert_array_equal(lenient[0][0], written["aachen_000000_000019"][0])


def test_skip_bad_with_nothing_loadable_raises(tmp_path):
    cityscapes_pair(tmp_path, random_image(0), np.full((H, W), 77, np.uint8))
    dataset = SegmentationFolder(CITYSCAPES, tmp_path, "train", skip_bad=True)
    with pytest.raises(DatasetError, match="no sample"):
        dataset[0]


def test_grayscale_image_is_expanded_to_rgb(tmp_path):
    gray = random_image(0)[..., 0]
    cityscapes_pair(tmp_path, gray, np.zeros((H, W), np.uint8))
    image, _ = build_dataset("cityscapes", tmp_path, "train")[0]
    assert image.shape == (H, W, 3)
    np.testing.assert_array_equal(image[..., 2], gray)


def test_every_cityscapes_label_id_maps_to_the_official_train_id(tmp_path):
    # All 34 labelIds of cityscapesScripts' labels.py in one label file, against the official
    # trainId column written out by hand (not read back from our own table).
    official = [255] * 7 + [0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8, 9, 10, 11, 12]
    official += [13, 14, 15, 255, 255, 16, 17, 18]
    label_ids = np.arange(34, dtype=np.uint8).reshape(2, 17)
    save(tmp_path / "leftImg8bit/train/ulm/ulm_0_leftImg8bit.png", random_image(0)[:2, :17])
    save(tmp_path / "gtFine/train/ulm/ulm_0_gtFine_labelIds.png", label_ids)
    _, label = build_dataset("cityscapes", tmp_path, "train")[0]
    assert label.ravel().tolist() == official


@pytest.mark.parametrize("label_id", [34, 200, 254])
def test_cityscapes_label_ids_beyond_33_are_refused(tmp_path, label_id):
    # labelIds stop at 33: a bigger value means a wrong file (e.g. a colour or instance map),
    # which must not be trained on as "ignore".
    label_ids = np.full((H, W), 7, np.uint8)
    label_ids[1, 2] = label_id
    save(tmp_path / "leftImg8bit/train/ulm/ulm_0_leftImg8bit.png", random_image(0))
    save(tmp_path / "gtFine/train/ulm/ulm_0_gtFine_labelIds.png", label_ids)
    with pytest.raises(DatasetError, match=rf"\[{label_id}\]"):
        build_dataset("cityscapes", tmp_path, "train")[0]


def test_coco_stuff_raw_ids_skip_the_unused_thing_ids():
    # COCO ids by hand: 11 fire hydrant, 12 unused (street sign), 13 stop sign, 91 unused,
    # 92 banner (first stuff class), 182 wood (last); 0 = unlabelled, 183+ do not exist.
    from ann.data.layouts import COCO_STUFF_CLASSES

    lut = coco_stuff_raw_lut()
    names = {raw: COCO_STUFF_CLASSES[lut[raw]] for raw in (1, 11, 13, 92, 182)}
    assert names == {1: "person", 11: "fire hydrant", 13: "stop sign", 92: "banner", 182: "wood"}
    assert lut[[0, 12, 91, 255]].tolist() == [255, 255, 255, 255]
    assert lut[183] == INVALID


def test_voc_palette_is_the_pascal_colour_map():
    from ann.data.layouts import voc_palette

    # VOC's first classes: background, aeroplane, bicycle, bird, boat; 15 = person
    assert voc_palette(5) == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128))
    assert voc_palette(21)[15] == (192, 128, 128)


def test_coco_stuff_val_and_test_read_the_test_images(tmp_path):
    # COCO-Stuff-10K has no val split: "val" must read the 1K test images, never train2014.
    root = tmp_path
    write_pairs(root / "images/train2014", root / "annotations/train2014", ["COCO_train2014_000000000077"],
                ".jpg", "_labelTrainIds.png", range(172))  # fmt: skip
    write_pairs(root / "images/test2014", root / "annotations/test2014", ["COCO_train2014_000000000110"],
                ".jpg", "_labelTrainIds.png", range(172))  # fmt: skip
    assert build_dataset("coco_stuff10k", root, "train").names == ["COCO_train2014_000000000077"]
    for split in ("val", "test"):
        assert build_dataset("coco_stuff10k", root, split).names == ["COCO_train2014_000000000110"]


def test_split_list_with_windows_line_ends_blank_lines_and_spaces(tmp_path):
    build_pascal_context(tmp_path)
    (tmp_path / "ImageSets/SegmentationContext/val.txt").write_bytes(
        b"2008_000002 \r\n\r\n  2008_000007\r\n\n"
    )
    assert build_dataset("pascal_context", tmp_path, "val").names == ["2008_000002", "2008_000007"]


@pytest.mark.parametrize("bad_value", [-1, 300])
def test_mat_label_values_outside_a_byte_are_refused(tmp_path, bad_value):
    # .mat labels hold any integer type: -1 would index the lookup table from its end (255 =
    # ignore) and 300 would wrap to 44 in a byte; both must be named, not trained on.
    build_coco_stuff10k_mat(tmp_path)
    raw = np.ones((H, W), np.int32)
    raw[2, 3] = bad_value
    save(tmp_path / "annotations/COCO_train2014_000000000110.mat", raw)
    dataset = build_dataset("coco_stuff10k_mat", tmp_path, "test")
    with pytest.raises(
        DatasetError, match=rf"values outside 0\.\.255 \({min(bad_value, 1)}\.\.{max(bad_value, 1)}\)"
    ):
        dataset[1]


def test_ade20k_uses_the_benchmarks_own_colours():
    """Predictions of an ADE20K model should look like every published ADE20K figure (CSAIL's
    color150 table), not like PASCAL VOC's bit-spread colours."""
    from ann.data.layouts import ADE20K, ADE20K_CLASSES, ADE20K_PALETTE

    assert ADE20K.palette is ADE20K_PALETTE and len(ADE20K_PALETTE) == 150
    colour = dict(zip(ADE20K_CLASSES, ADE20K_PALETTE, strict=True))
    assert colour["wall"] == (120, 120, 120) and colour["sky"] == (6, 230, 230)
    assert colour["person"] == (150, 5, 61) and colour["flag"] == (92, 0, 255)
    assert colour["road"] == colour["skyscraper"] == (140, 140, 140)  # the table's one shared colour
    assert len(set(ADE20K_PALETTE)) == 149


def test_pascal_context_59_is_the_60_class_protocol_without_background():
    from ann.data.layouts import PASCAL_CONTEXT, PASCAL_CONTEXT_59

    assert PASCAL_CONTEXT_59.class_names == PASCAL_CONTEXT.class_names[1:]
    assert PASCAL_CONTEXT_59.class_names[0] == "aeroplane" and PASCAL_CONTEXT_59.num_classes == 59
    assert PASCAL_CONTEXT_59.palette[0] == PASCAL_CONTEXT.palette[1]  # a class keeps its colour
    lut = PASCAL_CONTEXT_59.label_formats[0].lut
    assert lut[[0, 1, 59]].tolist() == [255, 0, 58] and lut[60] == INVALID


@pytest.mark.parametrize("name", ["coco_stuff10k", "coco_stuff10k_mat", "nyud_v2", "pascal_context_59"])
def test_no_class_is_drawn_black_where_black_means_ignored(name):
    """Predictions and labels draw ignored pixels black: a class in black (COCO-Stuff's person,
    NYUD's wall) would vanish into them. Each class keeps the VOC colour of its raw id."""
    from ann.data.layouts import voc_palette

    layout = LAYOUTS[name]
    assert (0, 0, 0) not in layout.palette
    assert layout.palette == voc_palette(layout.num_classes + 1)[1:]
