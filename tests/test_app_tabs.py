"""The analysis tabs through their API endpoints (gradio_client against the launched app)."""

import json

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from ann.analysis.features import STAGES
from ann.data.labels import CITYSCAPES_CLASSES
from app.tabs import efficiency
from app.tabs.explain import MAJORITY
from app.tabs.features import IMAGENET

pytest_plugins = ("tests.conftest_app",)  # the launched app: app_client, tiny_store
TINY_NAME = "tiny.safetensors"

MEAN = "mean over channels"
PCA = "PCA to RGB (3 principal components)"
LAYERS = ["stage1", "stage2", "stage3", "stage4", "stage5", "afnb", "apnb"]


def read(item) -> np.ndarray:
    path = item["image"] if isinstance(item, dict) else item
    return np.asarray(Image.open(path).convert("RGB"))


def on_colormap(image: np.ndarray, cmap: str) -> bool:
    lut = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(int)
    colours = np.unique(image.reshape(-1, 3), axis=0).astype(int)
    distance = np.abs(colours[:, None, :] - lut[None]).sum(-1).min(1)
    return bool(distance.max() <= 3)


def test_stage_features_gallery_uses_the_colormap_and_one_range(app_client):
    client, _ = app_client
    first, second, status = client.predict(MEAN, True, "cividis", "none", api_name="/stage_features")
    assert [item["caption"].split(" · ")[0] for item in first] == LAYERS and second == []
    assert "one range shared by all 7 maps" in status
    images = [read(item) for item in first]
    assert all(image.shape == (240, 320, 3) for image in images)  # image aspect, longer side 320
    assert all(on_colormap(image, "cividis") for image in images)
    # under one shared range, the map with the smallest activations no longer spans the colormap
    own = [
        read(item) for item in client.predict(MEAN, False, "cividis", "none", api_name="/stage_features")[0]
    ]
    assert any(not np.array_equal(a, b) for a, b in zip(images, own, strict=True))
    gallery, _, status = client.predict(MEAN, False, "viridis", "none", api_name="/stage_features")
    caption = gallery[0]["caption"]
    assert "range [" in caption  # and in the status line, which the browser never cuts short
    assert "stage1 " + caption.split("range ")[1] in status.split("Ranges: ")[1]


def test_pca_gallery_and_the_imagenet_backbone_side_by_side(app_client):
    client, _ = app_client
    first, second, status = client.predict(PCA, True, "viridis", IMAGENET, api_name="/stage_features")
    assert [item["caption"][:5] for item in first] == ["A: st"] * 5 + ["A: af", "A: ap"]
    assert [item["caption"].split(" · ")[0] for item in second] == [f"B: stage{i}" for i in range(1, 6)]
    assert "16 ch" in second[0]["caption"] and "model B: EfficientNet-Lite0" in status
    size = lambda item: item["caption"].split(" · ")[2]  # noqa: E731 - "hxw"
    assert size(second[4]) == size(second[2])  # dilated to model A's output stride, 8: Stage3's size
    assert read(second[4]).shape == (240, 320, 3)
    ckas = [float(part.split()[1]) for part in status.split("many images): ")[1].split(" · ")]
    assert len(ckas) == 5 and all(0 <= value < 0.99 for value in ckas)  # two different networks


def test_a_model_beside_itself_has_the_same_features_at_every_stage(app_client):
    client, _ = app_client
    _, second, status = client.predict(MEAN, True, "viridis", TINY_NAME, api_name="/stage_features")
    assert len(second) == 7 and f"model B: {TINY_NAME}" in status
    ckas = status.split("many images): ")[1]
    assert ckas == " · ".join(f"{name} 1.00" for name in [*STAGES, "afnb", "apnb"])


def test_cosine_maps_peak_at_the_clicked_feature(app_client):
    client, _ = app_client
    first, second, status = client.predict(20, 10, "none", "viridis", api_name="/cosine")
    assert len(first) == 7 and second == [] and "(x=20, y=10)" in status
    top = (np.array(colormaps["viridis"](1.0)[:3]) * 255).round()
    for item in first:  # cosine 1 at the queried cell: the top colour of the colormap appears
        assert (np.abs(read(item).astype(int) - top).sum(-1) <= 3).any(), item["caption"]
    with pytest.raises(Exception, match="inside it"):
        client.predict(64, 10, "none", "viridis", api_name="/cosine")


