"""End to end in a real browser (Debian's Chromium via Playwright): upload a SynthCity image, see
the segmentation, click pixels and see the attention panels change, switch the pyramid sizes,
open the stage features. Screenshots of each step go to tests/artifacts/browser/ (git-ignored).

Run with `python -m pytest -m browser tests/test_browser.py` (scripts/test.sh runs them too).
The app is the real app.layout.build_demo on the tiny untrained network of tests/conftest_app.py
(BatchNorm statistics measured on the example, so its attention depends on the pixel), launched
on a free loopback port in a server thread of this process and closed at the end.
"""

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

from ann.checkpoint import CheckpointMeta, save
from ann.images import read_image as decode_upload
from ann.inference import preprocess
from ann.models import build_network
from tests import browser_helpers as bh
from tests.conftest_app import TINY_NAME, launch, tiny_config

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not bh.CHROMIUM.exists(), reason=f"{bh.CHROMIUM} missing (apt-get install chromium)"),
]

EXAMPLE = (
    Path(__file__).parents[1]
    / "app/examples/synthcity/leftImg8bit/test/synthcity/synthcity_000004_leftImg8bit.png"
)
MAX_SIDE = 256  # the 1024x512 example is processed at 256x128: fast on a shared CPU
SEGMENT_TIMEOUT_S = 90  # first segmentation: model load, first forward pass, busy CPU
STEP_TIMEOUT_S = 45


def calibrated_model(image: np.ndarray):
    """The tiny untrained network of tests/conftest_app.py with BatchNorm statistics measured on
    `image`. A fresh network's features shrink stage after stage, which makes every pixel's
    attention uniform (entropy = log S) and the panels identical wherever one clicks; with
    measured statistics the features have unit scale and the attention depends on the pixel."""
    torch.manual_seed(0)
    model = build_network(tiny_config())
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one batch gives its exact statistics
    model.train()
    with torch.no_grad():
        model(preprocess(image, CheckpointMeta(model.config).normalization))
    return model.eval()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from app.session import ModelStore

    folder = tmp_path_factory.mktemp("browser-checkpoints")
    model = calibrated_model(decode_upload(EXAMPLE, MAX_SIDE))
    note = {"note": "browser test: untrained, BatchNorm statistics of one example image"}
    save(model, folder / TINY_NAME, CheckpointMeta(model.config, provenance=note))
    # a model card beside it, with its training curve as the trainer's cards have
    Image.new("RGB", (120, 60), (200, 40, 40)).save(folder / "tiny_curve.png")
    (folder / TINY_NAME).with_suffix(".md").write_text("# tiny\n\n![training curve](tiny_curve.png)\n")
    return ModelStore(folder)


@pytest.fixture(scope="module")
def app_url(store):
    from app.layout import build_demo

    demo = build_demo(store, TINY_NAME, max_side=MAX_SIDE)
    demo.queue(default_concurrency_limit=1)
    _, url = launch(demo)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(app_url, tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        context = bh.launch(playwright, tmp_path_factory.mktemp("chromium-profile"))
        try:
            context.set_default_timeout(STEP_TIMEOUT_S * 1000)
            page = context.new_page()
            errors = []  # uncaught JavaScript errors: a component the frontend cannot render
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(app_url, timeout=60_000)
            try:
                page.wait_for_selector("#input-image [data-testid=image]", timeout=60_000)
            except sync_api.TimeoutError:
                bh.screenshot(page, "00-not-rendered")
                raise AssertionError(f"the image input never rendered; JavaScript errors: {errors}") from None
            yield page
        finally:
            context.close()


@pytest.fixture(scope="module")
def segmented(page):
    """The page after uploading the example through the file input and pressing Segment."""
    bh.screenshot(page, "01-opened")
    page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLE))
    bh.wait_for_src(page, "#input-image", timeout_s=STEP_TIMEOUT_S)  # the upload's preview
    page.locator("#segment-button").click()
    src = bh.wait_for_src(page, "#overlay", timeout_s=SEGMENT_TIMEOUT_S)
    bh.wait_for_text(page, "#segment-summary", EXAMPLE.name, STEP_TIMEOUT_S)
    bh.screenshot(page, "02-segmented")
    return src


