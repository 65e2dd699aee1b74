"""The app's named endpoints through gradio_client, against a launched app on a free loopback port
with a tiny checkpoint; and the decoding of untrusted uploads (ann/images.py)."""

import json
import os
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from ann.checkpoint import CheckpointMeta, file_sha256, save
from ann.images import ImageError, from_array, read_image, read_label_map
from ann.models import build_network, variant

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
H, W = 96, 128


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    port = free_port()
    demo.queue().launch(**launch_options("127.0.0.1", port), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.test_url = f"http://127.0.0.1:{port}"
        client.test_analytics = demo.analytics_enabled
        client.test_demo = demo
        yield client
    finally:
        demo.close()


VIEW = (0.5, False, [])


def segment(client, files, label=True):
    from gradio_client import handle_file

    label_file = handle_file(str(files["label"])) if label else None
    return client.predict(handle_file(str(files["image"])), label_file, "tiny.safetensors", *VIEW,
                          api_name="/segment")  # fmt: skip


def test_endpoints_are_named(client):
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/segment", "/attention", "/anchor", "/set_sampling", "/reset_sampling", "/export"} <= names
    assert {"/choose_model", "/upload_checkpoint"} <= names


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
    overlay, legend, confidence, entropy, errors, iou, summary, clickable = segment(client, files)
    assert np.asarray(Image.open(overlay)).shape == (H, W, 3)
    assert Image.open(clickable).size == (4 * W, 4 * H)  # 128 px enlarged to 512 to be clickable
    assert Image.open(confidence).size == (W, H) and Image.open(errors).size == (W, H)
    assert "%" in legend and "tiny.safetensors" in summary and "mIoU" in summary
    assert iou["headers"] == ["class", "IoU %"] and len(iou["data"]) > 0


def test_attention_anchor_and_bad_points(client, files):
    from gradio_client.exceptions import AppError

    segment(client, files, label=False)
    panels, chart, summary, anchor = client.predict(10, 20, "apnb", api_name="/attention")
    assert Image.open(panels).size[0] > 0
    bars, *legend = json.loads(chart["plot"])["data"]
    assert len(bars["hovertext"]) == 110 and "level" in bars["hovertext"][0]
    assert [entry["name"] for entry in legend] == ["1x1", "3x3", "6x6", "8x8"]  # the level colours
    assert "S = 110" in summary and "exp(entropy)" in summary
    anchor = anchor["value"]  # a dropdown update: the strongest anchor, choices sorted by weight
    picture, text = client.predict(anchor, "apnb", api_name="/anchor")
    assert Image.open(picture).size == (W, H) and f"#{anchor} " in text
    afnb = client.predict(10, 20, "afnb", api_name="/attention")
    assert "AFNB" in afnb[2]
    with pytest.raises(AppError, match="outside"):
        client.predict(W, 5, "apnb", api_name="/attention")


def test_sampling_switch_and_reset(client, files):
    segment(client, files, label=False)
    *_, changed, area, summary, _ = client.predict(
        "pyramid_max", "1,2,3,6", 0, *VIEW, api_name="/set_sampling"
    )
    assert "S = 50" in summary and "Differs from the training" in summary and "GMACs" in summary
    assert Image.open(changed).size == (W, H)
    assert "S = 50" in client.predict(5, 5, "apnb", api_name="/attention")[2]
    *_, summary, _ = client.predict(*VIEW, api_name="/reset_sampling")
    assert "Same as the training configuration" in summary
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="one size"):
        client.predict("random", "1,2", 0, *VIEW, api_name="/set_sampling")


def test_export(client, files):
    segment(client, files, label=False)
    client.predict(30, 40, "apnb", api_name="/attention")
    client.predict("pyramid_average", "1,4,8,12", 0, *VIEW, api_name="/set_sampling")
    paths = {os.path.basename(p): p for p in client.predict(*VIEW, api_name="/export")}
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
    """An anchor typed and shown, then a sampling with fewer anchors: the export holds what
    exists (no anchor.png of an anchor that is gone), instead of failing."""
    segment(client, files, label=False)
    client.predict(*VIEW, api_name="/reset_sampling")
    client.predict(100, "apnb", api_name="/anchor")  # S = 110; no pixel clicked
    client.predict("pyramid_average", "1,2", 0, *VIEW, api_name="/set_sampling")  # S = 5
    try:
        paths = {os.path.basename(p): p for p in client.predict(*VIEW, api_name="/export")}
    finally:
        client.predict(*VIEW, api_name="/reset_sampling")
    assert "anchor.png" not in paths
    settings = json.loads(open(paths["settings.json"]).read())
    assert settings["sampling"]["context"]["sizes"] == [1, 2] and "anchor" not in settings["selection"]


def test_model_card_and_bad_upload(client, files, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    card, classes, blocks = client.predict("tiny.safetensors", api_name="/choose_model")
    assert "Tiny test model" in card and "sha256" in card
    assert [key for _, key in blocks["choices"]] == ["apnb", "afnb"]
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(AppError, match="broken.safetensors"):
        client.predict(handle_file(str(bad)), api_name="/upload_checkpoint")


def test_sessions_are_isolated(client, files):
    """A second browser tab (client) keeps its own image, sampling and attention."""
    from gradio_client import Client

    other = Client(client.test_url + "/", verbose=False)
    segment(client, files, label=False)
    client.predict("pyramid_max", "1,2,3,6", 0, *VIEW, api_name="/set_sampling")
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(files["folder"] / "small.png")
    from gradio_client import handle_file

    *_, summary, _ = other.predict(handle_file(str(files["folder"] / "small.png")), None, "tiny.safetensors",
                                   *VIEW, api_name="/segment")  # fmt: skip
    assert "60x40" in summary
    assert "S = 110" in other.predict(5, 5, "apnb", api_name="/attention")[2]
    assert "S = 50" in client.predict(100, 80, "apnb", api_name="/attention")[2]  # 100 > 60: first image


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


def test_refused_segment_leaves_the_session_as_it_was(client, files, tmp_path):
    """A label map that does not fit the new image: error, and the earlier image, result and
    ground truth stay together (attention and export do not mix two images)."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    segment(client, files)
    other = tmp_path / "other.png"
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(other)
    with pytest.raises(AppError, match="does not match"):
        client.predict(handle_file(str(other)), handle_file(str(files["label"])), "tiny.safetensors", *VIEW,
                       api_name="/segment")  # fmt: skip
    summary = client.predict(100, 80, "apnb", api_name="/attention")[2]  # outside other.png
    assert "pixel (x=100, y=80)" in summary
    paths = {os.path.basename(p): p for p in client.predict(*VIEW, api_name="/export")}
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
        client.predict(method, sizes, 0, *VIEW, api_name="/set_sampling")


def test_typed_anchor_that_is_not_a_number(client, files):
    from gradio_client.exceptions import AppError

    segment(client, files, label=False)
    client.predict(10, 20, "apnb", api_name="/attention")
    with pytest.raises(AppError, match="an anchor is a whole number 0..S-1, got 'abc'"):
        client.predict("abc", "apnb", api_name="/anchor")


def test_model_card_reads_the_trainers_provenance_in_words(tmp_path):
    from app.segment import model_card
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
