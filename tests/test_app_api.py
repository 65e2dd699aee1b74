"""The app's named endpoints through gradio_client, against a launched app on a free loopback port
with a tiny checkpoint; and the decoding of untrusted uploads (ann/images.py)."""

import json
import os

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from ann.checkpoint import CheckpointMeta, file_sha256, save
from ann.images import ImageError, from_array, read_image, read_label_map
from ann.models import build_network, variant
from tests import conftest_app
from tests.conftest_app import TINY_NAME, street_image

tiny_store = conftest_app.tiny_store  # handlers called directly on the tiny checkpoint

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
H, W = 96, 128


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app")
    (folder / "checkpoints").mkdir()
    torch.manual_seed(0)
    config = variant("full", backbone="resnet18", num_classes=19, head_channels=64, key_channels=32,
                     value_channels=32)  # fmt: skip
    model = build_network(config)
    checkpoint = save(model, folder / "checkpoints" / "tiny.safetensors", CheckpointMeta(model.config))
    (folder / "checkpoints" / "tiny.md").write_text("# Tiny test model\ntrained on nothing")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(folder / "image.png")
    label = rng.integers(0, 19, (H, W)).astype(np.uint8)
    label[:10] = 255
    Image.fromarray(label).save(folder / "label.png")
    return {
        "folder": folder,
        "checkpoint": checkpoint,
        "image": folder / "image.png",
        "label": folder / "label.png",
    }


@pytest.fixture(scope="module")
def client(files):
    from gradio_client import Client

    from app.layout import build_demo, launch_options
    from app.session import ModelStore

    demo = build_demo(ModelStore(files["folder"] / "checkpoints"), "tiny.safetensors")
    port, _ = conftest_app.launch(demo.queue(), **launch_options())
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.test_url = f"http://127.0.0.1:{port}"
        client.test_analytics = demo.analytics_enabled
        client.test_demo = demo
        yield client
    finally:
        demo.close()


VIEW = (0.5, False, [])
API = {  # the programmatic API (app/api.py) and the tabs' endpoints: name -> required inputs
    "/segment": ["image"], "/attention": ["x", "y"], "/anchor": ["anchor"],
    "/set_sampling": ["method", "sizes"], "/reset_sampling": [], "/export": [], "/checkpoints": [],
    "/model_card": [], "/upload_checkpoint": ["file"], "/stage_features": [], "/cosine": ["x", "y"],
    "/explain": [], "/explain_image": [], "/efficiency": [], "/recorded_benchmarks": [],
    "/class_context": [], "/nb_compare": [], "/nb_compare_split": [],
}  # fmt: skip


def segment(client, files, label=True):
    """(overlay, summary) of the test image, a new result that is the client's latest."""
    from gradio_client import handle_file

    label_file = handle_file(str(files["label"])) if label else None
    return client.predict(handle_file(str(files["image"])), label_file, "tiny.safetensors", *VIEW,
                          api_name="/segment")  # fmt: skip


def test_every_action_needs_only_its_essential_inputs(client):
    """The named endpoints, each with only its essential inputs required (the rest have the
    defaults a user expects) and a description; the browser's own listeners of the same actions
    are private (no "/segment_1")."""
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    required = {
        name: [p["parameter_name"] for p in endpoint["parameters"] if not p["parameter_has_default"]]
        for name, endpoint in endpoints.items()
    }
    assert required == API
    assert all(endpoints[name]["description"] for name in API if name != "/recorded_benchmarks")
    defaults = {p["parameter_name"]: p["parameter_default"] for p in endpoints["/segment"]["parameters"]}
    assert defaults == {"image": None, "label_map": None, "checkpoint": "", "opacity": 0.55, "outline": False,
                        "hidden": None}  # fmt: skip


def test_serves_only_its_own_files(client, files):
    import urllib.error
    import urllib.request

    from app.layout import EXAMPLES

    def status(path) -> int:
        try:
            return urllib.request.urlopen(f"{client.test_url}/gradio_api/file={path}").status
        except urllib.error.HTTPError as error:
            return error.code

    assert status(next((EXAMPLES / "photos").glob("*.jpg")).resolve()) == 200
    assert status(files["checkpoint"]) == 403
    assert status(EXAMPLES.parent.parent.resolve() / "app.py") == 403
    assert status("/etc/passwd") == 403
    assert client.test_analytics is False


def test_segment_with_ground_truth(client, files):
    """The overlay at the processed size; the summary names the result and scores it: the test
    checkpoint records no training size, so the 128x96 image is read as it is (longer side up
    to 1024)."""
    overlay, summary = segment(client, files)
    assert np.asarray(Image.open(overlay)).shape == (H, W, 3)
    assert summary["checkpoint"] == "tiny.safetensors" and summary["size"] == [W, H]
    assert summary["image"] == "image.png" and len(summary["handle"]) == 12
    assert sum(summary["class_shares"].values()) == pytest.approx(100, abs=0.1)
    assert summary["miou"] == pytest.approx(np.mean(list(summary["iou"].values())), abs=0.1)
    assert "mIoU" in summary["text"] and summary["blocks"] == ["afnb", "apnb"]


