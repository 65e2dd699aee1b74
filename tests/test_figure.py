"""ann.analysis.figures and python -m ann.figure: the app's Fig. 7 grid and attention panels in one file."""

import numpy as np
import pytest
import torch
from PIL import Image

from ann.analysis import features
from ann.analysis.explore import Explorer
from ann.analysis.figures import draw, report_figure
from ann.analysis.panels import level_pictures
from ann.cli.figure import main
from ann.models import build_network, variant
from ann.models.backbones import EFFICIENTNET_NORMALIZATION as IMAGENET_NORMALIZATION
from ann.models.efficientnet import efficientnet_lite0
from tests.conftest_app import attentive_model

pytest_plugins = ("tests.conftest_app",)  # tiny_store, tiny_checkpoints
H, W = 48, 64


@pytest.fixture(scope="module")
def model():
    """The tiny ANN with random query/key projections, so that its attention is not uniform."""
    return attentive_model(keys_only=True)


@pytest.fixture(scope="module")
def imagenet():
    """A random-weight EfficientNet-Lite0 stands in for the ImageNet one (same shapes, no file read)."""
    torch.manual_seed(1)
    return efficientnet_lite0(8).eval(), dict(IMAGENET_NORMALIZATION)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [(f"image{i}", rng.integers(0, 256, (H, W, 3), dtype=np.uint8)) for i in range(2)]


@pytest.fixture(scope="module")
def checkpoints(tiny_checkpoints):
    folder = tiny_checkpoints
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(
            folder / f"street{i}.png"
        )
    return folder


def panel_arrays(figure) -> list[np.ndarray]:
    return [np.asarray(ax.images[0].get_array()) for ax in figure.axes]


def test_stage_grid_draws_the_features_tabs_maps(tiny_store, tmp_path, imagenet, monkeypatch):
    """The app's Stage features tab with the ImageNet backbone as model B, on the same image and
    model: the figure's two rows are its reduced, normalised maps of Stage1..Stage5."""
    from app.tabs import features as tab
    from app.tabs.segment import segment
    from tests.conftest_app import TINY_NAME, street_image

    image = np.asarray(Image.open(street_image(tmp_path / "street.png")))
    session = segment(None, image, None, TINY_NAME, 0.5, False, [], store=tiny_store, max_side=96)[0]
    monkeypatch.setitem(tab._imagenet, session.explorer.model.config.output_stride, imagenet)
    seen = []
    gallery = features.reduced_gallery
    monkeypatch.setattr(
        features, "reduced_gallery", lambda *a, **k: seen.append(gallery(*a, **k)) or seen[-1]
    )
    tab.stage_features(session, "max over channels", True, "viridis", tab.IMAGENET, None, tiny_store)
    (app_ranges, app_units), = seen  # fmt: skip

    path = tmp_path / "stages.png"
    stages, views = report_figure(
        session.explorer.model,
        [("street", session.image)],
        path,
        "stages",
        imagenet=imagenet,
        reduction="max",
    )
    assert views == [] and stages[0].ranges == app_ranges
    assert set(stages[0].units) == set(app_units)  # A: stages + afnb + apnb, B: stages; one range
    for key, unit in app_units.items():
        torch.testing.assert_close(stages[0].units[key], unit, rtol=0, atol=0)
    figure = draw(stages, views)
    arrays = panel_arrays(figure)
    assert len(arrays) == 12  # ImageNet row, model row: the image + 5 stages each
    np.testing.assert_array_equal(arrays[0], session.image)
    for row, label in enumerate(("B", "A")):
        for k, stage in enumerate(features.STAGES):
            np.testing.assert_array_equal(arrays[6 * row + 1 + k], app_units[label, stage].numpy())
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("block, key", [("context", "apnb"), ("fusion", "afnb")])
def test_attention_rows_are_explorer_attention_at_the_points(model, images, tmp_path, block, key):
    points = [(5.0, 40.0), (63.0, 0.0)]
    path = tmp_path / "attention.svg"
    _, views = report_figure(model, images, path, "attention", points, block)
    explorer = Explorer(model)
    for view, (name, image), (x, y) in zip(views, images, points, strict=True):
        result = explorer.run(image)
        weights, geometry = explorer.attention_at(x, y, key)
        assert view.name == name and view.block == key and view.point == (x, y)
        np.testing.assert_array_equal(view.weights, weights)
        assert torch.equal(view.geometry.boxes, geometry.boxes)
        assert view.cell == explorer.feature_cell(x, y, key)
        np.testing.assert_array_equal(view.labels, result.labels)
        for (picture, caption, level), (expected, text, k) in zip(
            view.pictures, level_pictures(image, weights, geometry, (x, y)), strict=True
        ):
            np.testing.assert_array_equal(picture, expected)
            assert (caption, level) == (text, k)
    levels = len(model.config.sampling.sizes)
    figure = draw([], views, [[10 * k, 0, 0] for k in range(19)])
    arrays = panel_arrays(figure)
    assert len(arrays) == 2 * (2 + levels)  # image, prediction, one panel per pyramid level
    np.testing.assert_array_equal(arrays[1][..., 0], 10 * views[0].labels)  # the palette's colours
    np.testing.assert_array_equal(arrays[2 + levels + 2], views[1].pictures[0][0])
    assert b"<svg" in path.read_bytes()[:400]


