"""The two-minute tour of docs/tour.md, in a real browser (Debian's Chromium) on the app as a
newcomer starts it: `python app.py`, the shipped full ANN of checkpoints/, its training scale.
Each step asserts what the tour says a user sees, and leaves its screenshot in
tests/artifacts/tour/ (git-ignored), or in $ANN_TOUR_OUT: docs/tour.md's pictures are made by
`ANN_TOUR_OUT=docs/images/tour python -m pytest tests/test_tour.py`."""

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import browser_helpers as bh
from tests.conftest_app import launch

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not bh.CHROMIUM.exists(), reason=f"{bh.CHROMIUM} missing (apt-get install chromium)"),
]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "app/examples/synthcity"
IMAGE = EXAMPLES / "leftImg8bit/test/synthcity/synthcity_000004_leftImg8bit.png"
LABELS = EXAMPLES / "gtFine/test/synthcity/synthcity_000004_gtFine_labelTrainIds.png"
BUILDING = 2  # trainId: a large region, so the click lands well inside it
OUT = Path(os.environ.get("ANN_TOUR_OUT") or Path(__file__).parent / "artifacts" / "tour")
TIMEOUT_S = 90  # the first segmentation loads the model on a CPU that a training run may share


def shot(page, name: str, top: str | None = None) -> None:
    """The visible page as a JPEG (the tour's pictures stay small in the repository), scrolled so
    that `top` starts at the top of the window."""
    OUT.mkdir(parents=True, exist_ok=True)
    if top:
        page.locator(top).first.evaluate("element => element.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
    page.screenshot(path=str(OUT / f"{name}.jpg"), type="jpeg", quality=80, timeout=30_000)


def building_pixel() -> tuple[float, float]:
    """A building pixel 12 px or more inside the building, as fractions of the image's size."""
    labels = np.asarray(Image.open(LABELS))
    H, W = labels.shape
    ys, xs = np.nonzero(labels == BUILDING)
    inside = np.ones(len(ys), bool)
    for dy, dx in ((-12, 0), (12, 0), (0, -12), (0, 12)):
        inside &= labels[np.clip(ys + dy, 0, H - 1), np.clip(xs + dx, 0, W - 1)] == BUILDING
    middle = len(ys[inside]) // 2
    return xs[inside][middle] / W, ys[inside][middle] / H


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from app.layout import build_demo
    from app.session import ModelStore

    sync_api = pytest.importorskip("playwright.sync_api")
    demo = build_demo(ModelStore(ROOT / "checkpoints"))  # what `python app.py` builds
    demo.queue(default_concurrency_limit=1)
    _, url = launch(demo)
    with sync_api.sync_playwright() as playwright:
        context = bh.launch(playwright, tmp_path_factory.mktemp("chromium-profile"))
        try:
            context.set_default_timeout(TIMEOUT_S * 1000)
            page = context.new_page()
            page.set_viewport_size({"width": 1280, "height": 1300})  # a tab and its pictures in one view
            page.goto(url, timeout=60_000)
            page.wait_for_selector("#input-image [data-testid=image]", timeout=60_000)
            yield page
        finally:
            context.close()
            demo.close()


def show_tab(page, key: str) -> None:
    page.locator(f"#tab-{key}-button").click()
    page.locator(f"#tab-{key}").wait_for(state="visible")


def test_1_the_app_opens_on_the_cpu_trained_full_ann(page):
    assert page.locator("#checkpoint input").input_value() == "ann-r18-os16-synthcity-512x256.safetensors"
    size = page.locator("#processing-size").inner_text()
    assert "512" in size and "trained" in size, size
    shot(page, "1-opened")


def test_2_segmenting_the_example_with_its_labels_scores_it(page):
    page.locator("#input-image input[type=file]").set_input_files(str(IMAGE))
    bh.wait_for_src(page, "#input-image", timeout_s=TIMEOUT_S)
    page.locator("#label-file input[type=file]").set_input_files(str(LABELS))
    page.locator("#segment-button").click()
    bh.wait_for_src(page, "#overlay", timeout_s=TIMEOUT_S)
    summary = bh.wait_for_text(page, "#segment-summary", "mIoU", TIMEOUT_S)
    accuracy = float(re.search(r"pixel accuracy \*?\*?([\d.]+)", summary)[1])
    assert accuracy > 85, summary  # this model: 95.5 on this image; an untrained one about 5
    shot(page, "2-segmented", top="#tabs")


def test_3_a_building_pixel_attends_to_fewer_anchors_than_uniform(page):
    show_tab(page, "attention")
    bh.wait_for_src(page, "#attention-image", timeout_s=TIMEOUT_S)
    bh.click_at(page, "#attention-image", *building_pixel())
    summary = bh.wait_for_text(page, "#attention-summary", "effective number of anchors", TIMEOUT_S)
    effective = float(re.search(r"exp\(entropy\) = \*?\*?([\d.]+)", summary)[1])
    # uniform attention (an untrained network): 110.0 of 110; this model's building pixels: about 59
    assert effective < 90, summary
    bh.wait_for_src(page, "#attention-panels", timeout_s=TIMEOUT_S)
    shot(page, "3-attention", top="#tabs")


def test_4_switching_to_max_pooling_over_a_smaller_pyramid(page):
    show_tab(page, "sampling")
    page.locator("#sampling-preset").get_by_text("1,2,3,6", exact=True).click()
    sizes = page.locator("#sampling-sizes textarea, #sampling-sizes input").first
    deadline = time.monotonic() + TIMEOUT_S
    while sizes.input_value() != "1,2,3,6" and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    page.locator("#sampling-method input").fill("pyramid_max")
    page.keyboard.press("Enter")
    page.locator("#sampling-apply").click()
    summary = bh.wait_for_text(page, "#sampling-summary", "S = 50", TIMEOUT_S)
    assert "max" in summary
    shot(page, "4-sampling", top="#tabs")
    page.locator("#sampling-reset").click()
    bh.wait_for_text(page, "#sampling-summary", "S = 110", TIMEOUT_S)


def test_5_stage_features(page):
    show_tab(page, "features")
    tab = page.locator("#tab-features")
    tab.get_by_role("button", name="Show feature maps").click()
    thumbnails = tab.locator(".thumbnail-item img")
    loaded = "images => images.filter(i => i.complete && i.naturalWidth > 0).length"
    deadline = time.monotonic() + TIMEOUT_S
    while thumbnails.evaluate_all(loaded) < 7 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert thumbnails.evaluate_all(loaded) >= 7  # Stage1..5, AFNB, APNB
    shot(page, "5-features", top="#tabs")


def test_6_class_context_over_twenty_test_images(page):
    show_tab(page, "context")
    page.locator("#context-button").click()
    summary = bh.wait_for_text(page, "#context-summary", "20 SynthCity test images", TIMEOUT_S)
    assert "512x256 px" in summary  # the model's training scale
    page.locator("#context-heatmap .hm image").first.wait_for(state="attached")  # plotly's heat map
    table = bh.wait_for_text(page, "#context-table", "sidewalk", TIMEOUT_S)
    assert "effective anchors" in table
    shot(page, "6-class-context", top="#tabs")


def test_7_apnb_against_nb_on_the_same_weights(page):
    show_tab(page, "nb")
    page.locator("#nb-button").click()
    summary = bh.wait_for_text(page, "#nb-summary", "Class changed at", TIMEOUT_S)
    share = float(re.search(r"Class changed at \*?\*?\d+\*?\*? of \d+ pixels \(([\d.]+)%\)", summary)[1])
    assert share < 5, summary  # the trained pyramid stays close to NB: 0.77 % over 100 test images
    maps = page.locator("#nb-cosine .thumbnail-item img")
    loaded = "images => images.filter(i => i.complete && i.naturalWidth > 0).length"
    deadline = time.monotonic() + TIMEOUT_S
    while maps.evaluate_all(loaded) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert maps.evaluate_all(loaded) == 2  # one cosine map per block
    shot(page, "7-apnb-vs-nb", top="#tabs")