def test_attention_anchor_and_bad_points(client, files):
    from gradio_client.exceptions import AppError

    segment(client, files, label=False)
    panels, summary = client.predict(10, 20, api_name="/attention")  # the context block, APNB
    assert Image.open(panels).size[0] > 0
    assert summary["block"] == "apnb" and summary["S"] == 110 and len(summary["level_weights"]) == 4
    assert sum(summary["level_weights"]) == pytest.approx(1, abs=1e-4)
    strongest = summary["strongest"][0]
    assert strongest["weight"] == max(s["weight"] for s in summary["strongest"])
    picture, about = client.predict(strongest["anchor"], api_name="/anchor")
    assert Image.open(picture).size == (W, H) and f"#{strongest['anchor']} " in about["text"]
    assert client.predict(10, 20, "afnb", api_name="/attention")[1]["block"] == "afnb"
    with pytest.raises(AppError, match="outside"):
        client.predict(W, 5, api_name="/attention")


def test_sampling_switch_and_reset(client, files):
    from gradio_client.exceptions import AppError

    segment(client, files, label=False)
    overlay, summary = client.predict("pyramid_max", "1,2,3,6", api_name="/set_sampling")
    assert summary["sampling"] == {"afnb": "pyramid_max (1, 2, 3, 6) (S = 50)",
                                   "apnb": "pyramid_max (1, 2, 3, 6) (S = 50)"}  # fmt: skip
    assert len(summary["differences"]) == 2 and summary["gmacs"]["apnb"] > 0
    assert Image.open(overlay).size == (W, H) and 0 <= summary["changed_percent"] <= 100
    assert client.predict(5, 5, api_name="/attention")[1]["S"] == 50
    assert client.predict(api_name="/reset_sampling")[1]["differences"] == []
    with pytest.raises(AppError, match="one size"):
        client.predict("random", "1,2", api_name="/set_sampling")


def test_export(client, files):
    segment(client, files, label=False)
    client.predict(30, 40, api_name="/attention")
    client.predict("pyramid_average", "1,4,8,12", api_name="/set_sampling")
    paths = {os.path.basename(p): p for p in client.predict(api_name="/export")}
    assert {"overlay.png", "labels.png", "panels.png", "attention.npz", "settings.json"} <= set(paths)
    settings = json.loads(open(paths["settings.json"]).read())
    assert settings["checkpoint_sha256"] == file_sha256(files["checkpoint"])
    assert settings["sampling"]["context"]["sizes"] == [1, 4, 8, 12]
    assert settings["selection"]["x"] == 30 and settings["selection"]["y"] == 40
    arrays = np.load(paths["attention.npz"])
    assert arrays["apnb_weights"].shape[1] == 1 + 16 + 64 + 144
    assert arrays["selected_weights"].sum() == pytest.approx(1, abs=1e-4)
    assert Image.open(paths["labels.png"]).mode == "L"


def test_export_after_the_picked_anchor_is_gone(client, files):
    """An anchor shown, then a sampling with fewer anchors: the export holds what exists (no
    anchor.png of an anchor that is gone), instead of failing."""
    segment(client, files, label=False)
    client.predict(100, api_name="/anchor")  # S = 110; no pixel asked
    client.predict("pyramid_average", "1,2", api_name="/set_sampling")  # S = 5
    paths = {os.path.basename(p): p for p in client.predict(api_name="/export")}
    assert "anchor.png" not in paths
    settings = json.loads(open(paths["settings.json"]).read())
    assert settings["sampling"]["context"]["sizes"] == [1, 2] and "anchor" not in settings["selection"]


