"""The APNB vs NB tab (app/tabs/nb_compare.py) and its /nb_compare and /nb_compare_split endpoints:
the handlers on the tiny checkpoint with random attention weights, against the library's numbers
(ann.analysis.nb_compare); the endpoints through gradio_client against the launched app."""

import numpy as np
import pytest
from PIL import Image

from ann.analysis.nb_compare import compare_image, compare_split
from ann.data.synthcity import render
from ann.models.sampling import TABLE7
from app import plots
from app.errors import UserError
from app.tabs import Recent
from app.tabs import nb_compare as tab
from tests import conftest_app
from tests.conftest_app import TINY_NAME, street_image

attentive_store = conftest_app.attentive_store
analysis_client = conftest_app.analysis_client
SIDE = 96  # --max-side of these tests: the 64x48 street image as it is, SynthCity at 96x48
TIMES = ("head_time_ms", "timed_on")  # measured: they differ between two runs


@pytest.fixture
def session(attentive_store, tmp_path):
    """The street image (a 7x9 feature map) segmented with a label map: road above, car below."""
    from app.tabs.segment import segment

    label = np.zeros((48, 64), np.uint8)
    label[24:] = 13
    Image.fromarray(label).save(tmp_path / "label.png")
    image = str(street_image(tmp_path / "street.png"))
    return segment(None, image, str(tmp_path / "label.png"), TINY_NAME, 0.5, False, [],
                   store=attentive_store, max_side=SIDE)[0]  # fmt: skip


def without_times(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if key not in TIMES}


def test_the_tab_shows_the_librarys_comparison_of_the_image(session):
    sampling, result = dict(session.explorer.sampling), session.result
    gallery, changed, table, text = tab.image_views(session)
    want = compare_image(session.explorer, label=session.target, repeats=1)
    assert session.explorer.sampling == sampling and session.result is result  # the session is as it was
    for (picture, caption), (kind, block) in zip(gallery, want.blocks.items(), strict=True):
        assert np.array_equal(picture, tab.cosine_picture(block.cosine_image)[0])
        assert caption.startswith(
            f"cos({kind.upper()}, {tab.NB_OF[kind].upper()}): mean {block.cosine.mean():.4f}"
        )
    assert np.array_equal(
        changed, plots.changed_picture(session.image, want.labels["sampled"], want.labels["nb"])
    )
    assert want.changed.any() and not want.changed.all()  # random attention weights: some pixels change
    assert table["fusion S"].tolist() == table["context S"].tolist() == [110, 7 * 9]  # NB: S = N
    assert table["context GMACs"].tolist() == [
        round(want.blocks["apnb"].gmacs[s], 4) for s in ("sampled", "nb")
    ]
    assert table["mIoU %"].tolist() == [round(100 * want.miou[s], 2) for s in ("sampled", "nb")]
    assert f"Class changed at **{int(want.changed.sum())}** of 3072 pixels" in text
    assert f"change **{100 * want.miou_change:+.2f}** points (NB - sampled)" in text


def test_nb_costs_n_times_n_minus_s_more_multiply_accumulates(session):
    """Sec. 3.2: with C^ = C_v = 32, NB's attention costs N (N - S) (C^ + C_v) more than APNB's."""
    comparison = tab.compare(session)
    N, S = 7 * 9, 110
    gmacs = comparison.blocks["apnb"].gmacs
    assert gmacs["nb"] - gmacs["sampled"] == pytest.approx(N * (N - S) * 64 / 1e9)


def test_the_sampled_side_is_the_trained_one_or_a_table7_method_that_fits(session):
    assert tab.sampled_side(session, "", "", 0) is None
    config = tab.sampled_side(session, "pyramid_max", "1,2,3,6", 0)
    assert (config.method, config.sizes) == ("pyramid_max", (1, 2, 3, 6))
    with pytest.raises(UserError, match="pyramid size 8 is finer than this image's 7x9 feature map"):
        tab.sampled_side(session, "pyramid_max", "", 0)  # no sizes: the trained (1, 3, 6, 8)
    comparison = tab.compare(session, "pyramid_max", "1,2,3,6")
    assert comparison.blocks["apnb"].sampling == config
    with pytest.raises(UserError, match="random sampling with n = 8 needs 64 distinct positions"):
        tab.sampled_side(session, "random", "8", 0)
    with pytest.raises(UserError, match="unknown sampling method 'identity'"):
        tab.sampled_side(session, "identity", "", 0)
    with pytest.raises(UserError, match="sizes go with a method"):
        tab.sampled_side(session, "", "1,2", 0)


