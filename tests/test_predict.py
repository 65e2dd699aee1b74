"""`python -m ann.predict`: the files it writes are the network's own prediction, folders keep
their structure, a bad file is named and skipped, and refused runs write nothing."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ann.checkpoint import CheckpointMeta, load, save
from ann.cli.predict import main
from ann.inference import predict_msflip, preprocess
from ann.models.network import build_network
from ann.models.sampling import SamplingConfig
from ann.training.config import load_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    net = build_network(load_config("smoke").model)
    for module in net.modules():
        if isinstance(module, nn.Conv2d) and module.weight.abs().sum() == 0:
            nn.init.normal_(module.weight, std=0.1)  # non-zero W: the attention matters
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # running statistics = the mean over the calibration passes
    with torch.no_grad():  # calibrated BN: an untrained net whose prediction varies across the image
        for _ in range(3):
            net(torch.randn(2, 3, 40, 56))
    net.eval()
    path = tmp_path_factory.mktemp("ckpt") / "smoke.safetensors"
    save(net, path, CheckpointMeta(net.config))
    return path


def photo(path, seed, size=(40, 56), mode="RGB"):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (*size, 4 if mode == "RGBA" else 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)
    return path


def expected_labels(checkpoint, image, **msflip):
    model = load(checkpoint)
    if msflip.pop("sampling", None):
        model.set_sampling(SamplingConfig("pyramid_max", (1, 2, 3, 6)))
    x = preprocess(image, model.meta.normalization)
    logits = predict_msflip(model, x, **msflip) if msflip else model(x)
    return logits.argmax(1)[0].numpy().astype(np.uint8)


def test_folder_with_subfolders_and_a_bad_file(checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    photo(photos / "a.jpg", 0)
    photo(photos / "night" / "b.png", 1, mode="RGBA")
    (photos / "notes.txt").write_text("not an image, and not picked up")
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but cut short")
    single = photo(tmp_path / "c.png", 2, size=(33, 47))
    out, shares = tmp_path / "out", tmp_path / "shares.json"
    argv = [str(checkpoint), str(photos), str(single), "--out", str(out), "--json", str(shares)]
    assert main([*argv, "--no-progress"]) == 1  # one file skipped
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "2 images" not in captured.out and "3 images" in captured.out
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == [
        "a.png",
        "a_overlay.png",
        "c.png",
        "c_overlay.png",
        "night/b.png",
        "night/b_overlay.png",
    ]
    # the label file is the network's argmax on the decoded image (RGBA composited on white)
    from ann.images import read_image

    for name, source in [("a", photos / "a.jpg"), ("night/b", photos / "night" / "b.png"), ("c", single)]:
        label = np.asarray(Image.open(out / f"{name}.png"))
        np.testing.assert_array_equal(label, expected_labels(checkpoint, read_image(source, None)))
        overlay = np.asarray(Image.open(out / f"{name}_overlay.png"))
        assert overlay.shape == (*label.shape, 3) and len(np.unique(label)) > 1
    table = json.loads(shares.read_text())
    assert set(table) == {"a", "night/b", "c"}
    for name, row in table.items():
        label = np.asarray(Image.open(out / f"{name}.png"))
        assert sum(row.values()) == pytest.approx(1.0, abs=1e-4)
        assert len(row) == len(np.unique(label))


def test_msflip_with_switched_sampling(checkpoint, tmp_path):
    source = photo(tmp_path / "x.png", 3)
    out = tmp_path / "out"
    argv = [str(checkpoint), str(source), "--out", str(out), "--mode", "msflip", "--scales", "0.5,1.0",
            "--sampling", "pyramid_max", "--sizes", "1,2,3,6", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    image = np.asarray(Image.open(source))
    expected = expected_labels(checkpoint, image, scales=(0.5, 1.0), flip=True, sampling=True)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "x.png")), expected)
    assert (expected != expected_labels(checkpoint, image)).any()  # msflip + switch is not whole


def test_max_side_runs_smaller_and_writes_at_the_files_size(checkpoint, tmp_path):
    source = photo(tmp_path / "wide.png", 4, size=(30, 80))
    assert main([str(checkpoint), str(source), "--out", str(tmp_path / "out"), "--max-side", "40"]) == 0
    label = np.asarray(Image.open(tmp_path / "out" / "wide.png"))
    small = np.asarray(Image.open(source).resize((40, 15), Image.BILINEAR))  # as ann.images resizes
    expected = expected_labels(checkpoint, small)  # (15, 40), then nearest up to the file's size
    np.testing.assert_array_equal(label, expected[np.arange(30) * 15 // 30][:, np.arange(80) * 40 // 80])


@pytest.mark.parametrize("problem", ["missing", "clash", "empty_folder", "bad_checkpoint"])
def test_refused_runs_write_nothing(checkpoint, tmp_path, capsys, problem):
    args = {
        "missing": [str(checkpoint), str(tmp_path / "nowhere.jpg")],
        "clash": [
            str(checkpoint),
            str(photo(tmp_path / "1" / "a.png", 0)),
            str(photo(tmp_path / "2" / "a.png", 1)),
        ],
        "empty_folder": [str(checkpoint), str((tmp_path / "empty").mkdir() or tmp_path / "empty")],
        "bad_checkpoint": [str(photo(tmp_path / "weights.png", 0)), str(photo(tmp_path / "b.png", 0))],
    }[problem]
    assert main([*args, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    message = capsys.readouterr().err
    assert (
        message.startswith("error: ")
        and {
            "missing": "nowhere.jpg: no such file",
            "clash": "would both be written as a.png",
            "empty_folder": "no images",
            "bad_checkpoint": "weights.png",
        }[problem]
        in message
    )
    assert not (tmp_path / "out").exists()


def test_library_segment_is_the_argmax_with_the_checkpoints_normalisation(checkpoint):
    import ann

    model = load(checkpoint)
    image = np.random.default_rng(5).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    labels = ann.segment(model, image)
    assert labels.shape == (40, 56) and labels.dtype == torch.int64
    np.testing.assert_array_equal(labels.numpy(), expected_labels(checkpoint, image))
    msflip = ann.segment(model, image, "msflip", scales=(0.5, 1.0))
    np.testing.assert_array_equal(msflip.numpy(), expected_labels(checkpoint, image, scales=(0.5, 1.0)))


def test_out_in_the_photo_folder_never_overwrites_a_photo(checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    original = photo(photos / "a.png", 0).read_bytes()
    assert main([str(checkpoint), str(photos), "--out", str(photos), "--no-progress"]) == 2
    assert "would overwrite the input image" in capsys.readouterr().err
    assert (photos / "a.png").read_bytes() == original and sorted(photos.iterdir()) == [photos / "a.png"]


def test_a_mask_and_another_images_overlay_never_share_a_file(checkpoint, tmp_path, capsys):
    photo(tmp_path / "in" / "a.png", 0)
    photo(tmp_path / "in" / "a_overlay.jpg", 1)  # its mask would be out/a_overlay.png, a's overlay
    assert main([str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "a_overlay.png would be written for both" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unwritable_json_is_refused_before_segmenting(checkpoint, tmp_path, capsys):
    source = photo(tmp_path / "x.png", 0)
    argv = [str(checkpoint), str(source), "--out", str(tmp_path / "out"), "--no-progress"]
    assert main([*argv, "--json", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_negative_max_side_is_refused(checkpoint, tmp_path, capsys):
    source = photo(tmp_path / "x.png", 0)
    with pytest.raises(SystemExit):
        main([str(checkpoint), str(source), "--out", str(tmp_path / "out"), "--max-side", "-5"])
    assert "--max-side" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_symlinked_subfolders_of_photos_are_read(tmp_path):
    from ann.images import collect_inputs

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (8, 6)).save(elsewhere / "b.png")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 6)).save(photos / "a.png")
    (photos / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert list(collect_inputs([photos])) == ["a", "linked/b"]


def test_overlay_blends_the_image_with_the_checkpoints_class_colours(checkpoint, tmp_path):
    """Each overlay pixel is half the image and half its predicted class's colour in the
    checkpoint's palette; the JSON shares are the mask's own pixel fractions per class name."""
    photos = tmp_path / "photos"
    photo(photos / "a.png", 6)
    Image.open(photos / "a.png").save(photos / "b.jpeg")  # .jpeg is an image suffix too
    out, shares = tmp_path / "out", tmp_path / "shares.json"
    assert (
        main([str(checkpoint), str(photos), "--out", str(out), "--json", str(shares), "--no-progress"]) == 0
    )
    meta = load(checkpoint).meta
    palette = np.asarray(meta.palette, dtype=np.float64)
    image = np.asarray(Image.open(photos / "a.png")).astype(np.float64)
    label = np.asarray(Image.open(out / "a.png"))
    assert len(np.unique(label)) > 1  # several classes, so a wrong colour table shows
    overlay = np.asarray(Image.open(out / "a_overlay.png")).astype(np.int64)
    np.testing.assert_array_equal(overlay, np.round((image + palette[label]) / 2))
    counts = np.bincount(label.ravel(), minlength=len(meta.classes))
    expected = {meta.classes[k]: round(n / label.size, 6) for k, n in enumerate(counts) if n}
    table = json.loads(shares.read_text())
    assert table["a"] == expected and set(table) == {"a", "b"}