def show_tab(page, key: str) -> None:
    page.locator(f"#tab-{key}-button").click()
    page.locator(f"#tab-{key}").wait_for(state="visible")


def block_means(image: np.ndarray, k: int = 4) -> np.ndarray:
    """Means over k x k blocks: what survives the lossy formats (JPEG, WebP) the app may serve."""
    H, W = image.shape[0] // k * k, image.shape[1] // k * k
    return image[:H, :W].reshape(H // k, k, W // k, k, 3).astype(np.float32).mean((1, 3))


def test_upload_shows_the_segmentation_of_that_image(page, segmented, store):
    shown = bh.read_image(page, segmented)
    image = decode_upload(EXAMPLE, MAX_SIDE)
    assert shown.shape == image.shape == (128, 256, 3)
    # the expected picture, computed here: class colours blended at the default opacity (0.55)
    labels = store.get(TINY_NAME).run(image).labels  # (H, W)
    palette = np.asarray(store.model(TINY_NAME).meta.palette, np.float32)  # (K, 3)
    expected = 0.45 * image + 0.55 * palette[labels]
    error = np.abs(block_means(shown) - block_means(expected)).mean()
    # the plain image, or one class everywhere, is off by > 20 grey levels on average
    assert error < 8, f"the page's overlay is not this image's segmentation (error {error:.1f})"
    summary = page.locator("#segment-summary").inner_text()
    assert f"{EXAMPLE.name}: 256x128 px on {TINY_NAME}" in summary
    assert page.locator("#legend").inner_text().strip()  # the classes present, with their shares


def click_pixel(page, fx: float, fy: float, expect: str = "") -> tuple[str, str]:
    """Click the attention image at (fx, fy) of its width and height; wait until the summary names
    that pixel (and contains `expect`). The panels' src and the summary."""
    bh.click_at(page, "#attention-image", fx, fy)
    x, y = fx * 256, fy * 128
    deadline = time.monotonic() + STEP_TIMEOUT_S
    summary = ""
    while time.monotonic() < deadline:
        summary = page.locator("#attention-summary").inner_text()
        match = re.search(r"pixel \(x=(\d+), y=(\d+)\)", summary)
        # the click lands where it was aimed, within a screen pixel (the image is shown scaled)
        if match and abs(int(match[1]) - x) <= 3 and abs(int(match[2]) - y) <= 3 and expect in summary:
            return bh.wait_for_src(page, "#attention-panels", timeout_s=STEP_TIMEOUT_S), summary
        page.wait_for_timeout(200)
    raise AssertionError(f"clicked ({x:.0f}, {y:.0f}), expecting {expect!r}; the summary says {summary!r}")


def chart_bars(page) -> list[str]:
    """The plotly bar paths of the sorted-weights chart: they change when the weights change."""
    bars = page.locator("#attention-chart .bars path")
    bars.first.wait_for(state="attached")
    return [d for d in bars.evaluate_all("paths => paths.map(p => p.getAttribute('d'))") if d]


def test_clicking_pixels_changes_the_attention_panels(page, segmented):
    show_tab(page, "attention")
    bh.wait_for_src(page, "#attention-image", timeout_s=STEP_TIMEOUT_S)
    first_src, first_summary = click_pixel(page, 0.1, 0.2)
    first_panels, first_bars = bh.read_image(page, first_src), chart_bars(page)
    assert first_panels.shape[0] > 100 and first_panels.shape[1] > 200  # 4 levels, 2 per row
    assert len(first_bars) == 110  # S = 1 + 9 + 36 + 64 anchors of the trained (1,3,6,8) pyramid
    bh.screenshot(page, "03-attention-first-pixel")

    second_src, second_summary = click_pixel(page, 0.9, 0.8)
    second_panels, second_bars = bh.read_image(page, second_src), chart_bars(page)
    bh.screenshot(page, "04-attention-second-pixel")
    assert second_summary != first_summary
    assert second_panels.shape == first_panels.shape
    # the anchor colours changed, not only the marker (moving it alone changes the mean by < 1)
    assert np.abs(second_panels.astype(int) - first_panels).mean() > 5
    assert second_bars != first_bars


def test_switching_the_block_shows_the_same_pixel_through_it(page, segmented):
    show_tab(page, "attention")
    bh.wait_for_src(page, "#attention-image", timeout_s=STEP_TIMEOUT_S)
    _, before = click_pixel(page, 0.3, 0.6, expect="APNB")
    pixel = re.search(r"pixel \(x=\d+, y=\d+\)", before)[0]
    page.locator("#attention-block").get_by_text("AFNB", exact=False).click()  # no new click
    after = bh.wait_for_text(page, "#attention-summary", "AFNB", STEP_TIMEOUT_S)
    assert pixel in after
    page.locator("#attention-block").get_by_text("APNB", exact=False).click()
    assert pixel in bh.wait_for_text(page, "#attention-summary", "APNB", STEP_TIMEOUT_S)


def test_pyramid_preset_changes_the_number_of_anchors(page, segmented):
    show_tab(page, "attention")
    bh.wait_for_src(page, "#attention-image", timeout_s=STEP_TIMEOUT_S)
    click_pixel(page, 0.5, 0.5, expect="S = 110 anchors")  # the trained (1,3,6,8) pyramid
    page.locator("#anchor-button").click()  # the reverse view of the strongest anchor
    bh.wait_for_text(page, "#anchor-summary", "anchor", STEP_TIMEOUT_S)

    show_tab(page, "sampling")
    page.locator("#sampling-preset").get_by_text("1,2,3,6", exact=True).click()
    sizes = page.locator("#sampling-sizes textarea, #sampling-sizes input").first
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while sizes.input_value() != "1,2,3,6" and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert sizes.input_value() == "1,2,3,6"  # the preset fills the sizes box
    page.locator("#sampling-apply").click()
    summary = bh.wait_for_text(page, "#sampling-summary", "S = 50", STEP_TIMEOUT_S)
    assert "(1, 2, 3, 6)" in summary
    bh.screenshot(page, "05-sampling-1236")

    show_tab(page, "attention")
    deadline = time.monotonic() + STEP_TIMEOUT_S  # that anchor is gone with the old pyramid
    while page.locator("#anchor-summary").inner_text().strip() and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert not page.locator("#anchor-summary").inner_text().strip()
    click_pixel(page, 0.5, 0.5, expect="S = 50 anchors")  # 1 + 4 + 9 + 36
    assert len(chart_bars(page)) == 50
    bh.screenshot(page, "06-attention-S50")


def test_stage_features_gallery_shows_the_maps(page, segmented):
    show_tab(page, "features")
    tab = page.locator("#tab-features")
    tab.get_by_role("button", name="Show feature maps").click()
    # the tab's galleries have no elem_id: its thumbnails, model A's only (model B stays empty)
    thumbnails = tab.locator(".thumbnail-item img")
    loaded = "images => images.filter(i => i.complete && i.naturalWidth > 0).length"
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while thumbnails.evaluate_all(loaded) < 7 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    bh.screenshot(page, "07-stage-features")
    # Stage1..Stage5 and the AFNB and APNB outputs of the tiny full model, in that order
    captions = thumbnails.evaluate_all("images => images.map(i => i.alt.split(' ')[0])")
    assert captions == ["stage1", "stage2", "stage3", "stage4", "stage5", "afnb", "apnb"]
    for src in thumbnails.evaluate_all("images => images.map(i => i.src)"):
        picture = bh.read_image(page, src)
        assert picture.shape[:2] == (160, 320)  # the image's aspect, longer side 320
        assert picture.std() > 1, f"{src} is a blank map"


def test_opening_explain_shows_the_segmented_image(page, segmented):
    show_tab(page, "explain")  # no button press: the tab fills itself when opened
    src = bh.wait_for_src(page, "#explain-image", timeout_s=STEP_TIMEOUT_S)
    assert bh.read_image(page, src).shape[:2] == (128, 256)


def test_the_page_says_at_what_size_images_are_processed_and_why(page):
    text = page.locator("#processing-size").inner_text()
    assert text == f"Images are processed with their longer side at most {MAX_SIDE} px (set by --max-side)."


def test_model_card_shows_its_training_curve(page):
    page.locator("#model-card-accordion").get_by_text("Model card").first.click()
    curve = page.locator("#model-card img[alt='training curve']")
    curve.wait_for(state="visible")
    assert curve.evaluate("image => image.complete && image.naturalWidth") == 120
    bh.screenshot(page, "08-model-card")


def test_refused_segmentation_leaves_the_attention_image_clickable(page, segmented, tmp_path):
    """A label map that does not fit: the error shows on the Segment tab only; the Attention tab
    keeps the last good image, free of an error overlay, and answers clicks on it."""
    bad = tmp_path / "tiny_label.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(bad)
    show_tab(page, "segment")
    page.locator("#label-file input[type=file]").set_input_files(str(bad))
    page.locator("#segment-button").click()
    page.locator(".toast-body", has_text="does not match").first.wait_for(timeout=STEP_TIMEOUT_S * 1000)
    bh.screenshot(page, "09-refused-label-map")
    show_tab(page, "attention")
    assert "error" not in page.locator("#attention-image").inner_html().lower()
    click_pixel(page, 0.7, 0.3)  # the click reaches the image and names that pixel
    show_tab(page, "segment")  # a new image drops the label map, which belongs to the old one
    assert "tiny_label" in page.locator("#label-file").inner_text()
    page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLE))
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while "tiny_label" in page.locator("#label-file").inner_text() and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert "tiny_label" not in page.locator("#label-file").inner_text()


