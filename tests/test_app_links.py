"""Links to a view (app/links.py): the page's query names checkpoint, image, pixel, block and
sampling; opening it restores that view, with exact expectations (the restored session's model,
image and attention are a fresh Explorer's); an image the server no longer keeps is said so."""

from urllib.parse import parse_qsl

import numpy as np
import pytest

from ann.images import read_image
from ann.models.sampling import SamplingConfig
from app import links
from app.errors import UserError
from tests import conftest_app
from tests.conftest_app import TINY_NAME, street_image

tiny_store = conftest_app.tiny_store
SIDE = 96  # --max-side: the 1024x512 examples at 96x48


def opened(store, link: str):
    """The session a copied link restores (the query string as the page's request carries it)."""
    return links.restore(dict(parse_qsl(link.removeprefix("?"))), store, SIDE)


def test_an_example_link_restores_the_model_image_and_the_pixels_attention(tiny_store):
    query = "?checkpoint=tiny.safetensors&example=synthcity_000004&x=30&y=20&block=apnb"
    session = opened(tiny_store, query)
    assert (
        session.checkpoint == TINY_NAME
        and session.explorer.meta.sha256 == tiny_store.model(TINY_NAME).meta.sha256
    )
    image_path, label_path = links.example_files()["synthcity_000004"]
    assert label_path is not None and session.target is not None  # the example's ground truth too
    fresh = tiny_store.get(TINY_NAME)
    fresh.run(read_image(image_path, SIDE))
    np.testing.assert_array_equal(session.image, fresh.result.image)
    weights, geometry = session.explorer.attention_at(30, 20, "apnb")
    want, want_geometry = fresh.attention_at(30, 20, "apnb")
    np.testing.assert_array_equal(weights, want)
    assert len(weights) == 110 and geometry.sizes == want_geometry.sizes == (1, 3, 6, 8)
    assert (
        session.selection["x"] == 30 and session.selection["y"] == 20 and session.selection["block"] == "apnb"
    )
    assert links.link(session) == query  # the restored view's link is the one opened


def test_an_uploaded_image_and_a_sampling_go_through_the_link(tiny_store, tmp_path, monkeypatch):
    from app.tabs.attention import attention
    from app.tabs.sampling import set_sampling
    from app.tabs.segment import segment

    monkeypatch.setattr(links, "KEPT", links.KeptImages())
    upload = street_image(tmp_path / "street.png")
    session = segment(None, str(upload), None, TINY_NAME, 0.5, False, [], store=tiny_store, max_side=SIDE)[0]
    set_sampling(session, "pyramid_max", "1,2,4", 0, 0.5, False, [])
    attention(session, 12, 40, "afnb")
    query = links.link(session)
    sha = links.file_sha256(upload)
    assert (
        query == f"?checkpoint=tiny.safetensors&image={sha}&x=12&y=40&block=afnb&sampling=pyramid_max:1,2,4"
    )
    upload.unlink()  # the server's own copy serves the link
    restored = opened(tiny_store, query)
    assert restored.image_name == "street.png"
    np.testing.assert_array_equal(restored.image, session.image)
    assert set(restored.explorer.sampling.values()) == {SamplingConfig("pyramid_max", (1, 2, 4))}
    for block in ("afnb", "apnb"):
        np.testing.assert_array_equal(
            restored.explorer.attention_at(12, 40, block)[0], session.explorer.attention_at(12, 40, block)[0]
        )
    assert links.link(restored) == query


def test_an_image_no_longer_kept_is_said_so(tiny_store, tmp_path, monkeypatch):
    monkeypatch.setattr(links, "KEPT", links.KeptImages(limit=1))
    first = links.KEPT.keep(street_image(tmp_path / "a.png", seed=1))
    second = links.KEPT.keep(street_image(tmp_path / "b.png", seed=2))
    assert links.KEPT.get(first) is None and links.KEPT.get(second).name == "b.png"
    with pytest.raises(UserError) as refused:
        opened(tiny_store, f"?checkpoint=tiny.safetensors&image={first}&x=1&y=1")
    assert refused.value.message == "This link's image is no longer on this server; upload it again."


def test_a_plain_visit_restores_nothing_and_bad_links_are_named(tiny_store):
    assert opened(tiny_store, "") is None and opened(tiny_store, "?x=3&y=4") is None
    with pytest.raises(UserError, match="checkpoint 'gone.safetensors' is not on this server"):
        opened(tiny_store, "?checkpoint=gone.safetensors&example=synthcity_000004")
    with pytest.raises(UserError, match="example 'nowhere' is not on this server"):
        opened(tiny_store, "?example=nowhere")
    with pytest.raises(UserError, match=r"pixel \(x=500, y=4\) lies outside the 96x48 image"):
        opened(tiny_store, "?example=synthcity_000004&x=500&y=4")
    with pytest.raises(UserError, match="x must be a number, got 'left'"):
        opened(tiny_store, "?example=synthcity_000004&x=left&y=4")


def test_opening_the_page_with_a_link_fills_its_listeners_outputs(tiny_store):
    """The page's load listener: every value it returns is one of its outputs, the restored session
    goes into the browser's state, and a plain visit changes nothing."""
    from types import SimpleNamespace

    from gradio.blocks import convert_component_dict_to_list

    from app.layout import build_demo

    demo = build_demo(tiny_store, TINY_NAME, max_side=SIDE)
    (load,) = [fn for fn in demo.fns.values() if fn.name == "opened"]
    query = {"checkpoint": TINY_NAME, "example": "synthcity_000004", "x": "30", "y": "20", "block": "afnb"}
    values = load.fn(None, SimpleNamespace(query_params=query))
    convert_component_dict_to_list(load.outputs, values)  # raises for a stray one
    state, tabs, link = load.outputs[:3]
    assert values[state].selection["block"] == "afnb" and values[state].checkpoint == TINY_NAME
    assert values[tabs].selected == "attention"
    assert values[link] == "?checkpoint=tiny.safetensors&example=synthcity_000004&x=30&y=20&block=afnb"
    plain = load.fn(None, SimpleNamespace(query_params={}))
    assert set(plain) == set(load.outputs) and all(
        value == {"__type__": "update"} for value in plain.values()
    )