def test_explain_reports_an_absent_class_instead_of_attributing(app_client):
    client, _ = app_client
    cam, ig, status = client.predict(
        "stage5", "train", "pixels predicted as the class", None, None, 8, ["Grad-CAM"], 2, 64,
        api_name="/explain",
    )  # fmt: skip
    assert cam is None and ig is None
    assert "'train' is absent from the prediction" in status and "predicted classes:" in status


def predicted_class(status: str) -> str:
    return status.rsplit("predicted classes: ", 1)[1].split(",")[0].strip()


@pytest.mark.parametrize("layer", ["stage3", "apnb"])
def test_explain_grad_cam_and_integrated_gradients_for_a_predicted_class(app_client, layer):
    client, _ = app_client
    absent = client.predict("stage5", "train", "pixels predicted as the class", None, None, 8, [], 2, 64,
                            api_name="/explain")[2]  # fmt: skip
    present = predicted_class(absent)
    methods = ["Grad-CAM", "Integrated Gradients"]
    cam, ig, status = client.predict(
        layer, present, "pixels predicted as the class", None, None, 8, methods, 2, 64, api_name="/explain"
    )
    assert read(cam).shape == read(ig).shape == (240, 320, 3)
    assert f"Grad-CAM on {layer}" in status and "Completeness" in status and "2 steps" in status


def test_explain_a_clicked_region_with_its_majority_class(app_client):
    client, _ = app_client
    cam, ig, status = client.predict(
        "stage5", "(class predicted most in the region)", "clicked region", 50, 20, 6, ["Grad-CAM"], 2, 64,
        api_name="/explain",
    )  # fmt: skip
    assert cam is not None and ig is None
    assert "disc of radius 6 px around (x=50, y=20)" in status
    _, _, missing = client.predict("stage5", "road", "clicked region", None, None, 6, ["Grad-CAM"], 2, 64,
                                   api_name="/explain")  # fmt: skip
    assert "click the image" in missing


def test_efficiency_measures_nb_growing_faster_than_apnb(app_client):
    client, _ = app_client
    gmacs, time_ms, memory, table, info = client.predict("16x16, 32x32", 64, 16, 1, api_name="/efficiency")
    rows = {(row[0], row[3]): row for row in table["data"]}
    assert set(rows) == {("nb", 256), ("apnb", 256), ("nb", 1024), ("apnb", 1024)}
    gmac = {key: row[4] for key, row in rows.items()}
    # NB's attention grows as N^2 and APNB's as N S: from N=256 to 1024, NB grows more
    assert gmac["nb", 1024] / gmac["nb", 256] > gmac["apnb", 1024] / gmac["apnb", 256]
    figure = json.loads(gmacs["plot"])
    assert gmacs["type"] == "plotly" and {t["name"] for t in figure["data"]} >= {
        "nb measured",
        "apnb measured",
    }
    with pytest.raises(Exception, match="exceed"):
        client.predict("128x128", 64, 16, 1, api_name="/efficiency")


def test_recorded_benchmarks_are_read_from_bench_json(tmp_path):
    folder = tmp_path / "docs" / "benchmarks"
    folder.mkdir(parents=True)
    rows = [
        {"block": "nb", "width": 96, "height": 96, "gmacs": 58.0, "time_ms": 19.0, "device_name": "H100"},
        {"block": "apnb", "width": 96, "height": 96, "gmacs": 15.5, "time_ms": 12.0, "device_name": "H100"},
    ]
    (folder / "block.json").write_text(json.dumps(rows + [{"variant": "full"}]))
    figure, table, info = efficiency.recorded(tmp_path)
    assert [row[:4] for row in table] == [["nb", 96, 96, 9216], ["apnb", 96, 96, 9216]]
    assert "2 recorded rows from block.json" in info
    assert efficiency.recorded(tmp_path / "none")[1] == []