def test_a_new_image_replaces_the_stage_features_views(page, segmented, tmp_path):
    """The stage features' clickable image and galleries belong to one image: segmenting another
    shows the new one there (a click names a pixel of the image that is analysed) and empties the
    galleries of the old one."""
    show_tab(page, "features")
    tab = page.locator("#tab-features")
    tab.get_by_role("button", name="Show feature maps").click()
    old = bh.wait_for_src(page, "#features-image", timeout_s=STEP_TIMEOUT_S)
    assert tab.locator(".thumbnail-item img").count() > 0
    other = tmp_path / "other.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 96, 3), np.uint8)).save(other)
    show_tab(page, "segment")
    before = bh.image_src(page, "#overlay")
    page.locator("#input-image input[type=file]").set_input_files(str(other))
    bh.wait_for_src(page, "#input-image", other_than=None, timeout_s=STEP_TIMEOUT_S)
    page.locator("#segment-button").click()
    bh.wait_for_src(page, "#overlay", other_than=before, timeout_s=STEP_TIMEOUT_S)
    show_tab(page, "features")
    src = bh.wait_for_src(page, "#features-image", other_than=old, timeout_s=STEP_TIMEOUT_S)
    bh.screenshot(page, "10-features-after-new-image")
    assert bh.read_image(page, src).shape[:2] == (48, 96)
    assert tab.locator(".thumbnail-item img").count() == 0


