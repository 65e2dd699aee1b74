"""The evaluator: modes on a hand-made case with known IoU, the CLI on SynthCity (JSON,
predictions, switched sampling) and the authors' BGR 0..255 input convention."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ann.checkpoint import CheckpointMeta, save
from ann.cli.evaluate import format_table, main
from ann.evaluation import evaluate
from ann.inference import mode_options, predict, predict_msflip, predict_slide
from ann.models.backbones import CAFFE_BGR_NORMALIZATION
from ann.models.network import build_network
from ann.models.sampling import SamplingConfig
from ann.training.config import DataConfig, load_config
from ann.training.data import EvalItems, open_split


class Pixelwise(nn.Module):
    """Class 0 where channel 0 is positive, else class 1: the same answer whatever the window."""

    def forward(self, x):
        return torch.cat([x[:, :1], -x[:, :1]], dim=1)


def hand_made_batches():
    # image: left 4 columns positive, right 4 negative -> prediction 0 | 1
    # label: columns 0..4 class 0 (column 4 is predicted wrongly), 5..7 class 1
    x = torch.ones(1, 3, 4, 8)
    x[..., 4:] = -1
    target = torch.ones(1, 4, 8, dtype=torch.long)
    target[..., :5] = 0
    image = torch.zeros(1, 4, 8, 3, dtype=torch.uint8)
    return [(x, target, image, torch.tensor([0]))]


@pytest.mark.parametrize(
    "mode, options",
    [
        ("whole", {}),
        ("slide", mode_options("slide", crop=(4, 4), stride=(2, 2))),
        ("slide", mode_options("slide", crop=(3, 5), stride=(2, 3))),
        ("msflip", mode_options("msflip", scales=(1.0,), flip=True)),
        ("msflip", mode_options("msflip", crop=(4, 4), stride=(4, 2), scales=(1.0,))),
    ],
)
def test_modes_give_the_known_iou(mode, options):
    matrix = evaluate(Pixelwise(), hand_made_batches(), 2, mode, options)
    # class 0: TP 16, FN 4 -> 0.8; class 1: TP 12, FP 4 -> 0.75
    assert matrix.iou().tolist() == pytest.approx([0.8, 0.75])
    assert matrix.miou() == pytest.approx(0.775) and matrix.pixel_accuracy() == pytest.approx(28 / 32)


def test_predictions_are_passed_on():
    seen = []
    evaluate(Pixelwise(), hand_made_batches(), 2, on_prediction=lambda p, im, i: seen.append((p, i)))
    (pred, index), = seen  # fmt: skip
    assert index == 0 and pred[:, :4].eq(0).all() and pred[:, 4:].eq(1).all()


def test_slide_needs_a_crop():
    with pytest.raises(ValueError, match="--crop"):
        mode_options("slide")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    net = build_network(load_config("smoke").model)
    for module in net.modules():  # non-zero W so that the attention (and its sampling) matters
        if isinstance(module, nn.Conv2d) and module.weight.abs().sum() == 0:
            nn.init.normal_(module.weight, std=0.1)
    path = tmp_path_factory.mktemp("ckpt") / "smoke.safetensors"
    save(net, path, CheckpointMeta(net.config, provenance={"data": {"dataset": "synthcity"}}))
    return path


def cli(checkpoint, tmp_path, *extra):
    out = tmp_path / "result.json"
    argv = [str(checkpoint), "--data", "synthcity", "--synthcity-size", "32,64", "--limit", "2",
            "--workers", "0", "--no-progress", "--json", str(out), *extra]  # fmt: skip
    assert main(argv) == 0
    return json.loads(out.read_text())


def test_cli_on_synthcity_writes_json_and_predictions(checkpoint, tmp_path):
    result = cli(
        checkpoint, tmp_path, "--save-predictions", str(tmp_path / "pred"), "--plot", str(tmp_path / "c.png")
    )
    assert (
        set(result) == {"miou", "pixel_acc", "per_class_iou", "confusion"}
        and len(result["per_class_iou"]) == 19
    )
    assert 0 <= result["pixel_acc"] <= 1
    confusion = np.asarray(result["confusion"])  # rows = ground truth: the metrics follow from it
    assert confusion.shape == (19, 19) and 0 < confusion.sum() <= 2 * 32 * 64
    tp, union = confusion.diagonal(), confusion.sum(0) + confusion.sum(1) - confusion.diagonal()
    for k, iou in enumerate(result["per_class_iou"].values()):
        assert (iou is None) if union[k] == 0 else iou == pytest.approx(tp[k] / union[k])
    assert result["pixel_acc"] == pytest.approx(tp.sum() / confusion.sum())
    assert Image.open(tmp_path / "c.png").size[0] > 500
    names = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert names == [f"synthcity_0_val_0000{i}{s}.png" for i in (0, 1) for s in ("", "_overlay")]
    label = np.asarray(Image.open(tmp_path / "pred" / "synthcity_0_val_00000.png"))
    assert label.shape == (32, 64) and label.max() < 19
    assert np.asarray(Image.open(tmp_path / "pred" / "synthcity_0_val_00000_overlay.png")).shape == (
        32,
        64,
        3,
    )


@pytest.fixture
def samplings_seen(monkeypatch) -> list[dict]:
    """The samplings of each model the CLI evaluates, in order."""
    import ann.cli.evaluate

    seen = []

    def spy(model, *args, **kwargs):
        seen.append(model.samplings())
        return evaluate(model, *args, **kwargs)

    monkeypatch.setattr(ann.cli.evaluate, "evaluate", spy)
    return seen


def test_cli_modes_and_switched_sampling(checkpoint, tmp_path, samplings_seen):
    seen = samplings_seen
    cli(checkpoint, tmp_path, "--sampling", "pyramid_max", "--sizes", "1,2,3,6", "--seed", "0")
    assert seen == [
        {
            "fusion": SamplingConfig("pyramid_max", (1, 2, 3, 6)),
            "context": SamplingConfig("pyramid_max", (1, 2, 3, 6)),
        }
    ]
    for extra in (["--mode", "slide", "--crop", "32,32", "--stride", "32,16"], ["--mode", "msflip"]):
        assert 0 <= cli(checkpoint, tmp_path, *extra)["pixel_acc"] <= 1


def test_cli_errors_are_clear(checkpoint, tmp_path, capsys):
    assert main([str(tmp_path / "missing.safetensors"), "--data", "synthcity"]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err
    assert main([str(checkpoint), "--data", str(tmp_path / "nowhere"), "--dataset", "cityscapes"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_authors_bgr_convention():
    split = open_split(DataConfig(synthcity_size=(32, 64)), "val")
    x, _, image, _ = EvalItems(split, CAFFE_BGR_NORMALIZATION, [0])[0]
    rgb = image.permute(2, 0, 1).float()
    assert torch.allclose(x[0], rgb[2] - 102.98) and torch.allclose(x[2], rgb[0] - 122.77)


def test_folder_and_procedural_synthcity_agree(checkpoint, tmp_path):
    from ann.cli.synthcity import write

    write(tmp_path / "cs", "val", [0, 1], 0, (64, 32))  # Cityscapes layout, trainId labels
    procedural = cli(checkpoint, tmp_path)
    folder = tmp_path / "folder.json"
    argv = [str(checkpoint), "--data", str(tmp_path / "cs"), "--dataset", "cityscapes", "--workers", "0",
            "--no-progress", "--json", str(folder)]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(folder.read_text()) == procedural


def test_synthcity_split_defaults_to_the_trained_city_and_size(tmp_path):
    """A checkpoint trained on 64x32 scenes of city 2 is scored on that city's split, at that size."""
    net = build_network(load_config("smoke").model)
    path = tmp_path / "city2.safetensors"
    trained = {"dataset": "synthcity", "synthcity_seed": 2, "synthcity_size": [32, 64]}
    save(net, path, CheckpointMeta(net.config, provenance={"data": trained}))
    argv = [str(path), "--data", "synthcity", "--limit", "1", "--workers", "0", "--no-progress",
            "--save-predictions", str(tmp_path / "pred")]  # fmt: skip
    assert main(argv) == 0
    assert np.asarray(Image.open(tmp_path / "pred" / "synthcity_2_val_00000.png")).shape == (32, 64)


