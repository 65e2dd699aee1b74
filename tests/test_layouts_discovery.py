"""Finding a real release's files: symlinked sub-folders, and a root given one level off."""

import numpy as np
import pytest
from PIL import Image

from ann.data.datasets import DatasetError, build_dataset


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def cityscapes_city(folder, city: str, split: str = "val") -> None:
    """One image of `city` with its labelTrainIds, named as the official release names them."""
    stem = f"{city}_000000_000019"
    save(folder / f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", np.zeros((4, 8, 3), np.uint8))
    save(folder / f"gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png", np.zeros((4, 8), np.uint8))


def test_symlinked_city_folders_are_read(tmp_path):
    # A subset of cities linked into a root (or cities kept on another disk): Path.rglob does not
    # descend into symlinked folders, so these images were silently left out.
    store, root = tmp_path / "store", tmp_path / "cityscapes"
    cityscapes_city(store, "lindau")
    cityscapes_city(root, "frankfurt")
    for top in ("leftImg8bit", "gtFine"):
        (root / top / "val/lindau").symlink_to(store / top / "val/lindau", target_is_directory=True)
    dataset = build_dataset("cityscapes", root, "val")
    assert dataset.names == ["frankfurt_000000_000019", "lindau_000000_000019"]
    assert dataset[1][1].shape == (4, 8)


def test_symlink_cycle_does_not_loop(tmp_path):
    cityscapes_city(tmp_path, "ulm")
    loop = tmp_path / "leftImg8bit/val/ulm/again"
    loop.symlink_to(tmp_path / "leftImg8bit/val", target_is_directory=True)
    assert build_dataset("cityscapes", tmp_path, "val").names == ["ulm_000000_000019"]


def ade20k(root) -> None:
    base = root / "ADEChallengeData2016"
    save(base / "images/validation/ADE_val_00000001.jpg", np.zeros((4, 8, 3), np.uint8))
    save(base / "annotations/validation/ADE_val_00000001.png", np.ones((4, 8), np.uint8))


@pytest.mark.parametrize(
    "name, build, given, meant",
    [  # mmsegmentation's data_root for ADE20K is the ADEChallengeData2016 folder itself
        ("ade20k", ade20k, "ade/ADEChallengeData2016", "ade"),
        ("cityscapes", lambda root: cityscapes_city(root, "lindau"), "cs/leftImg8bit", "cs"),
        ("cityscapes", lambda root: cityscapes_city(root, "lindau"), ".", "cs"),
        ("cityscapes", lambda root: cityscapes_city(root, "lindau"), "cs/leftImg8bit/val", "cs"),
        ("cityscapes", lambda root: cityscapes_city(root, "lindau"), "cs/gtFine/val/lindau", "cs"),
    ],
)
def test_root_a_level_or_more_off_names_the_right_one(tmp_path, name, build, given, meant):
    build(tmp_path / meant)
    with pytest.raises(DatasetError, match="missing folder") as error:
        build_dataset(name, (tmp_path / given).resolve(), "val")
    assert f"is the root {(tmp_path / meant).resolve()}?" in str(error.value)


def test_missing_folder_without_a_likely_root_has_no_guess(tmp_path):
    ade20k(tmp_path)
    with pytest.raises(DatasetError, match="missing folder") as error:
        build_dataset("cityscapes", tmp_path, "val")
    assert "is the root" not in str(error.value)


def test_matlab_v73_label_is_named(tmp_path):
    # scipy.io.loadmat cannot read MATLAB 7.3 (HDF5) files and raises NotImplementedError, which
    # escaped as a traceback instead of a DatasetError naming the file (and --skip-bad did not skip it).
    save(tmp_path / "images/COCO_train2014_000000000077.jpg", np.zeros((4, 8, 3), np.uint8))
    label = tmp_path / "annotations/COCO_train2014_000000000077.mat"
    label.parent.mkdir()
    label.write_bytes(b"MATLAB 7.3 MAT-file".ljust(124) + b"\x00\x02IM" + bytes(512))
    (tmp_path / "imageLists").mkdir()
    (tmp_path / "imageLists/test.txt").write_text("COCO_train2014_000000000077\n")
    dataset = build_dataset("coco_stuff10k_mat", tmp_path, "test")
    with pytest.raises(DatasetError, match="unreadable label") as error:
        dataset[0]
    assert str(label) in str(error.value)
