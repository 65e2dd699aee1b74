"""The Class context tab (app/tabs/class_context.py) and its /class_context endpoint: the handlers
on the tiny checkpoint with exact expectations (the library's numbers, ann.analysis.context), the
endpoint through gradio_client against the launched app."""

import numpy as np
import pytest
from PIL import Image

from ann.analysis.context import class_context
from ann.data.labels import CITYSCAPES_CLASSES
from ann.data.synthcity import render
from app.errors import UserError
from app.tabs import Recent, split_size
from app.tabs import class_context as tab
from tests import conftest_app
from tests.conftest_app import TINY_NAME, street_image

attentive_store = conftest_app.attentive_store
analysis_client = conftest_app.analysis_client
SIDE = 96  # --max-side of these tests: SynthCity at 96x48, a 7x13 feature map


@pytest.fixture
def fresh(monkeypatch):
    """An empty cache of split results: a test sees its own computation."""
    monkeypatch.setattr(tab, "RESULTS", Recent())


def show(store, data="synthcity", count=2, labels="", block="", session=None):
    return tab.show(session, TINY_NAME, data, "test", count, labels, block, store=store, max_side=SIDE,
                    progress=None)  # fmt: skip


def expected(store, count=2, labels="gt"):
    pairs = [render(0, "test", i, size=(SIDE, SIDE // 2)) for i in range(count)]
    return class_context(store.model(TINY_NAME), pairs, labels=labels)


def test_the_heat_map_and_table_are_the_librarys_numbers(attentive_store, fresh):
    model = attentive_store.model(TINY_NAME)
    assert split_size(model.meta, SIDE) == (48, 96)  # 2:1 at the processing size: no training size recorded
    figure, table, text = show(attentive_store)
    want = expected(attentive_store)["apnb"]
    heat = figure.data[0]
    np.testing.assert_array_equal(np.asarray(heat.z, dtype=float), want.matrix)  # NaN rows: absent classes
    assert list(heat.x) == list(heat.y) == list(CITYSCAPES_CLASSES)
    assert np.asarray(heat.customdata)[:, 0, 0].tolist() == want.pixels.tolist()  # hover: query pixels
    present = [k for k, name in enumerate(CITYSCAPES_CLASSES) if name not in want.absent]
    assert table["class"].tolist() == [CITYSCAPES_CLASSES[k] for k in present]
    assert table["pixels"].tolist() == want.pixels[present].tolist()
    assert table["own class %"].tolist() == [round(100 * want.own_share[k], 1) for k in present]
    assert table["effective anchors"].tolist() == [round(want.effective_anchors[k], 1) for k in present]
    assert table["entropy (nats)"].tolist() == [round(want.entropy[k], 3) for k in present]
    labelled = sum(int((render(0, "test", i, size=(SIDE, SIDE // 2))[1] != 255).sum()) for i in range(2))
    assert want.pixels.sum() == labelled  # every labelled pixel is a query, once
    assert "**APNB** over the first 2 SynthCity test images, 96x48 px, ground-truth labels" in text
    assert "log S = 4.700 nats, S = 110 effective anchors" in text
    assert f"No pixels (no row): {', '.join(want.absent)}." in text


def test_a_second_view_is_kept_and_other_data_is_computed(attentive_store, fresh, monkeypatch):
    show(attentive_store)

    def computed(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(tab, "class_context", computed)
    figure, _, text = show(attentive_store, block="fusion")  # the other block of the same images
    np.testing.assert_array_equal(
        np.asarray(figure.data[0].z, dtype=float), expected(attentive_store)["afnb"].matrix
    )
    assert text.startswith("**AFNB**")
    with pytest.raises(AssertionError, match="computed again"):
        show(attentive_store, count=3)
    with pytest.raises(AssertionError, match="computed again"):
        show(attentive_store, labels="prediction")


@pytest.fixture
def session(attentive_store, tmp_path):
    """The street image segmented with a label map: road on the top half, car below, 255 on the
    left quarter."""
    from app.tabs.segment import segment

    label = np.zeros((48, 64), np.uint8)
    label[24:], label[:, :16] = 13, 255
    Image.fromarray(label).save(tmp_path / "label.png")
    image = str(street_image(tmp_path / "street.png"))
    return segment(None, image, str(tmp_path / "label.png"), TINY_NAME, 0.5, False, [],
                   store=attentive_store, max_side=SIDE)[0]  # fmt: skip


def test_the_current_image_uses_its_recorded_attention_and_label_map(attentive_store, session):
    _, table, text = show(attentive_store, data="image", session=session)
    want = class_context(session.explorer.model, [(session.image, session.target)])["apnb"]
    assert table["class"].tolist() == ["road", "car"] and table["pixels"].tolist() == [24 * 48, 24 * 48]
    assert table["own class %"].tolist() == [round(100 * want.own_share[k], 1) for k in (0, 13)]
    assert "the current image (street.png), 64x48 px, ground-truth labels" in text
    assert "Computed in" not in text  # nothing was run
    session.target = None  # no label map: the prediction is the default, ground truth refused
    assert "predicted labels" in show(attentive_store, data="image", session=session)[2]
    with pytest.raises(UserError, match="The current image has no label map"):
        show(attentive_store, data="image", labels="gt", session=session)


def test_data_labels_and_blocks_are_checked(attentive_store, session):
    with pytest.raises(UserError, match="unknown data 'folder'; valid: synthcity, image"):
        show(attentive_store, data="folder")
    with pytest.raises(UserError, match="unknown label source 'truth'"):
        show(attentive_store, labels="truth")
    with pytest.raises(UserError, match=r"count must be 1\.\.500 \(SynthCity test images\), got 501"):
        show(attentive_store, count=501)
    with pytest.raises(UserError, match=r"no attention block 'nb' in this model; it has fusion \(afnb\)"):
        show(attentive_store, data="image", session=session, block="nb")
    with pytest.raises(UserError, match="SynthCity's ground truth is in Cityscapes classes"):
        tab.label_source("gt", ["cat", "dog"], "synthcity", None)
    assert tab.label_source("", ["cat", "dog"], "synthcity", None) == "prediction"


def test_the_endpoint_needs_no_input_and_its_rows_sum_to_one(analysis_client):
    client, _ = analysis_client
    context = client.predict(api_name="/class_context")  # the default model, 20 SynthCity test images
    assert context["images"] == 20 and context["block"] == "apnb" and context["blocks"] == ["afnb", "apnb"]
    assert (
        context["labels"] == "gt"
        and context["size"] == [48, 96]
        and context["classes"] == list(CITYSCAPES_CLASSES)
    )
    rows = {name: row for name, row in zip(context["classes"], context["matrix"], strict=True)}
    assert {name for name, row in rows.items() if row is None} == set(context["absent"])
    for row in (row for row in rows.values() if row is not None):
        assert sum(row) == pytest.approx(1, abs=1e-9) and min(row) >= 0
    assert sum(context["pixels"]) == 20 * 48 * 96 - sum(  # every labelled pixel once (255 left out)
        int((render(0, "test", i, size=(96, 48))[1] == 255).sum()) for i in range(20)
    )
    assert context["uniform"]["effective_anchors"] == pytest.approx(110)
    fusion = client.predict(block="fusion", api_name="/class_context")  # kept: no second run
    assert fusion["block"] == "afnb" and fusion["seconds"] == context["seconds"]


def test_the_endpoint_on_a_segmented_image(analysis_client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client, _ = analysis_client
    _, summary = client.predict(handle_file(str(street_image(tmp_path / "s.png"))), api_name="/segment")
    context = client.predict(data="image", block="afnb", api_name="/class_context")
    assert context["block"] == "afnb" and context["labels"] == "prediction" and context["images"] == 1
    assert sum(context["pixels"]) == 48 * 64 and context["image"] == "s.png"
    with pytest.raises(AppError, match="leave checkpoint empty"):
        client.predict(checkpoint="other", data="image", api_name="/class_context")
    assert (
        client.predict(data="image", handle=summary["handle"], api_name="/class_context")["block"] == "apnb"
    )