def test_slide_refuses_a_stride_larger_than_the_crop():
    # windows 4 wide every 6 columns would leave columns 4-5 to no window (NaN logits, class 0)
    x = torch.ones(1, 3, 4, 12)
    with pytest.raises(ValueError, match="stride"):
        predict_slide(Pixelwise(), x, crop=(4, 4), stride=(4, 6))
    with pytest.raises(ValueError, match="larger than --crop"):
        mode_options("msflip", crop=(4, 4), stride=(4, 6))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--crop", "16,16"], "--crop has no effect with --mode whole"),
        (["--mode", "slide", "--crop", "16,16", "--scales", "1.0"], "--scales has no effect"),
        (["--mode", "slide", "--crop", "16,16", "--no-flip"], "--no-flip has no effect"),
        (["--mode", "msflip", "--stride", "8,8"], "--stride needs --crop"),
        (["--mode", "slide", "--crop", "16,16", "--stride", "8,32"], "larger than --crop"),
        (["--mode", "slide", "--crop", "16"], "two numbers"),
        (["--seed", "3"], "--seed needs --sampling"),
        (["--sizes", "1,2"], "--sizes needs --sampling"),
        (["--mode", "msflip", "--scales", "0,1"], "--scales must be positive"),  # ran on a 1x1 image
        (["--synthcity-size", "32"], "--synthcity-size takes two numbers H,W"),  # was an unpacking error
    ],
)
def test_cli_refuses_options_that_would_be_ignored(checkpoint, tmp_path, capsys, extra, message):
    out = tmp_path / "result.json"
    argv = [str(checkpoint), "--data", "synthcity", "--synthcity-size", "32,64", "--limit", "1",
            "--workers", "0", "--no-progress", "--json", str(out), *extra]  # fmt: skip
    assert main(argv) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_cli_refuses_unwritable_outputs_before_evaluating(checkpoint, tmp_path, capsys, monkeypatch):
    import ann.cli.evaluate

    monkeypatch.setattr(ann.cli.evaluate, "evaluate", lambda *a, **k: pytest.fail("evaluated anyway"))
    (tmp_path / "a_file").write_text("")
    base = [str(checkpoint), "--data", "synthcity", "--limit", "1", "--workers", "0", "--no-progress"]
    assert main([*base, "--json", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main([*base, "--plot", str(tmp_path / "a_file" / "c.png")]) == 2
    assert "not a writable folder" in capsys.readouterr().err


def test_cli_writes_the_plot_into_a_new_folder(checkpoint, tmp_path):
    plot = tmp_path / "new" / "plots" / "c.png"
    cli(checkpoint, tmp_path, "--plot", str(plot))
    assert Image.open(plot).size[0] > 500


def test_cli_refuses_a_negative_limit(checkpoint, capsys):
    with pytest.raises(SystemExit):
        main([str(checkpoint), "--data", "synthcity", "--limit", "-1"])
    assert "--limit" in capsys.readouterr().err


def test_cli_refuses_a_split_without_a_labelled_pixel(checkpoint, tmp_path, capsys):
    from ann.cli.synthcity import write

    write(tmp_path / "cs", "val", [0], 0, (64, 32))
    labels = list((tmp_path / "cs").rglob("*labelTrainIds.png"))
    assert labels
    for path in labels:  # all ignore: mIoU would be NaN, and --json invalid JSON
        Image.fromarray(np.full((32, 64), 255, np.uint8)).save(path)
    out = tmp_path / "result.json"
    argv = [str(checkpoint), "--data", str(tmp_path / "cs"), "--dataset", "cityscapes", "--workers", "0",
            "--no-progress", "--json", str(out)]  # fmt: skip
    assert main(argv) == 2
    assert "no labelled pixel in val" in capsys.readouterr().err
    assert not out.exists()


def test_cli_scores_the_first_images_of_the_unbounded_synthcity_train_split(checkpoint, tmp_path, capsys):
    assert cli(checkpoint, tmp_path, "--split", "train")["pixel_acc"] > 0  # --limit 2: a TypeError before
    argv = [str(checkpoint), "--data", "synthcity", "--split", "train", "--workers", "0", "--no-progress"]
    assert main(argv) == 2
    assert (
        "unbounded split (SynthCity train) is evaluated on its first N images: --limit N"
        in capsys.readouterr().err
    )


class Recorder(nn.Module):
    """Returns its first two channels as logits and records every input it sees."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return x[:, :2]


def test_slide_averages_overlapping_windows():
    # constant logits: the average over 1, 2 or 4 overlapping windows is that constant; a sum
    # would give 1, 2 and 4 where windows overlap
    x = torch.ones(1, 3, 6, 6)
    out = predict_slide(Recorder(), x, crop=(4, 4), stride=(2, 2))
    assert torch.equal(out, torch.ones(1, 2, 6, 6))


def test_slide_pads_a_small_image_with_zeros():
    # the normalised mean is 0: padding with anything else feeds the model a coloured border
    model = Recorder()
    predict_slide(model, torch.ones(1, 3, 2, 3), crop=(4, 4), stride=(4, 4))
    (window,) = model.seen
    assert window.shape[-2:] == (4, 4) and window[..., 2:, :].eq(0).all() and window[..., :, 3:].eq(0).all()


def test_msflip_passes_see_each_scale_and_return_to_the_input_grid():
    # 8x12 at 0.75 is 6x9 (rows by H, columns by W); a linear ramp survives an align_corners=True
    # resize there and back exactly, so with flips undone the sum is 4x the input
    y, x = torch.meshgrid(torch.arange(8.0), torch.arange(12.0), indexing="ij")
    image = torch.stack([x, y, x + y])[None]
    model = Recorder()
    out = predict_msflip(model, image, scales=(0.75, 1.0), flip=True)
    assert [tuple(s.shape[-2:]) for s in model.seen] == [(6, 9), (6, 9), (8, 12), (8, 12)]
    torch.testing.assert_close(out, 4 * image[:, :2])


def test_evaluate_gives_the_model_back_in_its_mode():
    """The trainer validates mid-run: a network left in eval mode would train on with frozen
    BatchNorm statistics and no dropout."""
    model = nn.Sequential(Pixelwise(), nn.Dropout())
    for training in (True, False):
        model.train(training)
        evaluate(model, hand_made_batches(), 2)
        assert model.training is training


@pytest.mark.parametrize("norm", ["imagenet", "caffe_bgr"])
def test_device_normalization_equals_the_dataset_transform(norm):
    """The trainer normalises uint8 batches on the device (Normalization); evaluation normalises in
    the dataset (Normalize): a model must see the same input in both."""
    from ann.inference import Normalization
    from ann.models.backbones import IMAGENET_NORMALIZATION

    stats = CAFFE_BGR_NORMALIZATION if norm == "caffe_bgr" else IMAGENET_NORMALIZATION
    split = open_split(DataConfig(synthcity_size=(32, 64)), "val")
    x, _, image, _ = EvalItems(split, stats, [0])[0]
    on_device = Normalization(stats)(image.permute(2, 0, 1)[None])
    torch.testing.assert_close(on_device[0], x)


def count_windows(**options):
    model = Recorder()
    predict(model, torch.ones(1, 3, 8, 8), **options)
    return model.seen


def test_slide_windows_are_placed_every_stride():
    """An 8x8 image, 4x4 windows: every 2 pixels 3 x 3 windows, every 4 pixels 2 x 2; msflip with
    windows slides each pass the same way."""
    assert len(count_windows(mode="slide", **mode_options("slide", crop=(4, 4), stride=(2, 2)))) == 9
    assert len(count_windows(mode="slide", **mode_options("slide", crop=(4, 4)))) == 4
    options = mode_options("msflip", crop=(4, 4), stride=(2, 4), scales=(1.0,), flip=False)
    assert len(count_windows(mode="msflip", **options)) == 3 * 2


def test_slide_returns_the_image_area_of_a_padded_small_image():
    x = torch.arange(6.0).view(1, 1, 2, 3).expand(1, 3, 2, 3)
    out = predict_slide(Recorder(), x, crop=(4, 4), stride=(4, 4))
    assert torch.equal(out, x[:, :2])  # not the zero padding on the right and bottom


def test_slide_refuses_windows_of_no_size_or_going_backwards():
    for crop, stride in (((4, 4), (-2, 2)), ((4, 4), (2, 0)), ((0, 4), (0, 4))):
        with pytest.raises(ValueError, match="must be positive"):
            predict_slide(Pixelwise(), torch.ones(1, 3, 8, 8), crop=crop, stride=stride)


def test_msflip_rounds_scaled_sizes_and_resizes_with_the_models_corners():
    """6 x 10 at 0.75 is 4.5 x 7.5: rounded to 5 x 8 as the released protocol; a model trained with
    align_corners=False is fed images resized that way too."""
    x = torch.rand(1, 3, 6, 10, generator=torch.Generator().manual_seed(0))
    for align in (True, False):
        model = Recorder()
        predict_msflip(model, x, scales=(0.75,), flip=False, align_corners=align)
        (seen,) = model.seen
        want = torch.nn.functional.interpolate(x, size=(5, 8), mode="bilinear", align_corners=align)
        torch.testing.assert_close(seen, want)
    assert mode_options("msflip", align=False)["align_corners"] is False


def test_mode_options_keep_the_stride():
    assert mode_options("slide", crop=[4, 6], stride=[2, 3]) == {"crop": (4, 6), "stride": (2, 3)}
    assert mode_options("slide", crop=[4, 6]) == {"crop": (4, 6), "stride": (4, 6)}


def test_normalization_without_a_scale_reads_0_to_255():
    """Checkpoints whose normalization names no scale hold ImageNet statistics of 0..1 images."""
    from ann.inference import Normalization

    stats = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1)
    assert Normalization(stats)(x).flatten().tolist() == pytest.approx([-2.0, 2.0, -1.2])


def test_preprocess_takes_only_uint8_rgb_images():
    from ann.inference import preprocess
    from ann.models.backbones import IMAGENET_NORMALIZATION

    for image in (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4), np.uint8)):
        with pytest.raises(ValueError, match="expected a uint8 H x W x 3 RGB image"):
            preprocess(image, IMAGENET_NORMALIZATION)
    assert preprocess(np.zeros((4, 5, 3), np.uint8), IMAGENET_NORMALIZATION).shape == (1, 3, 4, 5)


def test_amp_is_off_unless_asked_for_on_cuda():
    import contextlib

    from ann.inference import autocast

    assert isinstance(autocast(torch.device("cuda"), False), contextlib.nullcontext)
    assert isinstance(autocast(torch.device("cpu"), True), contextlib.nullcontext)


def test_every_image_of_a_batch_is_passed_on():
    (x, target, image, _), = hand_made_batches()  # fmt: skip
    batch = (x.repeat(2, 1, 1, 1), target.repeat(2, 1, 1), image.repeat(2, 1, 1, 1), torch.tensor([5, 9]))
    seen = []
    evaluate(Pixelwise(), [batch], 2, on_prediction=lambda p, im, i: seen.append(i))
    assert seen == [5, 9]


def test_table_in_percent_with_absent_classes_marked():
    summary = {"miou": 0.775, "pixel_acc": 0.875, "per_class_iou": {"road": 0.8, "sky": None}}
    assert format_table(summary).splitlines() == [
        "class            IoU",
        "road              80.0",
        "sky                n/a",
        "mIoU              77.5",
        "pixel accuracy    87.5",
    ]


def test_cli_seed_reaches_random_sampling(checkpoint, tmp_path, samplings_seen):
    seen = samplings_seen
    cli(checkpoint, tmp_path, "--sampling", "random", "--sizes", "2", "--seed", "3")
    assert seen == [
        {"fusion": SamplingConfig("random", (2,), 3), "context": SamplingConfig("random", (2,), 3)}
    ]


def test_cli_passes_no_flip_and_the_synthcity_seed_on(checkpoint, tmp_path, monkeypatch):
    """--no-flip halves msflip's passes; --synthcity-seed scores another city than the trained one."""
    import ann.cli.evaluate

    options = []

    def spy(model, loader, num_classes, mode, mode_options, *args, **kwargs):
        options.append(mode_options)
        return evaluate(model, loader, num_classes, mode, mode_options, *args, **kwargs)

    monkeypatch.setattr(ann.cli.evaluate, "evaluate", spy)
    cli(checkpoint, tmp_path, "--mode", "msflip", "--scales", "1.0", "--no-flip",
        "--synthcity-seed", "3", "--save-predictions", str(tmp_path / "pred"))  # fmt: skip
    assert options[0]["flip"] is False and options[0]["scales"] == (1.0,)
    assert (tmp_path / "pred" / "synthcity_3_val_00000.png").exists()


def test_cli_refuses_an_output_folder_it_may_not_write(checkpoint, tmp_path, capsys, monkeypatch):
    import ann.cli.args
    import ann.cli.evaluate

    monkeypatch.setattr(ann.cli.evaluate, "evaluate", lambda *a, **k: pytest.fail("evaluated anyway"))
    monkeypatch.setattr(ann.cli.args.os, "access", lambda path, mode: False)  # as a read-only folder
    argv = [str(checkpoint), "--data", "synthcity", "--limit", "1", "--workers", "0", "--no-progress"]
    assert main([*argv, "--json", str(tmp_path / "r.json")]) == 2
    assert f"cannot be written, {tmp_path} is not a writable folder" in capsys.readouterr().err


def test_cli_reads_a_folder_in_the_layout_the_checkpoint_was_trained_on(checkpoint, tmp_path, capsys):
    """Without --dataset, an ADE20K model reads ADE20K's layout; a SynthCity one Cityscapes' (what
    python -m ann.data.synthcity writes)."""
    net = build_network(load_config("smoke").model)
    ade = tmp_path / "ade.safetensors"
    save(net, ade, CheckpointMeta(net.config, provenance={"data": {"dataset": "ade20k"}}))
    for path, layout in ((ade, "ade20k"), (checkpoint, "cityscapes")):
        assert main([str(path), "--data", str(tmp_path / "nowhere"), "--workers", "0", "--no-progress"]) == 2
        assert (
            f"error: {layout}: dataset root {tmp_path / 'nowhere'} is not a folder" in capsys.readouterr().err
        )


def test_class_count_must_match_and_other_names_are_warned_of(capsys):
    from pathlib import Path

    from ann.training.data import check_classes

    with pytest.raises(
        ValueError, match=r"m.st predicts 2 classes but cityscapes has 3; use the right --dataset"
    ):
        check_classes(Path("m.st"), ["road", "sky"], ["road", "sky", "car"], "cityscapes", "")
    with pytest.raises(
        ValueError, match=r"predicts 2 classes but /d/classes.txt names 3; use the checkpoint's"
    ):
        check_classes(Path("m.st"), ["road", "sky"], ["road", "sky", "car"], "folder", "/d")
    check_classes(Path("m.st"), ["road", "sky", "car"], ["road", "cloud", "bus"], "cityscapes", "")
    assert "warning: 2 class names differ between m.st and the data, first id 1: 'sky' vs 'cloud'" in (
        capsys.readouterr().err
    )


def test_confusion_plot_normalises_each_ground_truth_row(tmp_path, monkeypatch):
    """Each row is where one class's pixels went: 3 of 4 road pixels right is 75 %, whatever was
    predicted as road from other classes."""
    import matplotlib.pyplot as plt

    from ann.cli.evaluate import plot_confusion

    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: (figures.append(fig), real_close(fig)))
    summary = {"miou": 0.5, "per_class_iou": {"road": 0.6, "sky": 0.67}, "confusion": [[3, 1], [0, 2]]}
    plot_confusion(summary, tmp_path / "c.png", "m")
    shown = np.asarray(figures[0].axes[0].images[0].get_array())
    np.testing.assert_allclose(shown, [[75, 25], [0, 100]])


@pytest.mark.parametrize(
    "data, extra, message",
    [
        ("folder", ["--synthcity-seed", "3"], "--synthcity-seed has no effect with a dataset folder"),
        ("folder", ["--synthcity-size", "32,64"], "--synthcity-size has no effect with a dataset folder"),
        ("synthcity", ["--dataset", "ade20k"], "--dataset has no effect with --data synthcity"),
    ],
)
def test_cli_refuses_data_options_that_would_be_ignored(checkpoint, tmp_path, capsys, data, extra, message):
    """These were ignored without a word: a score of city 0 taken for one of city 3, or of the
    procedural split taken for the folder's."""
    from ann.cli.synthcity import write

    write(tmp_path / "cs", "val", [0], 0, (64, 32))
    where = str(tmp_path / "cs") if data == "folder" else "synthcity"
    argv = [str(checkpoint), "--data", where, "--limit", "1", "--workers", "0", "--no-progress", *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