def test_the_split_chart_is_the_librarys_comparison_and_is_kept(attentive_store, monkeypatch):
    monkeypatch.setattr(tab, "RESULTS", Recent())
    chart, table, text = tab.split_views(
        TINY_NAME, "test", 2, store=attentive_store, max_side=SIDE, progress=None
    )
    pairs = [render(0, "test", i, size=(SIDE, SIDE // 2)) for i in range(2)]
    want = compare_split(attentive_store.model(TINY_NAME), pairs, TABLE7)
    bars = chart.data[0]
    assert list(bars.y) == [100 * row.miou for row in want.rows[:-1]]
    assert chart.layout.shapes[0].y0 == 100 * want.nb.miou  # NB at inference: the dashed line
    assert table["mIoU %"].tolist() == [round(100 * row.miou, 2) for row in want.rows]
    assert table["sampling"].tolist()[-2:] == [
        "pyramid_average (1, 3, 6, 8) (S = 110) [trained]",
        "NB at inference (every position)",
    ]
    assert table["cos APNB"].tolist()[-1] == 1.0  # NB against itself
    assert "Skipped (does not fit the feature map): random (15,)" in text and "7x13 feature map" in text

    def computed(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(tab, "compare_split", computed)
    assert (
        tab.split_views(TINY_NAME, "test", 2, store=attentive_store, max_side=SIDE, progress=None)[2] == text
    )


def test_the_endpoint_compares_the_latest_result_with_nb(analysis_client, attentive_store, tmp_path):
    from gradio_client import handle_file

    from ann.analysis.explore import Explorer

    client, _ = analysis_client
    label = np.zeros((48, 64), np.uint8)
    label[24:] = 13
    Image.fromarray(label).save(tmp_path / "label.png")
    image = street_image(tmp_path / "street.png")
    _, segmented = client.predict(handle_file(str(image)), handle_file(str(tmp_path / "label.png")),
                                  api_name="/segment")  # fmt: skip
    picture, summary = client.predict(api_name="/nb_compare")  # only essential inputs: none
    assert summary["handle"] == segmented["handle"] and set(summary["blocks"]) == {"afnb", "apnb"}
    assert Image.open(picture).size == (64 + tab.GAP + 64, 48)  # AFNB's map, a gap, APNB's
    apnb = summary["blocks"]["apnb"]
    assert apnb["anchors"] == 110 and apnb["positions"] == 63 and apnb["nb_kind"] == "nb"
    assert -1 <= apnb["cosine"]["min"] <= apnb["cosine"]["p05"] <= apnb["cosine"]["median"] <= 1
    # NB's S is N = 63 here, fewer than APNB's 110 anchors: on so small an image NB is the cheaper one
    assert apnb["gmacs"]["nb"] - apnb["gmacs"]["sampled"] == pytest.approx(63 * (63 - 110) * 64 / 1e9)
    miou = summary["miou"]
    assert summary["miou_change"] == pytest.approx(miou["nb"] - miou["sampled"])
    assert summary["changed_pixels"] == round(summary["changed_share"] * 48 * 64)
    assert set(summary["head_time_ms"]) == {"sampled", "nb"} and summary["head_time_ms"]["nb"]["wall_ms"] > 0
    # the library's numbers on the same image and label map, times aside
    explorer = Explorer(attentive_store.model(TINY_NAME))
    explorer.run(np.asarray(Image.open(image).convert("RGB")))
    want = without_times(compare_image(explorer, label=label, repeats=1).to_json())
    assert without_times({key: summary[key] for key in want}) == want


def test_the_endpoint_takes_an_image_or_refuses_plainly(analysis_client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client, _ = analysis_client
    image = handle_file(str(street_image(tmp_path / "street.png", seed=1)))
    _, summary = client.predict(image=image, method="pyramid_max", sizes="1,2,3,6", api_name="/nb_compare")
    assert (
        summary["blocks"]["apnb"]["sampling"] == "pyramid_max (1, 2, 3, 6) (S = 50)"
        and summary["miou"] is None
    )
    with pytest.raises(AppError, match="pyramid size 12 is finer than this image's 7x9 feature map"):
        client.predict(method="pyramid_average", sizes="1,4,8,12", api_name="/nb_compare")
    with pytest.raises(AppError, match="label_map and checkpoint go with image"):
        client.predict(checkpoint=TINY_NAME, api_name="/nb_compare")
    split = client.predict(count=2, api_name="/nb_compare_split")
    assert split["images"] == 2 and split["rows"][-1]["method"] == "identity"
    assert split["rows"][-1]["cosine_to_nb"] == {"afnb": 1.0, "apnb": 1.0}  # NB's own row
    assert [row["trained"] for row in split["rows"]].count(True) == 1
