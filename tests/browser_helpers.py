"""Helpers for the browser tests (tests/test_browser.py): Debian's Chromium driven by Playwright,
images read back from the page, screenshots of each step.

Playwright's own browser downloads are never used: the tests run the system Chromium
(`apt-get install chromium`, done by scripts/test.sh) through `executable_path`.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
# headless, and nothing that reaches outside the loopback app (updates, sync, QUIC probes)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts" / "browser"
VIEWPORT = {"width": 1280, "height": 1000}


def launch(playwright, profile_dir: Path):
    """A Chromium context on a fresh user-data dir (no state from earlier runs)."""
    return playwright.chromium.launch_persistent_context(
        str(profile_dir),
        executable_path=str(CHROMIUM),
        args=CHROMIUM_ARGS,
        headless=True,
        viewport=VIEWPORT,
        timeout=60_000,
    )


def screenshot(page, name: str) -> Path:
    """The whole page as tests/artifacts/browser/<name>.png (git-ignored), to look at by eye."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, timeout=30_000)
    return path


def image_src(page, selector: str) -> str | None:
    """The src of the first <img> under `selector`, or None while there is none."""
    images = page.locator(f"{selector} img")
    if images.count() == 0:
        return None
    return images.first.get_attribute("src", timeout=5_000)


def wait_for_src(page, selector: str, other_than: str | None = None, timeout_s: float = 30) -> str:
    """Wait until the image under `selector` has loaded a src different from `other_than`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        src = image_src(page, selector)
        if src and src != other_than and loaded(page, selector):
            return src
        page.wait_for_timeout(200)
    raise AssertionError(f"no new image under {selector} within {timeout_s:.0f} s (still {other_than!r})")


def loaded(page, selector: str) -> bool:
    """True once the browser has decoded the image (naturalWidth > 0)."""
    return bool(
        page.locator(f"{selector} img").first.evaluate(
            "img => img.complete && img.naturalWidth > 0", timeout=5_000
        )
    )


def read_image(page, src: str) -> np.ndarray:
    """The image the page shows at `src`, fetched through the page's own session, as RGB."""
    if src.startswith("data:"):
        raise AssertionError("expected a served file, got a data URL")
    response = page.request.get(src, timeout=30_000)
    assert response.ok, f"GET {src} -> {response.status}"
    return np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))


def wait_for_text(page, selector: str, needle: str, timeout_s: float = 30) -> str:
    """Wait until the text of `selector` contains `needle`; that text."""
    locator = page.locator(selector)
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = locator.inner_text(timeout=5_000) if locator.count() else ""
        if needle in text:
            return text
        page.wait_for_timeout(200)
    raise AssertionError(f"{selector} never contained {needle!r} within {timeout_s:.0f} s; text: {text!r}")


def click_at(page, selector: str, fx: float, fy: float) -> None:
    """Click the <img> under `selector` at a fraction (fx, fy) of its displayed width and height."""
    image = page.locator(f"{selector} img").first
    image.scroll_into_view_if_needed(timeout=10_000)
    box = image.bounding_box(timeout=10_000)
    assert box is not None, f"{selector} img is not displayed"
    image.click(position={"x": fx * box["width"], "y": fy * box["height"]}, timeout=10_000)