def test_model_card_and_bad_upload(client, files, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    assert client.predict(api_name="/checkpoints") == {"default": "tiny.safetensors",
                                                       "checkpoints": ["tiny.safetensors"]}  # fmt: skip
    card = client.predict(api_name="/model_card")  # the default model's
    assert "Tiny test model" in card and "sha256" in card
    with pytest.raises(AppError, match="unknown checkpoint 'other'; available: tiny.safetensors"):
        client.predict("other", api_name="/model_card")
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(AppError, match="broken.safetensors"):
        client.predict(handle_file(str(bad)), api_name="/upload_checkpoint")


def test_sessions_are_isolated(client, files):
    """A second client keeps its own latest result, sampling and attention; a handle names a
    result for any client."""
    from gradio_client import Client, handle_file

    other = Client(client.test_url + "/", verbose=False)
    _, mine = segment(client, files, label=False)
    client.predict("pyramid_max", "1,2,3,6", api_name="/set_sampling")
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(files["folder"] / "small.png")
    _, theirs = other.predict(handle_file(str(files["folder"] / "small.png")), api_name="/segment")
    assert theirs["size"] == [60, 40] and theirs["handle"] != mine["handle"]
    assert other.predict(5, 5, api_name="/attention")[1]["S"] == 110
    assert client.predict(100, 80, api_name="/attention")[1]["S"] == 50  # 100 > 60: the first image
    assert other.predict(100, 80, handle=mine["handle"], api_name="/attention")[1]["handle"] == mine["handle"]


def test_a_handle_names_one_result_and_an_unknown_one_is_refused(client, files):
    """/attention on a handle, on an image given instead (a new result), and the errors for an
    unknown handle and for a client that never segmented."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    _, first = segment(client, files, label=False)
    _, summary = client.predict(3, 4, image=handle_file(str(files["image"])), api_name="/attention")
    assert summary["handle"] != first["handle"] and summary["x"] == 3
    assert client.predict(3, 4, handle=first["handle"], api_name="/attention")[1]["handle"] == first["handle"]
    with pytest.raises(
        AppError, match=r"unknown or expired handle 'nope' \(the server keeps the most recent results"
    ):
        client.predict(3, 4, handle="nope", api_name="/attention")
    with pytest.raises(AppError, match="Segment an image first"):
        Client(client.test_url + "/", verbose=False).predict(3, 4, api_name="/attention")


def test_session_state_expires_and_frees_its_caches(client, files):
    import gradio as gr

    from app.layout import release
    from app.session import STATE_TTL_S, ModelStore

    states = [b for b in client.test_demo.blocks.values() if isinstance(b, gr.State)]
    session_states = [b for b in states if b.delete_callback is release]
    assert len(session_states) == 1 and session_states[0].time_to_live == STATE_TTL_S <= 3600
    session = ModelStore(files["folder"] / "checkpoints").session("tiny.safetensors")
    session.explorer.run(np.zeros((32, 48, 3), np.uint8))
    release(session)
    assert session.explorer.stages is None and session.result is None


# ---- decoding of uploads ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20),  # 16-bit
        lambda: Image.new("CMYK", (64, 48), (10, 20, 30, 0)),
        lambda: Image.new("P", (64, 48), 3),
        lambda: Image.new("LA", (64, 48), (100, 128)),
        lambda: Image.new("RGBA", (64, 48), (255, 0, 0, 0)),
    ],
)
def test_any_mode_becomes_rgb(tmp_path, make):
    path = tmp_path / ("x.tiff" if make().mode == "CMYK" else "x.png")
    make().save(path)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)


def test_transparent_pixels_become_white(tmp_path):
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "t.png")
    assert (read_image(tmp_path / "t.png") == 255).all()


def test_first_frame_of_gif_and_exif_rotation(tmp_path):
    frames = [Image.new("RGB", (20, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    out = read_image(tmp_path / "a.gif")
    assert out.shape == (10, 20, 3) and out[5, 5, 0] > 200 and out[5, 5, 2] < 50
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20)).save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (40, 20, 3)


def test_resize_and_bombs_refused_before_decoding(tmp_path):
    Image.new("L", (3000, 1000)).save(tmp_path / "big.png")
    assert read_image(tmp_path / "big.png", max_side=300).shape == (100, 300, 3)
    with pytest.raises(ImageError, match="big.png.*Mpixels"):
        read_image(tmp_path / "big.png", max_pixels=1_000_000)
    (tmp_path / "junk.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ImageError, match="junk.png"):
        read_image(tmp_path / "junk.png")
    assert from_array(np.zeros((10, 2000), np.uint8), max_side=200).shape == (1, 200, 3)


def test_label_maps_are_checked(tmp_path):
    Image.fromarray(np.full((10, 20), 7, np.uint8)).save(tmp_path / "ok.png")
    assert (read_label_map(tmp_path / "ok.png", (20, 40), 19) == 7).all()
    Image.fromarray(np.full((10, 20), 40, np.uint8)).save(tmp_path / "bad.png")
    with pytest.raises(ImageError, match="bad.png.*40"):
        read_label_map(tmp_path / "bad.png", (10, 20), 19)
    Image.new("RGB", (20, 10)).save(tmp_path / "rgb.png")
    with pytest.raises(ImageError, match="single-channel"):
        read_label_map(tmp_path / "rgb.png", (10, 20), 19)
    with pytest.raises(ImageError, match="does not match"):
        read_label_map(tmp_path / "ok.png", (20, 20), 19)


def test_refused_segment_leaves_the_latest_result_as_it_was(client, files, tmp_path):
    """A label map that does not fit the new image: error, and the client's latest result is
    still the earlier image with its ground truth (attention and export do not mix two images)."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    segment(client, files)
    other = tmp_path / "other.png"
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(other)
    with pytest.raises(AppError, match="does not match"):
        client.predict(handle_file(str(other)), handle_file(str(files["label"])), api_name="/segment")
    summary = client.predict(100, 80, api_name="/attention")[1]  # a point outside other.png
    assert "pixel (x=100, y=80)" in summary["text"]
    paths = {os.path.basename(p): p for p in client.predict(api_name="/export")}
    settings = json.loads(open(paths["settings.json"]).read())
    assert settings["image"] == "image.png" and settings["image_size_wh"] == [W, H]
    assert Image.open(paths["labels.png"]).size == (W, H)


@pytest.mark.parametrize(
    "method, sizes, message",
    [
        ("pyramid_average", "a,b", "^pyramid sizes must be integers separated by commas, got 'a,b'$"),
        ("pyramid_average", "1,3,6,40", "pyramid size 40 is finer than this image's 13x17 feature map"),
        ("random", "15", "random sampling with n = 15 needs 225 distinct positions; this image's 13x17"),
    ],
)
def test_sampling_refusals_are_plain_and_size_aware(client, files, method, sizes, message):
    from gradio_client.exceptions import AppError

    segment(client, files, label=False)
    with pytest.raises(AppError, match=message):
        client.predict(method, sizes, api_name="/set_sampling")


def test_typed_anchor_that_is_not_a_number(client, files):
    from gradio_client.exceptions import AppError

    segment(client, files, label=False)
    with pytest.raises(AppError, match="an anchor is a whole number 0..S-1, got 'abc'"):
        client.predict("abc", api_name="/anchor")


def test_model_card_reads_the_trainers_provenance_in_words(tmp_path):
    from app.models import model_card
    from app.session import ModelStore

    model = build_network(variant("apnb", backbone="resnet18", head_channels=32, key_channels=16,
                                  value_channels=16))  # fmt: skip
    provenance = {
        "data": {"dataset": "synthcity", "synthcity_seed": 0, "synthcity_size": [512, 1024],
                 "synthcity_train_images": 8000, "val_split": "val", "test_split": "test"},
        "metrics": {"miou": 0.70123}, "test_metrics": {"miou": 0.69},
        "iterations": 8000, "reproduce": "python -m ann.train ann-r18-synthcity --out runs/x",
    }  # fmt: skip
    save(model, tmp_path / "m.safetensors", CheckpointMeta(model.config, provenance=provenance))
    card = model_card(ModelStore(tmp_path), "m.safetensors")
    assert "- data: SynthCity city 0, 1024x512 images, the first 8000 train scenes, rendered once" in card
    assert "- val mIoU: **70.12**" in card and "- test mIoU: **69.00**" in card
    assert "- reproduce: `python -m ann.train ann-r18-synthcity --out runs/x`" in card
    assert "{" not in card  # no raw dicts


def test_a_click_on_the_enlarged_picture_names_the_image_pixel_under_it():
    from app.plots import click_scale, clickable, clicked_pixel

    assert click_scale((20, 20)) == 26 and click_scale((512, 1024)) == 1 and click_scale((96, 128)) == 4
    picture = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    big = clickable(picture)  # k = 18
    for X, Y in [(0, 0), (17, 17), (18, 35), (30 * 18 - 1, 20 * 18 - 1), (250, 101)]:
        x, y = clicked_pixel((X, Y), picture.shape[:2])
        assert (big[Y, X] == picture[y, x]).all() and 0 <= x < 30 and 0 <= y < 20


# ---- handlers called directly (the mutation audit: exact values, no client round trip) --------
# The tiny untrained network predicts "wall" (class 3) at every pixel of street_image and spreads
# its attention evenly; the 48x64 image has a 7x9 feature map (output stride 8, align_corners).


@pytest.fixture
def session(tiny_store, tmp_path):
    from app.tabs.segment import segment as run_segment

    image = np.asarray(Image.open(street_image(tmp_path / "street.png")))
    return run_segment(None, image, None, TINY_NAME, *VIEW, store=tiny_store, max_side=96)[0]


def test_the_segment_tabs_views_and_the_weights_chart(session):
    """What the browser shows beyond the API's outputs: the clickable picture enlarged (each pixel
    of the 64x48 image an 8x8 block), the maps at image size; the chart's 110 bars by level."""
    from app.tabs.attention import attention
    from app.tabs.segment import segment_views

    _, _, confidence, entropy, errors, table, _, clickable = segment_views(session, *VIEW)
    assert clickable.shape == (8 * 48, 8 * 64, 3) and confidence.shape == entropy.shape == (48, 64, 3)
    assert errors is None and table is None  # no label map
    bars, *legend = attention(session, 10, 20, "apnb")[2].data
    assert len(bars.hovertext) == 110 and "level" in bars.hovertext[0]
    assert [entry.name for entry in legend] == ["1x1", "3x3", "6x6", "8x8"]  # the level colours


def test_attention_summary_names_the_cell_the_uniform_entropy_and_the_strongest_anchor(session):
    from app.tabs.attention import attention

    _, _, _, summary, menu = attention(session, 40, 10, "apnb")
    weights, _ = session.explorer.attention_at(40, 10, "apnb")
    # align_corners: row round(10 * 6 / 47) = 1, col round(40 * 8 / 63) = 5
    assert "= feature cell (row 1, col 5) of 7x9. S = 110 anchors" in summary
    assert "(uniform: 4.700)" in summary  # log 110, not of another count
    top = int(np.argmax(weights))
    assert menu["value"] == top and session.selection["anchor"] == top
    assert f"Strongest: #{top} " in summary
    # the menu lists the anchors strongest first: a user picks from the top
    order = [index for _, index in menu["choices"]]
    assert sorted(order) == list(range(110)) and order[0] == top
    assert all(np.diff(weights[order]) <= 0)


def test_attention_block_is_a_key_or_label_first_recorded_when_empty_and_refused_when_absent(session):
    from app.tabs.attention import BLOCK_LABELS, block_choice, block_update
    from tests.conftest_app import tiny_config

    assert block_choice(session, "") == block_choice(session, None) == "afnb"  # recorded order
    assert block_choice(session, BLOCK_LABELS["apnb"]) == "apnb"
    with pytest.raises(gr.Error, match="No 'nb' attention in this model; it has afnb, apnb"):
        block_choice(session, "nb")
    # a new model's block menu starts on its context block (APNB), as the tab is built
    assert block_update(tiny_config())["value"] == "apnb"


def test_refresh_shows_the_last_pixel_through_the_chosen_block(session):
    """Switching the block radio redraws the same pixel in the other block, not the old one."""
    from app.tabs.attention import attention, refresh

    attention(session, 40, 10, "apnb")
    summary = refresh(session, "afnb")[3]
    assert summary.startswith("**AFNB**, pixel (x=40, y=10)") and session.selection["block"] == "afnb"


def test_anchor_view_outlines_that_anchor_and_reports_its_map(session):
    from app.tabs.attention import anchor

    _, picture, summary = anchor(session, 109, "apnb")  # 8x8 level, row 7, col 7
    amap = session.explorer.anchor_map(109, "apnb")
    assert f"min {amap.min():.4f}, mean {amap.mean():.4f}, max {amap.max():.4f}" in summary
    assert session.selection["anchor"] == 109  # remembered: exported as anchor.png
    # its bin: feature rows 6..7 of 7, cols 7..9 of 9 -> pixels y 41.1..48, x 49.8..64; white
    # 3 px outline from (x0, y0) = (49.8, 41.1), so pixel (50, 42) is on it, (10, 10) is not
    assert (picture[42, 50] == 255).all() and not (picture[10, 10] == 255).all()


def test_a_click_in_a_level_panel_picks_the_anchor_whose_bin_holds_it(session):
    """Panels are 400x300 (the 48x64 image), two columns 4 px apart under a 24 px strip, each
    with an 18 px caption: level 3 (8x8) starts at (404, 364). Click (794, 398) is feature point
    (x 390 * 9/400 = 8.78, y 34 * 7/300 = 0.79): column bin 7 (7..9), row bin 0 (0..1)."""
    from types import SimpleNamespace

    from app.tabs.attention import attention, pick_anchor

    attention(session, 40, 10, "apnb")
    picked, _, _, summary = pick_anchor(session, "apnb", SimpleNamespace(index=[794, 398]))
    assert picked["value"] == 1 + 9 + 36 + 0 * 8 + 7
    assert summary.startswith("**APNB** anchor #53 level 3 (8x8) row 0, col 7 (white box)")
    with pytest.raises(gr.Error, match="inside one of the level panels"):
        pick_anchor(session, "apnb", SimpleNamespace(index=[402, 100]))  # the gap between panels


def test_a_click_on_the_enlarged_image_shows_the_pixel_under_it(session):
    from types import SimpleNamespace

    from app.tabs.attention import pick_pixel

    # the 48x64 image is shown 8x enlarged (512 px wide): click (203, 87) is pixel (25, 10)
    x, y, _, _, _, summary, _ = pick_pixel(session, "apnb", SimpleNamespace(index=[203, 87]))
    assert (x, y) == (25, 10) and "pixel (x=25, y=10)" in summary


def test_cleared_views_match_the_outputs_they_are_wired_to():
    """The refreshers run after every new image or model (browser only): a count that does not
    match its outputs makes gradio drop the whole update."""
    from app.layout import refreshers
    from app.tabs.attention import anchor_view_cleared

    att = {k: k for k in ("panels", "chart", "summary", "anchor", "anchor_map", "anchor_summary", "x", "y")}
    smp = {k: k for k in ("changed", "area", "summary", "preset", "sizes", "method")}
    feat = {k: k for k in ("image", "first", "second", "status")}
    nb = {k: k for k in ("cosine", "changed", "table", "summary")}
    shared = {"attention": att, "sampling": smp, "features": feat, "nb": nb}
    (fn, _, outputs), (trained, _, trained_outputs) = refreshers("state", shared)
    assert len(fn(None)) == len(outputs) == 19
    assert len(trained(None)) == len(trained_outputs) == 4
    fn, _, outputs = anchor_view_cleared(att)
    assert len(fn()) == len(outputs) == 2


# ---- sampling ----------------------------------------------------------------------------------


def test_sizes_are_parsed_capped_at_64_and_single_level_methods_keep_the_largest():
    from app.tabs.sampling import parse_sizes, suggest_sizes

    assert parse_sizes("(1, 3,6,8)") == (1, 3, 6, 8) and parse_sizes("64") == (64,)
    with pytest.raises(gr.Error, match=r"pyramid size 65 is larger than this app allows \(64\)"):
        parse_sizes("1,65")
    with pytest.raises(gr.Error, match="at least one pyramid size"):
        parse_sizes(" , ")
    assert suggest_sizes("max", "1,3,6,8") == "8" and suggest_sizes("random", "6,2") == "6"
    assert suggest_sizes("pyramid_max", "1,3,6,8") == "1,3,6,8" and suggest_sizes("average", "x") == "x"


@pytest.mark.parametrize(
    "method, sizes, fits",
    [("pyramid_average", (1, 7), True), ("pyramid_average", (1, 8), False),  # up to the shorter side
     ("random", (7,), True), ("random", (8,), False)],  # n^2 = 64 of 7x9 = 63 positions: too many
)  # fmt: skip
def test_sampling_must_fit_the_feature_map(method, sizes, fits):
    from ann.models.sampling import SamplingConfig
    from app.tabs.sampling import check_fits

    config = SamplingConfig(method, sizes)
    if fits:
        check_fits(config, (7, 9))
    else:
        with pytest.raises(gr.Error, match="7x9 feature map"):
            check_fits(config, (7, 9))


def test_random_sampling_square_boundary():
    """n x n = H x W: every position is drawn once, which random sampling can do."""
    from ann.models.sampling import SamplingConfig
    from app.tabs.sampling import check_fits

    check_fits(SamplingConfig("random", (6,)), (6, 6))


def test_set_sampling_uses_the_seed(session):
    from app.tabs.sampling import set_sampling

    summary = set_sampling(session, "random", "4", 3, *VIEW)[5]
    assert session.explorer.sampling["context"].seed == 3 and "random (4,) (S = 16, seed 3)" in summary


def test_sampling_change_reports_changed_pixels_and_area_per_class(session, monkeypatch):
    """A new sampling that turns the left quarter from sky (10) into road (0), the rest staying
    wall (3): 25.00% changed; road +25 points, wall 0, sky -25 (gone, still charted); the
    changed pixels in yellow."""
    import dataclasses

    from app.plots import CHANGED
    from app.tabs.sampling import set_sampling

    labels = session.result.labels.copy()
    labels[:, :16] = 10
    session.explorer.result = dataclasses.replace(session.result, labels=labels)
    after = dataclasses.replace(session.result, labels=np.where(labels == 10, 0, labels).astype(np.uint8))

    def set_new_sampling(config):
        session.explorer.result = after
        return after

    monkeypatch.setattr(session.explorer, "set_sampling", set_new_sampling)
    _, _, _, changed, chart, summary, _ = set_sampling(session, "pyramid_max", "1,2,3,6", 0, *VIEW)
    assert "**25.00%** of pixels changed class" in summary
    bars = chart.data[0]
    assert list(bars.x) == ["road", "wall", "sky"] and np.allclose(bars.y, [25.0, 0.0, -25.0])
    assert (changed[:, :16] == CHANGED).all() and not (changed[:, 16:] == CHANGED).all(-1).any()


def test_controls_show_a_training_sampling_that_is_no_preset(tmp_path):
    from ann.analysis.explore import Explorer
    from ann.models.sampling import SamplingConfig
    from app.session import Session
    from app.tabs.sampling import trained_controls

    torch.manual_seed(0)
    sampling = SamplingConfig("pyramid_max", (1, 2, 4))
    model = build_network(variant("apnb", backbone="resnet18", num_classes=19, head_channels=16,
                                  key_channels=8, value_channels=8, sampling=sampling))  # fmt: skip
    preset, sizes, method, summary = trained_controls(Session("m", Explorer(model)))
    assert (preset, sizes, method) == (None, "1,2,4", "pyramid_max")  # no preset radio lit
    assert summary == "Training sampling: APNB pyramid_max (1, 2, 4) (S = 21)."


def test_controls_leave_the_method_menu_for_an_identity_training_sampling():
    """An APNB trained with "identity" sampling (every position, as NB): the method menu offers
    only Table 7's methods, so it is left as it is rather than set to a value it cannot show."""
    from ann.analysis.explore import Explorer
    from ann.models.sampling import SamplingConfig
    from app.session import Session
    from app.tabs.sampling import trained_controls

    torch.manual_seed(0)
    model = build_network(variant("apnb", backbone="resnet18", num_classes=19, head_channels=16,
                                  key_channels=8, value_channels=8,
                                  sampling=SamplingConfig("identity")))  # fmt: skip
    assert trained_controls(Session("m", Explorer(model)))[2] == gr.skip()


# ---- segment -----------------------------------------------------------------------------------


def test_iou_accuracy_and_miou_in_percent_over_valid_pixels(tiny_store, tmp_path):
    """All pixels are predicted wall (3). Truth: rows 0-9 ignored (255), rows 10-29 wall, rows
    30-47 road (0). Valid 38 x 64 = 2432 px: wall IoU 1280 / 2432 = 52.6%, road 0%, mean 26.3%;
    pixel accuracy 52.6%. A second image without a label map is not scored against this truth."""
    from app.tabs.segment import segment as run_segment

    label = np.full((48, 64), 3, np.uint8)
    label[:10], label[30:] = 255, 0
    Image.fromarray(label).save(tmp_path / "label.png")
    image = street_image(tmp_path / "street.png")
    session, *views = run_segment(None, str(image), str(tmp_path / "label.png"), TINY_NAME, *VIEW,
                                  store=tiny_store, max_side=96)  # fmt: skip
    table, summary = views[5], views[6]
    assert table.to_dict("list") == {"class": ["road", "wall"], "IoU %": [0.0, 52.6]}
    assert "mIoU over present classes **26.3**, pixel accuracy **52.6** (%)." in summary
    assert summary.startswith("street.png: 64x48 px on **tiny.safetensors**")  # no untrained banner
    session, *views = run_segment(session, str(street_image(tmp_path / "b.png", seed=1)), None, TINY_NAME,
                                  *VIEW, store=tiny_store, max_side=96)  # fmt: skip
    assert session.target is None and views[4] is None and views[5] is None and "mIoU" not in views[6]


def test_confidence_and_entropy_maps_use_fixed_ranges(session):
    """Confidence on 0..1 (cividis) and entropy on 0..log K nats (magma): the same colour means
    the same value on every image. Half of log 19 nats and confidence 0.5 are mid-colour."""
    import dataclasses

    from app.plots import lut
    from app.tabs.segment import segment_views

    result = session.result
    session.explorer.result = dataclasses.replace(
        result, confidence=np.full(result.size, 0.5, np.float32),
        entropy=np.full(result.size, np.log(19) / 2, np.float32),
    )  # fmt: skip
    _, _, confidence, entropy, *_ = segment_views(session, *VIEW)
    assert (confidence == lut("cividis")[127]).all() and (entropy == lut("magma")[127]).all()


def test_overlay_blends_by_opacity_and_leaves_hidden_classes_out(session):
    from ann.data.labels import CITYSCAPES_PALETTE
    from app.plots import render

    image = session.image.astype(np.float32)
    picture, legend = render(session, 0.25, False, [])
    assert np.array_equal(picture, (0.75 * image + 0.25 * np.array(CITYSCAPES_PALETTE[3])).round())
    # one legend row: classes with no pixels are left out
    assert legend.count('class="legend-row"') == 1 and "wall <b>100.0%</b>" in legend
    picture, legend = render(session, 0.25, False, ["wall"])
    assert np.array_equal(picture, session.image) and 'style="opacity:0.35;"' in legend


def test_a_model_switch_segments_the_same_image_again_with_no_classes_hidden(tiny_store, session, tmp_path):
    from app.models import choose_model
    from app.tabs.segment import resegment

    name = tiny_store.add_file(tiny_store.path(TINY_NAME))  # the same file as "(uploaded)"
    _, _, hidden, _, size = choose_model(session, name, store=tiny_store)
    assert size.endswith("at most **1024 px** (the model's card records no training size).")
    assert hidden["value"] == []  # the old model's hidden class names mean nothing now
    switched, *views = resegment(session, None, None, name, *VIEW, store=tiny_store, max_side=96)
    assert switched.checkpoint == name and switched.image is session.image and len(views) == 8
    assert len(resegment(None, None, None, name, *VIEW, store=tiny_store, max_side=96)) == 1 + 8


def test_a_refused_upload_names_the_file_not_the_servers_folder(tiny_store, tmp_path):
    from app.models import upload_checkpoint

    folder = tmp_path / "gradio-upload-cache"
    folder.mkdir()
    (folder / "broken.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(gr.Error) as error:
        upload_checkpoint(None, str(folder / "broken.safetensors"), store=tiny_store)
    assert "broken.safetensors" in str(error.value) and str(folder) not in str(error.value)


def test_a_checkpoints_own_card_comes_before_a_run_folders_card(tmp_path):
    from app.models import model_card
    from app.session import ModelStore

    (tmp_path / "m.md").write_text("own card")
    (tmp_path / "model_card.md").write_text("folder card")
    torch.manual_seed(0)
    model = build_network(variant("apnb", backbone="resnet18", num_classes=19, head_channels=16,
                                  key_channels=8, value_channels=8))  # fmt: skip
    save(model, tmp_path / "m.safetensors", CheckpointMeta(model.config))
    card = model_card(ModelStore(tmp_path), "m.safetensors")
    assert "own card" in card and "folder card" not in card


def test_card_images_over_the_size_limit_stay_links(tmp_path):
    from app.models import inline_images

    Image.new("RGB", (4, 3)).save(tmp_path / "curve.png")
    size = (tmp_path / "curve.png").stat().st_size
    assert inline_images("![c](curve.png)", tmp_path, limit=size - 1) == "![c](curve.png)"
    assert "data:image/png" in inline_images("![c](curve.png)", tmp_path, limit=size)


# ---- export ------------------------------------------------------------------------------------


def test_export_holds_the_views_on_screen_and_the_selection(session):
    """panels.png and anchor.png are the pictures the Attention tab shows; settings.json and
    attention.npz record the click as (x, y) and no layout of the page."""
    from app.tabs.attention import anchor, attention
    from app.tabs.export import export
    from app.tabs.segment import segment_views

    _, panels, _, _, _ = attention(session, 40, 10, "apnb")
    _, anchor_picture, _ = anchor(session, 109, "apnb")
    confidence = segment_views(session, *VIEW)[2]
    paths = {os.path.basename(p): p for p in export(session, 0.5, False, ["road"])}
    assert np.array_equal(np.asarray(Image.open(paths["panels.png"])), panels)
    assert np.array_equal(np.asarray(Image.open(paths["anchor.png"])), anchor_picture)
    assert np.array_equal(np.asarray(Image.open(paths["confidence.png"])), confidence)
    settings = json.loads(open(paths["settings.json"]).read())
    assert settings["selection"] == {"x": 40.0, "y": 10.0, "block": "apnb", "anchor": 109}
    assert settings["view"] == {"opacity": 0.5, "outline": False, "hidden_classes": ["road"]}
    assert np.load(paths["attention.npz"])["selected_xy"].tolist() == [40.0, 10.0]


# ---- plots -------------------------------------------------------------------------------------


def test_heatmap_colorize_and_error_picture_values():
    from app.plots import WRONG, colorize, error_picture, heatmap, lut

    out = heatmap(np.array([[np.nan, 0.0, 1.0]]), "viridis", 0.0, 1.0)
    assert out[0, 0].tolist() == [128, 128, 128]  # NaN: mid grey, no colour of a value
    assert (out[0, 1] == lut("viridis")[0]).all() and (out[0, 2] == lut("viridis")[255]).all()
    colours = colorize(np.array([[0, 1, 255]]), [[1, 2, 3], [4, 5, 6]])
    assert colours.tolist() == [[[1, 2, 3], [4, 5, 6], [0, 0, 0]]]  # ignore (255): black
    errors = error_picture(np.full((1, 3, 3), 100, np.uint8), np.array([[0, 1, 2]], np.uint8))
    assert errors.tolist() == [[[45, 45, 45], WRONG.tolist(), [0, 0, 0]]]  # correct dimmed, ignore black


def test_outline_mode_draws_two_pixel_class_borders_at_full_colour():
    """Classes 0 | 1 meet between columns 3 and 4: a 2 px border each side (columns 2-5) in the
    class colour whatever the opacity; the rest stays the image."""
    from app.plots import overlay

    labels = np.zeros((4, 8), np.uint8)
    labels[:, 4:] = 1
    image = np.full((4, 8, 3), 100, np.uint8)
    palette = [[200, 0, 0], [0, 0, 200]]
    out = overlay(image, labels, palette, opacity=0.3, outline=True)
    assert (out[:, 2:4] == [200, 0, 0]).all() and (out[:, 4:6] == [0, 0, 200]).all()
    assert (out[:, [0, 1, 6, 7]] == 100).all()


def test_level_panels_mark_the_point_and_stretch_each_level():
    """One 1x1 anchor holding 0.9 and a 2x2 level of 0.025 each: the 2x2 level is stretched to
    the top colour (its own maximum), the cyan ring sits at the point (x=8, y=4) of the 40x80
    image, 5x enlarged in a 200x400 panel that starts 42 px down (24 px strip, 18 px caption)."""
    import torch as t

    from ann.models.sampling import AnchorGeometry
    from app.plots import blend, level_panels, lut

    geometry = AnchorGeometry(t.tensor([0, 1, 1, 1, 1]), t.tensor([[0, 0, 2, 2], [0, 0, 1, 1], [0, 1, 1, 2],
                              [1, 0, 2, 1], [1, 1, 2, 2]]), (1, 2), (2, 2))  # fmt: skip
    weights = np.array([0.9, 0.025, 0.025, 0.025, 0.025], np.float32)
    image = np.full((40, 80, 3), 100, np.uint8)
    picture, layout = level_panels(image, weights, geometry, (8, 4))
    assert layout[1] == {"level": 1, "x0": 404, "y0": 42, "w": 400, "h": 200}
    top = blend(np.array([100, 100, 100]), lut("magma")[255], 0.75)
    assert (picture[42 + 150, 404 + 100] == top).all()
    assert (picture[42 + 19, 45] == [0, 255, 255]).all()  # on the ring of radius 5 around (40, 20)
