"""python -m ann.check_data: every sample read, class statistics, bad files named, exit status."""

import json

import numpy as np
import pytest
from PIL import Image

from ann.cli.check_data import main
from tests.test_folder import write_dataset


def test_statistics_of_a_clean_split(tmp_path, capsys):
    root = write_dataset(tmp_path / "mine", count=4)  # 64x32 labels: 16 columns each of 0, 1, 2, 255
    out = tmp_path / "stats.json"
    assert main(["folder", "--root", str(root), "--split", "train", "--json", str(out), "--no-progress",
                 "--plot", str(tmp_path / "shares.png")]) == 0  # fmt: skip
    stats = json.loads(out.read_text())
    assert stats["images"] == 4 and stats["bad"] == [] and stats["sizes"] == {"64x32": 4}
    assert stats["ignore_share"] == pytest.approx(0.25) and stats["ignore_images"] == 4
    assert stats["classes"]["traffic light"] == {"pixel_share": pytest.approx(0.25), "images": 4}
    printed = capsys.readouterr().out
    assert "folder train" in printed and "4 images read, 0 bad" in printed and "traffic light" in printed
    assert Image.open(tmp_path / "shares.png").size[0] > 400


def test_bad_files_are_named_and_the_rest_counted(tmp_path, capsys):
    root = write_dataset(tmp_path / "mine", count=4)
    labels = root / "labels" / "train"
    Image.fromarray(np.full((32, 64), 7, np.uint8)).save(labels / "train1.png")  # class 7 of 3
    Image.fromarray(np.zeros((16, 64), np.uint8)).save(labels / "train2.png")  # half the height
    out = tmp_path / "stats.json"
    argv = ["folder", "--root", str(root), "--split", "train", "--json", str(out), "--no-progress"]
    assert main([*argv, "--workers", "2"]) == 1  # read in DataLoader workers
    stats = json.loads(out.read_text())
    assert stats["images"] == 2 and [bad["name"] for bad in stats["bad"]] == ["train1", "train2"]
    assert "values [7] outside the 3 classes" in stats["bad"][0]["error"]
    assert "size mismatch" in stats["bad"][1]["error"]
    assert "bad: train1:" in capsys.readouterr().out


def test_a_class_absent_from_the_split_is_listed(tmp_path, capsys):
    root = write_dataset(tmp_path / "mine", count=2)
    for label in (root / "labels" / "val").rglob("*.png"):
        Image.fromarray(np.zeros((32, 64), np.uint8)).save(label)
    assert main(["folder", "--root", str(root), "--no-progress"]) == 0  # split val by default
    assert "no pixel in this split: traffic light, crack" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["folder", "--root", "{tmp}/nowhere"], "is not a folder"),
        (["folder", "--root", "{tmp}/mine", "--split", "holdout"], "unknown split 'holdout'"),
        (["synthcity", "--split", "train"], "unbounded"),
    ],
)
def test_a_split_that_cannot_be_opened_exits_2(tmp_path, capsys, argv, message):
    write_dataset(tmp_path / "mine", count=1)
    assert main([a.format(tmp=tmp_path) for a in argv] + ["--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_root_is_required_for_a_folder_dataset(capsys):
    with pytest.raises(SystemExit):
        main(["cityscapes"])
    assert "--root DIR is required for cityscapes" in capsys.readouterr().err


def test_limit_reads_the_first_samples_and_ignore_is_counted_apart_from_class_0(tmp_path):
    # train0: stripes of 0, 1, 2, 255; train1: all class 0; train2 (past the limit): all ignore
    root = write_dataset(tmp_path / "mine", count=3)
    labels = root / "labels" / "train"
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(labels / "train1.png")
    Image.fromarray(np.full((32, 64), 255, np.uint8)).save(labels / "train2.png")
    out = tmp_path / "stats.json"
    argv = ["folder", "--root", str(root), "--split", "train", "--limit", "2", "--json", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    stats = json.loads(out.read_text())
    assert stats["images"] == 2
    assert stats["ignore_share"] == pytest.approx(1 / 8) and stats["ignore_images"] == 1  # 1/4 of one image
    assert stats["classes"]["background"] == {"pixel_share": pytest.approx(5 / 8), "images": 2}


def test_synthcity_size_is_width_by_height(tmp_path):
    out = tmp_path / "stats.json"
    argv = ["synthcity", "--split", "val", "--limit", "1", "--synthcity-size", "64x32", "--json", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert json.loads(out.read_text())["sizes"] == {"64x32": 1}
