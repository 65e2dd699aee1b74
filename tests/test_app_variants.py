"""The app on the Table 6 variants other than the full ANN: NB/FNB (every position is an anchor)
and the baseline (no attention). Handlers are called directly on tiny checkpoints."""

import gradio as gr
import numpy as np
import pytest
import torch

from ann.checkpoint import CheckpointMeta, save
from ann.models import build_network, variant
from app.models import model_card
from app.session import ModelStore
from app.tabs.explain import explain, show_image
from app.tabs.sampling import set_sampling, trained_controls
from app.tabs.segment import segment

VIEW = (0.5, False, [])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("variants")
    for name in ("fnb_nb", "baseline"):
        torch.manual_seed(0)
        config = variant(name, backbone="resnet18", num_classes=19, head_channels=32, key_channels=16,
                         value_channels=16, aux_channels=32)  # fmt: skip
        model = build_network(config)
        save(model, folder / f"{name}.safetensors", CheckpointMeta(model.config))
    return ModelStore(folder)


def run(store, name):
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    return segment(None, image, None, f"{name}.safetensors", *VIEW, store=store, max_side=64)[0]


def test_model_card_gives_each_blocks_own_training_sampling(store):
    nb_card = model_card(store, "fnb_nb.safetensors")
    assert "trained sampling: FNB identity (all positions, S = N); NB identity" in nb_card
    assert "S = 110" not in nb_card  # the config's pyramid is never used by NB or FNB
    assert "trained sampling: none (no attention block)" in model_card(store, "baseline.safetensors")
    assert "S = 110" not in trained_controls(run(store, "fnb_nb"))[-1]


@pytest.mark.parametrize("name", ["fnb_nb", "baseline"])
def test_sampling_controls_keep_their_values_for_a_model_with_nothing_to_switch(store, name):
    """NB, FNB and the baseline never use the config's pyramid: the controls are not set to it."""
    *controls, summary = trained_controls(run(store, name))
    assert controls == [gr.skip()] * 3 and summary.endswith("Nothing to switch: no AFNB or APNB block.")


@pytest.mark.parametrize("name", ["fnb_nb", "baseline"])
def test_sampling_switch_is_refused_without_an_asymmetric_block(store, name):
    session = run(store, name)
    labels = session.result.labels.copy()
    with pytest.raises(gr.Error, match="no AFNB or APNB"):
        set_sampling(session, "pyramid_max", "1,2,3,6", 0, *VIEW)
    assert (session.result.labels == labels).all() and not session.explorer.differences()


def test_explain_offers_and_runs_grad_cam_on_the_models_own_blocks(store):
    session = run(store, "fnb_nb")
    _, classes, layers = show_image(session, "apnb")
    assert layers["choices"] == ["stage1", "stage2", "stage3", "stage4", "stage5", "fnb", "nb"]
    assert layers["value"] == "stage5"  # apnb is not in this model
    cam, _, status = explain(session, "nb", classes["value"], "pixels predicted as the class",
                             None, None, 8, ["Grad-CAM"], 2, 64, progress=lambda *a, **k: None)  # fmt: skip
    assert cam is not None and "Grad-CAM on nb" in status
    assert show_image(run(store, "baseline"))[2]["choices"][-1] == "stage5"  # no block to offer


def test_class_context_of_nb_and_no_nb_comparison_without_apnb_or_afnb(store):
    """NB and FNB have a class context (S = N = 6 x 8 anchors) but nothing to compare with NB; the
    baseline has neither."""
    from app.tabs import class_context, nb_compare

    session = run(store, "fnb_nb")
    show = {"store": store, "max_side": 64, "progress": None}
    _, table, text = class_context.show(
        session, "fnb_nb.safetensors", "image", "test", 1, "", "fusion", **show
    )
    assert text.startswith("**FNB** over the current image (array), 56x40 px, predicted labels")
    assert "log S = 3.871 nats, S = 48 effective anchors" in text and table["pixels"].sum() == 40 * 56
    with pytest.raises(gr.Error, match=r"no APNB or AFNB \(fusion fnb, context nb\)"):
        nb_compare.image_views(session)
    with pytest.raises(gr.Error, match="this model has no attention block"):
        class_context.show(None, "baseline.safetensors", "synthcity", "test", 1, "", "", **show)
    with pytest.raises(gr.Error, match=r"no APNB or AFNB \(fusion none, context none\)"):
        nb_compare.split_views("baseline.safetensors", "test", 1, **show)
