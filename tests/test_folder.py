"""The `folder` layout (ann/data/folder.py): your own classes.txt, images/ and labels/."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ann
from ann.cli.evaluate import main as evaluate_main
from ann.data.datasets import DatasetError, build_dataset
from ann.data.folder import ClassesError, read_classes
from ann.data.layouts import voc_palette
from ann.training.config import ConfigError, load_config
from ann.training.loop import train
from ann.training.state import TrainingError

CLASSES = """# my classes
background
traffic light #faaa1e

crack 255 0 0
"""


def write_dataset(root: Path, splits=("train", "val"), size=(64, 32), count=3) -> Path:
    """Three classes, .png and .jpg images (one in a sub-folder); label = stripes of 0, 1, 2, 255."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text(CLASSES)
    rng = np.random.default_rng(0)
    for split in splits:
        for i in range(count):
            stem = f"sub/{split}{i}" if i == 0 else f"{split}{i}"
            suffix = ".jpg" if i % 2 else ".png"
            image_path = root / "images" / split / (stem + suffix)
            label_path = root / "labels" / split / (stem + ".png")
            image_path.parent.mkdir(parents=True, exist_ok=True)
            label_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(image_path)
            label = np.zeros((size[1], size[0]), np.uint8)
            label[:, size[0] // 4 :] = 1
            label[:, size[0] // 2 :] = 2
            label[:, 3 * size[0] // 4 :] = 255
            Image.fromarray(label).save(label_path)
    return root


def test_classes_file_names_colours_and_defaults(tmp_path):
    (tmp_path / "classes.txt").write_text(CLASSES)
    names, palette, ignore = read_classes(tmp_path / "classes.txt")
    assert names == ("background", "traffic light", "crack") and ignore is None
    assert palette == (voc_palette(3)[0], (250, 170, 30), (255, 0, 0))


@pytest.mark.parametrize(
    "text, message",
    [
        ("road\nroad\n", "'road' more than once"),
        ("road #12345\n", "line 1: colour #12345 is not #rrggbb"),
        ("sky\nroad 0 256 0\n", "line 2: colour (0, 256, 0) has values outside 0..255"),
        ("#ffffff\n", "names no class"),  # a comment, not a colour
        ("x\n#00ff00 is a comment\n\tred #ff00zz\n", "line 3: colour #ff00zz is not #rrggbb"),
        ("\n# nothing\n", "names no class"),
        ("".join(f"c{i}\n" for i in range(256)), "names 256 classes; at most 255"),
        ("sky #0000ff\nsea 0 0 255\n", "'sky' and 'sea' share the colour #0000ff"),
        ("sky #0000ff\nignore #0000ff\n", "'sky' and 'ignore' share the colour #0000ff"),
        ("sky\nignore\n", "give 'ignore' once, with a colour"),
        ("sky\ncrack 255,0,0\n", "line 2: 'crack 255,0,0' is not `name`"),
        ("sky\ncrack (255, 0, 0)\n", "line 2: 'crack (255, 0, 0)' is not `name`"),
        ("sky\ncrack #ff0000 #00ff00\n", "line 2: 'crack #ff0000 #00ff00' is not `name`"),
    ],
)
def test_bad_classes_file_is_named(tmp_path, text, message):
    (tmp_path / "classes.txt").write_text(text)
    with pytest.raises(ClassesError, match="classes.txt") as error:
        read_classes(tmp_path / "classes.txt")
    assert message in str(error.value)


def test_trailing_comments_and_the_ignore_line(tmp_path):
    (tmp_path / "classes.txt").write_text("road #804080  # purple\nsky # the top\nIgnore: #ffffff\n")
    names, palette, ignore = read_classes(tmp_path / "classes.txt")
    assert names == ("road", "sky") and palette[0] == (128, 64, 128) and ignore == (255, 255, 255)


def test_classes_file_from_a_windows_editor(tmp_path):
    (tmp_path / "classes.txt").write_bytes("\ufeffbackground\r\ncrack #ff0000\r\n".encode())
    assert read_classes(tmp_path / "classes.txt")[0] == ("background", "crack")


def test_missing_classes_file_says_what_it_needs(tmp_path):
    (write_dataset(tmp_path) / "classes.txt").unlink()
    with pytest.raises(ClassesError, match=r"missing .*classes.txt \(one class name per line"):
        build_dataset("folder", tmp_path, "train")


def test_reads_images_of_any_suffix_with_their_labels(tmp_path):
    write_dataset(tmp_path)
    (tmp_path / "images" / "train" / "._train1.jpg").write_bytes(b"\0\5\26\7")  # macOS metadata
    dataset = build_dataset("folder", tmp_path, "train")
    assert dataset.num_classes == 3 and dataset.class_names[1] == "traffic light"
    assert sorted(dataset.names) == ["train0", "train1", "train2"]
    assert {path.suffix for _, path, _ in dataset.samples} == {".png", ".jpg"}
    image, label = dataset[0]
    assert image.shape == (32, 64, 3) and image.dtype == np.uint8
    assert np.unique(label).tolist() == [0, 1, 2, 255]  # values kept as they are


def test_one_file_name_in_two_sub_folders_keeps_the_sub_folders(tmp_path):
    write_dataset(tmp_path)
    for folder, suffix in (("images", ".jpg"), ("labels", ".png")):
        source = tmp_path / folder / "train" / "sub" / f"train0{'.png' if folder == 'images' else suffix}"
        (tmp_path / folder / "train" / "other").mkdir()
        (tmp_path / folder / "train" / "other" / f"train0{suffix}").write_bytes(source.read_bytes())
    dataset = build_dataset("folder", tmp_path, "train")
    assert sorted(dataset.names) == ["other/train0", "sub/train0", "train1", "train2"]


def test_unknown_split_lists_the_split_folders(tmp_path):
    write_dataset(tmp_path, splits=("train", "val", "test"))
    with pytest.raises(
        ValueError, match=r"unknown split 'holdout' for folder; valid: \['test', 'train', 'val'\]"
    ):
        build_dataset("folder", tmp_path, "holdout")


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda root: (root / "images" / "train" / "train1.png").write_bytes(b""),
            "two images for one label",
        ),
        (lambda root: (root / "labels" / "train" / "train2.png").unlink(), "no label for image"),
    ],
)
def test_inconsistent_folders_are_named(tmp_path, damage, message):
    damage(write_dataset(tmp_path))
    with pytest.raises(DatasetError, match=message):
        build_dataset("folder", tmp_path, "train")