def test_class_context_heat_map_and_the_apnb_vs_nb_cosine_maps(page, segmented):
    """The Class context tab draws its plotly heat map over the default 20 SynthCity images; the APNB
    vs NB tab shows one cosine map per block (viridis) of the segmented image."""
    show_tab(page, "context")
    page.locator("#context-button").click()
    summary = bh.wait_for_text(page, "#context-summary", "20 SynthCity test images", SEGMENT_TIMEOUT_S)
    assert summary.startswith("APNB over the first 20 SynthCity test images, 256x128 px, ground-truth labels")
    page.locator("#context-heatmap .hm image").first.wait_for(state="attached")  # plotly's heat map
    table = bh.wait_for_text(page, "#context-table", "sidewalk", STEP_TIMEOUT_S)  # a row per class
    assert "effective anchors" in table and "own class %" in table
    bh.screenshot(page, "11-class-context")

    show_tab(page, "nb")
    page.locator("#nb-button").click()
    bh.wait_for_text(page, "#nb-summary", "Cosine of the context vectors", STEP_TIMEOUT_S)
    maps = page.locator("#nb-cosine .thumbnail-item img")
    deadline = time.monotonic() + STEP_TIMEOUT_S
    loaded = "images => images.filter(i => i.complete && i.naturalWidth > 0).length"
    while maps.evaluate_all(loaded) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    bh.screenshot(page, "12-apnb-vs-nb")
    captions = maps.evaluate_all("images => images.map(i => i.alt.split(':')[0])")
    assert captions == ["cos(AFNB, FNB)", "cos(APNB, NB)"]
    viridis = (colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).round()
    segmented_hw = bh.read_image(page, bh.image_src(page, "#overlay")).shape[:2]  # the session's image
    for src in maps.evaluate_all("images => images.map(i => i.src)"):
        picture = bh.read_image(page, src)
        assert picture.shape[:2] == segmented_hw  # at image size
        colours = np.unique(picture.reshape(-1, 3), axis=0)
        assert (
            np.abs(colours[:, None] - viridis[None]).sum(-1).min(1).max() <= 3
        )  # every pixel a cosine colour