def test_model_endpoints_share_the_model_queue(app_client):
    _, demo = app_client
    found = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    for name in ("stage_features", "cosine", "explain", "efficiency"):
        assert found[name].concurrency_id == "model", name


def test_explain_image_shows_the_segmented_image(app_client):
    client, _ = app_client
    image, menu, layers = client.predict(api_name="/explain_image")
    assert read(image).shape == (48, 64, 3)
    assert [choice[0] for choice in menu["choices"]] == [MAJORITY, *CITYSCAPES_CLASSES]  # the model's classes
    assert [choice[0] for choice in layers["choices"]] == LAYERS  # the full ANN's stages and blocks
    import os

    from PIL import Image

    paths = {os.path.basename(p): p for p in client.predict(api_name="/export")}
    labels = np.asarray(Image.open(paths["labels.png"]))
    assert menu["value"] == CITYSCAPES_CLASSES[np.bincount(labels.ravel()).argmax()]  # it has pixels


def test_time_fits_recover_the_cost_shape_and_never_bend_down():
    N = np.array([256.0, 512, 1024, 1536, 2048])
    exact = 1e-5 * N**2 + 2e-3 * N + 1.0
    assert np.allclose(efficiency.fit_curve(N, exact, quadratic=True), [1e-5, 2e-3, 1.0], rtol=1e-4)
    noisy = exact.copy()
    noisy[2] *= 8  # one timing slowed by a busy CPU
    assert np.all(efficiency.fit_curve(N, noisy, quadratic=True) >= 0)


# ---- handlers and helpers called directly (mutation audit: exact values) ----------------------


@pytest.fixture
def session(tiny_store, tmp_path):
    from app.tabs.segment import segment
    from tests.conftest_app import TINY_NAME, street_image

    image = np.asarray(Image.open(street_image(tmp_path / "street.png")))
    return segment(None, image, None, TINY_NAME, 0.5, False, [], store=tiny_store, max_side=96)[0]


def test_tab_image_helpers_keep_rows_columns_and_blend_over_grey():
    from app.plots import mark_point
    from app.plots import over_grey as overlay
    from app.plots import unit_colors as colorize

    pca = np.zeros((3, 2, 4), np.float32)
    pca[0, 1, 3], pca[2, 0, 1] = 1.0, 0.5  # (3, H, W) components are the R, G, B of each cell
    rgb = colorize(pca)
    assert rgb.shape == (2, 4, 3) and rgb[1, 3].tolist() == [255, 0, 0] and rgb[0, 1].tolist() == [0, 0, 128]
    image = np.zeros((1, 1, 3), np.uint8)
    image[0, 0] = [30, 60, 90]  # grey 60
    assert overlay(image, np.full((1, 1, 3), 200, np.uint8), 0.25).tolist() == [[[95, 95, 95]]]
    marked = mark_point(np.zeros((10, 20, 3), np.uint8), (2, 15))  # (row, col)
    assert (marked[2, 11:20] == 255).all() and (marked[0:7, 15] == 255).all() and marked[2, 5].sum() == 0


def test_cosine_queries_the_clicked_cell_and_marks_it(session, tiny_store):
    """Pixel (x=40, y=10) of the 48x64 image is cell (1, 5) of the 7x9 Stage5 map (align_corners);
    the gallery (240x320) marks it at row 50, col 200 with a white cross."""
    from app.tabs.features import cosine

    first, _, status, _ = cosine(session, 40, 10, "none", None, "viridis", tiny_store)
    rgb, caption = next(item for item in first if item[1].startswith("stage5"))
    assert caption == "stage5 · cell (row, col) (1, 5)" and "(x=40, y=10) of the 64x48 image" in status
    assert (rgb[50, 200] == 255).all() and not (rgb[200, 50] == 255).all()