def test_label_value_beyond_the_classes_names_the_file(tmp_path):
    write_dataset(tmp_path)
    Image.fromarray(np.full((32, 64), 3, np.uint8)).save(tmp_path / "labels" / "train" / "train1.png")
    dataset = build_dataset("folder", tmp_path, "train")
    with pytest.raises(DatasetError, match=r"train1.png has values \[3\] outside the 3 classes of folder"):
        dataset.load(dataset.names.index("train1"))


def test_colour_labels_map_to_their_classes(tmp_path):
    """RGB labels painted in classes.txt's colours (own or default), `ignore` colour -> 255."""
    write_dataset(tmp_path, count=1)
    (tmp_path / "classes.txt").write_text(
        "background\ntraffic light #faaa1e\ncrack 255 0 0\nignore #ffffff\n"
    )
    ids = np.array([[0, 1, 2, 255]], np.uint8).repeat(32, 0).repeat(16, 1)  # (32, 64)
    colours = np.array([voc_palette(3)[0], (250, 170, 30), (255, 0, 0), (255, 255, 255)], np.uint8)
    rgba = np.dstack([colours[np.where(ids == 255, 3, ids)], np.full((32, 64), 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "labels" / "train" / "sub" / "train0.png")
    _, label = build_dataset("folder", tmp_path, "train")[0]
    assert np.array_equal(label, ids)
    rgba[5, 7, :3] = (1, 2, 3)  # a colour of no class
    Image.fromarray(rgba).save(tmp_path / "labels" / "train" / "sub" / "train0.png")
    with pytest.raises(DatasetError, match=r"train0.png has colours #010203 that are not class colours"):
        build_dataset("folder", tmp_path, "train")[0]


def test_labels_saved_as_grey_pictures_hold_ids(tmp_path):
    """Ids saved as RGB (r = g = b) or grey + alpha read as ids, not as colours."""
    write_dataset(tmp_path, count=1)
    path = tmp_path / "labels" / "train" / "sub" / "train0.png"
    ids = np.asarray(Image.open(path))
    for picture in (np.dstack([ids] * 3), np.dstack([ids, np.full_like(ids, 255)])):
        Image.fromarray(picture).save(path)
        assert np.array_equal(build_dataset("folder", tmp_path, "train")[0][1], ids)


def test_photos_are_read_upright_as_their_labels_were_drawn(tmp_path):
    """EXIF orientation 6 (rotate 90 degrees): the stored 64x32 pixels show as 32x64."""
    write_dataset(tmp_path, count=1)
    stored = np.random.default_rng(1).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "images" / "train" / "sub" / "train0.png", exif=exif)
    Image.fromarray(np.zeros((64, 32), np.uint8)).save(tmp_path / "labels" / "train" / "sub" / "train0.png")
    image, label = build_dataset("folder", tmp_path, "train")[0]
    assert image.shape == (64, 32, 3) and label.shape == (64, 32)
    assert np.array_equal(image, np.rot90(stored, -1))  # as a viewer shows it


def test_hidden_folders_and_suffix_case(tmp_path):
    write_dataset(tmp_path, count=2)
    (tmp_path / "images" / "train" / ".thumbs").mkdir()
    (tmp_path / "images" / "train" / ".thumbs" / "t.jpg").write_bytes(b"thumbnail")
    (tmp_path / "images" / "train" / "train1.jpg").rename(tmp_path / "images" / "train" / "train1.Jpg")
    assert sorted(build_dataset("folder", tmp_path, "train").names) == ["train0", "train1"]


def test_every_image_without_a_label_is_named_at_once(tmp_path):
    write_dataset(tmp_path, count=3)
    for name in ("train1", "train2"):
        (tmp_path / "labels" / "train" / f"{name}.png").unlink()
    with pytest.raises(DatasetError, match="2 images without a label") as error:
        build_dataset("folder", tmp_path, "train")
    assert "train1" in str(error.value) and "train2" in str(error.value)


def test_no_split_folders_is_named(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    with pytest.raises(ClassesError, match="no split folders under .*images"):
        build_dataset("folder", tmp_path, "train")


FAST = [
    "train.progress=false",
    "train.iterations=2",
    "train.val_every=0",
    "data.crop_size=32,64",
    "data.workers=0",
]


def test_trains_and_evaluates_on_your_own_classes(tmp_path, capsys):
    root = write_dataset(tmp_path / "mine")
    config = load_config("ann-r18-folder", [f"data.root={root}", *FAST, *SMALL])
    assert config.model.num_classes == 0  # taken from classes.txt by the trainer
    run = train(config, tmp_path / "run")
    model = ann.load(tmp_path / "run" / "model.safetensors")
    assert run.config.model.num_classes == model.config.num_classes == 3
    assert model.meta.classes == ["background", "traffic light", "crack"]
    assert model.meta.palette[2] == [255, 0, 0]
    assert load_config(str(tmp_path / "run" / "config.toml")).model.num_classes == 3
    out = tmp_path / "val.json"
    evaluate_main([str(tmp_path / "run" / "model.safetensors"), "--data", str(root), "--split", "val",
                   "--device", "cpu", "--json", str(out), "--no-progress"])  # fmt: skip
    assert set(json.loads(out.read_text())["per_class_iou"]) == {"background", "traffic light", "crack"}


SMALL = ["model.head_channels=16", "model.key_channels=8", "model.value_channels=8", "model.aux_channels=16"]


def test_a_wrong_class_count_says_how_to_fix_it(tmp_path):
    root = write_dataset(tmp_path / "mine")
    config = load_config("ann-r18-folder", [f"data.root={root}", "model.num_classes=19", *FAST, *SMALL])
    with pytest.raises(TrainingError, match=r"has 3 classes \(--set model.num_classes=3, or 0"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


def test_folder_needs_a_root():
    with pytest.raises(ConfigError, match="data.root"):
        load_config("ann-r18-folder", ["data.root="])


def bad_label(root: Path, split: str, name: str) -> None:
    Image.fromarray(np.full((32, 64), 9, np.uint8)).save(root / "labels" / split / f"{name}.png")


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path):
    root = write_dataset(tmp_path / "mine")
    bad_label(root, "train", "train1")
    config = load_config("ann-r18-folder", [f"data.root={root}", *FAST, *SMALL, "train.batch_size=3"])
    with pytest.raises(DatasetError, match="train1.png has values"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_bad_val_file_keeps_the_trained_steps_and_says_how_to_go_on(tmp_path, capsys):
    from ann.cli.train import main as train_main

    root = write_dataset(tmp_path / "mine")
    bad_label(root, "val", "val2")
    sets = [f"data.root={root}", *FAST, *SMALL, "data.workers=1"]  # the error crosses a worker
    argv = ["ann-r18-folder", "--out", str(tmp_path / "run"), *[a for s in sets for a in ("--set", s)]]
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert "val2.png has values [9]" in err and "Traceback" not in err
    assert "python -m ann.check_data" in err and "--resume continues from the last checkpoint" in err
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["iteration"] == 2


def test_cityscapes_class_weights_on_other_classes_are_refused(tmp_path):
    root = write_dataset(tmp_path / "mine")
    config = load_config("ann-r18-folder", [f"data.root={root}", "loss.class_weights=cityscapes", *FAST])
    with pytest.raises(TrainingError, match=r"19 Cityscapes weights but folder has 3 classes \(--set loss"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_root_under_home_written_with_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_dataset(tmp_path / "mine")
    assert len(build_dataset("folder", "~/mine", "val")) == 3


def test_evaluating_on_changed_classes_is_caught(tmp_path, capsys):
    root = write_dataset(tmp_path / "mine")
    train(load_config("ann-r18-folder", [f"data.root={root}", *FAST, *SMALL]), tmp_path / "run")
    model = str(tmp_path / "run" / "model.safetensors")
    argv = [model, "--data", str(root), "--split", "val", "--no-progress"]
    (root / "classes.txt").write_text("background\ncrack\ntraffic light\n")  # same count, new order
    assert evaluate_main(argv) == 0
    assert "warning: 2 class names differ" in capsys.readouterr().err
    (root / "classes.txt").write_text("background\ncrack\ntraffic light\nrust\n")
    assert evaluate_main(argv) == 2
    assert "classes.txt names 4; use the checkpoint's classes.txt" in capsys.readouterr().err


def test_grey_picture_painted_in_grey_class_colours_is_read_as_colours(tmp_path):
    """A black/white mask for classes coloured #000000 and #ffffff holds colours, not ids:
    reading white as id 255 would silently turn every foreground pixel into ignore."""
    write_dataset(tmp_path, count=1)
    (tmp_path / "classes.txt").write_text("background #000000\ncrack #ffffff\n")
    mask = np.zeros((32, 64), np.uint8)
    mask[:, 40:] = 255
    Image.fromarray(np.dstack([mask] * 3)).save(tmp_path / "labels" / "train" / "sub" / "train0.png")
    _, label = build_dataset("folder", tmp_path, "train")[0]
    assert np.array_equal(label, (mask == 255).astype(np.uint8))