def test_a_link_reopens_its_view_and_the_address_follows_the_next_click(page, app_url, store):
    """Issue 19 item 3: a link with an example, a pixel and a block opens on that pixel's attention
    panels; a click elsewhere rewrites the address (and the link box) to the new pixel."""
    from app.plots import level_panels

    query = "?checkpoint=tiny.safetensors&example=synthcity_000004&x=100&y=60&block=apnb"
    opened = page.context.new_page()  # the module's page keeps its own session
    try:
        opened.goto(app_url.rstrip("/") + "/" + query, timeout=60_000)
        summary = bh.wait_for_text(opened, "#attention-summary", "pixel (x=100, y=60)", SEGMENT_TIMEOUT_S)
        assert summary.startswith("APNB")
        shown = bh.read_image(opened, bh.wait_for_src(opened, "#attention-panels", timeout_s=STEP_TIMEOUT_S))
        explorer = store.get(TINY_NAME)
        image = explorer.run(decode_upload(EXAMPLE, MAX_SIDE)).image
        expected = level_panels(image, *explorer.attention_at(100, 60, "apnb"), (100.0, 60.0))[0]
        assert shown.shape == expected.shape
        assert np.abs(block_means(shown) - block_means(expected)).mean() < 4  # JPEG's loss only
        bh.screenshot(opened, "20-opened-link")

        _, summary = click_pixel(opened, 0.25, 0.75)
        x, y = re.search(r"pixel \(x=(\d+), y=(\d+)\)", summary).groups()
        want = f"?checkpoint=tiny.safetensors&example=synthcity_000004&x={x}&y={y}&block=apnb"
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not opened.url.endswith(want) and time.monotonic() < deadline:
            opened.wait_for_timeout(200)
        assert opened.url == app_url.rstrip("/") + "/" + want
        assert opened.locator("#view-link textarea").input_value() == want
        bh.screenshot(opened, "21-link-after-a-click")
    finally:
        opened.close()