def test_second_model_features_are_cached_per_image(session, tiny_store):
    from app.tabs.features import comparison_features, image_key

    stale = {"key": (TINY_NAME, "another image", 8), "features": {"stale": None}}
    found, cache = comparison_features(tiny_store, TINY_NAME, session.image, stale)
    assert "stage5" in found and cache["key"] == (TINY_NAME, image_key(session.image), 8)
    assert comparison_features(tiny_store, TINY_NAME, session.image, cache)[0] is found  # reused
    assert comparison_features(tiny_store, TINY_NAME, session.image, cache, 16)[0] is not found


def test_class_names_and_numbers_and_the_reduced_attribution_size(session):
    import gradio as gr

    from app.tabs.explain import class_index, scaled_input

    classes = list(CITYSCAPES_CLASSES)
    assert class_index("bicycle", classes) == class_index("18", classes) == 18
    with pytest.raises(gr.Error, match="unknown class '19'"):
        class_index("19", classes)
    assert tuple(scaled_input(session, 32).shape[-2:]) == (24, 32)  # longer side 64 -> 32


def test_explain_marks_the_clicked_region_and_keeps_the_chosen_layer(session):
    """Region centre (x=50, y=20) of the 48x64 image is row 100, col 250 of the 240x320 view."""
    from app.tabs.explain import MODES, explain, show_image

    cam, _, status = explain(session, "stage5", "wall", MODES[1], 50, 20, 6, ["Grad-CAM"], 2, 32,
                             progress=lambda *a, **k: None)  # fmt: skip
    assert (cam[100, 250] == 255).all() and not (cam[250 * 240 // 320, 100] == 255).all()
    assert "Computed at 32x24 px." in status
    _, menu, layers = show_image(session, "apnb")
    assert layers["value"] == "apnb" and menu["value"] == "wall"  # the class of every pixel


def test_efficiency_sizes_are_sorted_capped_at_96x96_and_grids_keep_the_aspect():
    import gradio as gr

    assert efficiency.parse_sizes("32x32; 16x16, 32x16") == [(16, 16), (32, 16), (32, 32)]
    assert efficiency.parse_sizes("96x96") == [(96, 96)]
    with pytest.raises(gr.Error, match="97x96 exceed 9216 positions"):
        efficiency.parse_sizes("97x96")
    assert efficiency.grid_size(512, 32, 16) == (16, 32)  # (height, width) of a 2:1 map


def test_cosine_colours_span_minus_one_to_plus_one(session, tiny_store, monkeypatch):
    """The status promises 'darkest -1, brightest +1': a similarity of 0 (orthogonal features)
    must be the colormap's middle, not its darkest end."""
    import torch

    from ann.analysis import features
    from app.tabs.features import cosine

    similarity = torch.zeros(48, 64)
    similarity[:, :16], similarity[:, 48:] = -1.0, 1.0
    monkeypatch.setattr(features, "cosine_maps", lambda *a: {"probe": (similarity, (0, 0))})
    (rgb, _), *_ = cosine(session, 40, 10, "none", None, "viridis", tiny_store)[0]
    viridis = [(np.array(colormaps["viridis"](v)[:3]) * 255).round() for v in (0.0, 0.5, 1.0)]
    for column, want in zip((20, 160, 300), viridis, strict=True):  # -1, 0, +1 on the 320 px picture
        assert np.abs(rgb[200, column].astype(int) - want).sum() <= 3, column


def test_grad_cam_is_scaled_to_its_peak(session):
    """Grad-CAM maps of different layers and targets are shown on one 0..1 colour scale."""
    import torch

    from ann.analysis import features
    from app.tabs.explain import grad_cam

    model = session.explorer.model
    x = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(48, 64, dtype=torch.bool)
    mask[20:30, 20:40] = True
    targets = [features.MaskedLogitSum(model, k, mask) for k in range(19)]
    cams = [grad_cam(target, model, "stage4", x, (24, 32)) for target in targets]
    assert all(cam.shape == (24, 32) and cam.min() >= 0 for cam in cams)
    peaked = [cam for cam in cams if cam.max() > 0]
    assert peaked and all(abs(float(cam.max()) - 1.0) < 1e-6 for cam in peaked)
