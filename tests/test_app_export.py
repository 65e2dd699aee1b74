"""The Export tab's vector and interactive files (app/export.py): the attention panels, the sorted
weights chart and the class-context matrix as SVG (matplotlib) and as standalone HTML (plotly), read
back with exact expectations: the SVG's panels, bars and text labels, the HTML's plotted numbers."""

import base64
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from ann.analysis.panels import level_pictures
from ann.data.labels import CITYSCAPES_CLASSES
from tests import conftest_app
from tests.conftest_app import TINY_NAME, street_image

tiny_store = conftest_app.tiny_store
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def exported(tiny_store, tmp_path_factory):
    """(session, files by name): the street image, pixel (40, 10) clicked on APNB, the class context
    of the image shown, then exported."""
    from app.tabs import class_context
    from app.tabs.attention import attention
    from app.tabs.export import export
    from app.tabs.segment import segment

    image = str(street_image(tmp_path_factory.mktemp("images") / "street.png"))
    session = segment(None, image, None, TINY_NAME, 0.5, False, [], store=tiny_store, max_side=96)[0]
    attention(session, 40, 10, "apnb")
    class_context.show(session, TINY_NAME, "image", "test", 1, "", "", store=tiny_store, max_side=96,
                       progress=None)  # fmt: skip
    return session, {os.path.basename(p): p for p in export(session, 0.5, False, [])}


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def plotted(path: str) -> list[dict]:
    """The traces of the plotly figure in a standalone HTML file, as plotly.js receives them."""
    html = open(path, encoding="utf-8").read()
    assert "<script src=" not in html  # plotly.js is inside: the file opens without a network
    decoder = json.JSONDecoder()
    start = html.index("Plotly.newPlot(") + len("Plotly.newPlot(")
    _, end = decoder.raw_decode(html, html.index('"', start))  # the div's id
    return decoder.raw_decode(html, html.index("[", end))[0]


def values(encoded) -> np.ndarray:
    """A plotly array: a list, or a typed array {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(encoded, dict):
        array = np.frombuffer(base64.b64decode(encoded["bdata"]), dtype=encoded["dtype"])
        shape = [int(n) for n in str(encoded.get("shape", len(array))).split(",")]
        return array.reshape(shape)
    return np.asarray(encoded, dtype=float)


def test_every_view_is_exported_in_each_format(exported):
    _, files = exported
    assert {"panels.png", "panels.svg", "chart.svg", "chart.html", "context.svg", "context.html"} <= set(
        files
    )


def test_the_panels_svg_holds_one_picture_per_level_under_its_caption(exported):
    session, files = exported
    weights, geometry = session.explorer.attention_at(40, 10, "apnb")
    pictures = level_pictures(session.image, weights, geometry, (40.0, 10.0))
    root = ET.parse(files["panels.svg"]).getroot()
    panels = [image.get("id") for image in root.iter(f"{SVG}image")]
    assert panels == ["level-0", "level-1", "level-2", "level-3"]  # sizes 1, 3, 6, 8: one picture each
    assert texts(root) == [caption for _, caption, _ in pictures]


def test_the_chart_svg_has_a_bar_per_anchor_and_the_html_the_sorted_weights(exported):
    session, files = exported
    weights, geometry = session.explorer.attention_at(40, 10, "apnb")
    root = ET.parse(files["chart.svg"]).getroot()
    bars = [g.get("id") for g in root.iter(f"{SVG}g") if g.get("id", "").startswith("anchor-")]
    assert sorted(bars) == sorted(f"anchor-{i}" for i in range(110))  # S = 1 + 9 + 36 + 64, each once
    assert bars == [f"anchor-{i}" for i in np.argsort(-weights)]  # drawn by rank
    assert any(t.startswith("110 anchor weights, sorted") for t in texts(root))
    assert ["1x1", "3x3", "6x6", "8x8"] == [t for t in texts(root) if "x" in t and len(t) == 3]
    bar, *legend = plotted(files["chart.html"])
    np.testing.assert_array_equal(values(bar["y"]), weights[np.argsort(-weights)])
    assert [trace["name"] for trace in legend] == ["1x1", "3x3", "6x6", "8x8"]


def test_the_context_svg_labels_every_class_and_the_html_holds_the_matrix(exported):
    session, files = exported
    root = ET.parse(files["context.svg"]).getroot()
    labels = texts(root)
    assert all(labels.count(name) == 2 for name in CITYSCAPES_CLASSES)  # a row and a column each
    assert "APNB: % of attention mass (1 images)" in labels
    (heat,) = plotted(files["context.html"])
    np.testing.assert_array_equal(values(heat["z"]), session.context.matrix)  # NaN rows: absent classes
    assert heat["x"] == heat["y"] == list(CITYSCAPES_CLASSES)


def test_no_context_shown_no_context_files(tiny_store, tmp_path):
    from app.tabs.export import export
    from app.tabs.segment import segment

    session = segment(None, str(street_image(tmp_path / "s.png")), None, TINY_NAME, 0.5, False, [],
                      store=tiny_store, max_side=96)[0]  # fmt: skip
    names = {os.path.basename(p) for p in export(session, 0.5, False, [])}
    assert not names & {"context.svg", "context.html", "panels.svg", "chart.svg", "chart.html"}  # no click


def test_exports_past_the_kept_number_are_removed(exported, monkeypatch):
    from app import files
    from app.tabs import export

    session = exported[0]
    monkeypatch.setattr(export, "KEPT_EXPORTS", 2)
    folders = [Path(export.export(session, 0.5, False, [])[0]).parent for _ in range(3)]
    assert folders[0].parent == files.app_folder()
    assert [folder.exists() for folder in folders] == [False, True, True]
    assert (folders[-1] / "overlay.png").is_file()