def test_default_point_is_the_centre_and_one_point_serves_every_image(model, images, tmp_path):
    _, views = report_figure(model, images, tmp_path / "a.pdf", "attention")
    assert [v.point for v in views] == [((W - 1) // 2, (H - 1) // 2)] * 2
    _, views = report_figure(model, images, tmp_path / "b.pdf", "attention", [(3.0, 4.0)])
    assert [v.point for v in views] == [(3.0, 4.0)] * 2
    assert (tmp_path / "b.pdf").read_bytes()[:5] == b"%PDF-"


def test_both_kinds_stack_two_stage_rows_and_an_attention_row_per_image(model, images, imagenet, tmp_path):
    stages, views = report_figure(model, images, tmp_path / "both.png", "both", imagenet=imagenet)
    figure = draw(stages, views)
    assert len(figure.axes) == 2 * (12 + 2 + len(model.config.sampling.sizes))
    titles = [ax.get_title() for ax in figure.axes]
    assert titles[0] == "image0\nImageNet EfficientNet-Lite0" and titles[6] == "image0\nsegmentation model"
    assert (
        titles[12].startswith("image0\n(x=31, y=23)") and titles[18] == "image1\nImageNet EfficientNet-Lite0"
    )


def test_refusals_name_the_problem(model, images, tmp_path):
    fcn = build_network(variant("baseline", backbone="resnet18", head_channels=16)).eval()
    with pytest.raises(ValueError, match="no attention block"):
        report_figure(fcn, images, tmp_path / "f.png", "attention")
    with pytest.raises(ValueError, match=r"point \(x=64.0, y=1.0\) lies outside image1 \(64x48"):
        report_figure(model, images, tmp_path / "f.png", "attention", [(1.0, 1.0), (64.0, 1.0)])
    with pytest.raises(ValueError, match="3 points for 2 images"):
        report_figure(model, images, tmp_path / "f.png", "attention", [(1.0, 1.0)] * 3)
    with pytest.raises(ValueError, match="one of .png, .svg, .pdf"):
        report_figure(model, images, tmp_path / "f.jpg", "attention")
    assert not list(tmp_path.iterdir())  # refused before anything was drawn


def test_cli_on_files_and_on_synthcity_indices(checkpoints, tmp_path, capsys):
    tiny = str(checkpoints / "tiny.safetensors")
    files = [str(checkpoints / f"street{i}.png") for i in range(2)]
    out = tmp_path / "figure.png"
    assert (
        main(
            [
                tiny,
                *files,
                "--kind",
                "attention",
                "--points",
                "1,2;60,40",
                "--size",
                "48,64",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "street1.png: APNB at (x=60, y=40)" in printed and out.read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "synthcity.svg"
    argv = [tiny, "--data", "synthcity", "--indices", "1,0", "--kind", "attention", "--block", "fusion"]
    assert main([*argv, "--size", "64,128", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        printed.index("synthcity test #1: AFNB") < printed.index("synthcity test #0: AFNB") and out.is_file()
    )


def test_cli_refusals(checkpoints, tmp_path, capsys):
    tiny, fcn = str(checkpoints / "tiny.safetensors"), str(checkpoints / "fcn.safetensors")
    image = str(checkpoints / "street0.png")
    out = ["--size", "48,64", "--out", str(tmp_path / "f.png")]
    assert main([fcn, image, "--kind", "attention", *out]) == 2
    assert "no attention block" in capsys.readouterr().err
    assert main([tiny, image, "--points", "70,3", "--kind", "attention", *out]) == 2
    assert "lies outside street0.png (64x48" in capsys.readouterr().err
    assert main([tiny, image, str(tmp_path / "missing.png"), *out]) == 2
    assert "no such image file: " in capsys.readouterr().err
    assert main([tiny, "--data", "synthcity", *out]) == 2
    assert "--data and --indices go together" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()


def test_the_tab_dilates_the_imagenet_backbone_to_model_as_output_stride(tmp_path, monkeypatch):
    """Model A at output stride 16: model B, the ImageNet backbone, is asked for at stride 16 too,
    so that both models' Stage4/Stage5 maps cover the image alike."""
    from ann.checkpoint import CheckpointMeta, save
    from app.session import ModelStore
    from app.tabs import features as tab
    from app.tabs.segment import segment
    from tests.conftest_app import street_image

    config = variant("full", backbone="resnet18", output_stride=16, head_channels=64, key_channels=32)
    (tmp_path / "folder").mkdir()
    save(build_network(config).eval(), tmp_path / "folder" / "os16.safetensors", CheckpointMeta(config))
    store = ModelStore(tmp_path / "folder")
    image = np.asarray(Image.open(street_image(tmp_path / "street.png")))
    session = segment(None, image, None, "os16.safetensors", 0.5, False, [], store=store, max_side=96)[0]
    asked = []

    def random_lite0(output_stride=8):  # the ImageNet one's shapes, no file read
        asked.append(output_stride)
        return efficientnet_lite0(output_stride).eval(), dict(IMAGENET_NORMALIZATION)

    monkeypatch.setattr(features, "imagenet_backbone", random_lite0)
    monkeypatch.setattr(tab, "_imagenet", {})
    groups, _ = tab.feature_groups(session, tab.IMAGENET, None, store)
    assert asked == [16]
    stage3, stage5 = (groups["B"][name].shape[-1] for name in ("stage3", "stage5"))
    assert stage5 == -(-stage3 // 2)  # 1/16 of the image against Stage3's 1/8
