"""Which model the app starts on and at what size it processes images (issue 16, item 6): the full
ANN of the checkpoint folder, told by each file's metadata; the scale the model was trained at,
from its provenance, unless --max-side says otherwise; the card says how it was trained."""

import numpy as np
import pytest
import torch
from PIL import Image

from ann.checkpoint import CheckpointMeta, save, write_safetensors
from ann.models import build_network, variant
from app.session import UNTRAINED, ModelStore, processing_size
from tests.conftest_app import tiny_config

SYNTHCITY_96 = {"dataset": "synthcity", "synthcity_size": [48, 96], "crop_size": [48, 48]}
FOLDER_32 = {"dataset": "folder", "root": "mine", "crop_size": [32, 32]}


def header_only(path, name: str, backbone: str = "resnet18") -> None:
    """A file with a Table 6 variant's metadata and no weights: the menu reads headers only."""
    config = variant(name, backbone=backbone, num_classes=19)
    write_safetensors({"unused": torch.zeros(1)}, path, CheckpointMeta(config).to_metadata())


def tiny(path, data: dict | None = None, seed: int = 0):
    """A real tiny full ANN with the trainer's provenance["data"] (None: no provenance)."""
    torch.manual_seed(seed)
    model = build_network(tiny_config()).eval()
    provenance = {} if data is None else {"data": data}
    return save(model, path, CheckpointMeta(model.config, provenance=provenance))


def test_the_default_is_the_full_ann_by_its_metadata_not_its_name(tmp_path):
    """A baseline named like the full ANN, and two full ANNs under other names: the first of
    those by name, after a full ANN on another backbone than the paper's ResNet. Without a full
    ANN, the first file that can be read; then the first file; an empty folder: the untrained
    network."""
    header_only(tmp_path / "ann-effl0.safetensors", "full", backbone="efficientnet_lite0")
    header_only(tmp_path / "ann-r18-synthcity.safetensors", "baseline")
    header_only(tmp_path / "fcn.safetensors", "full")
    header_only(tmp_path / "m.safetensors", "full")
    header_only(tmp_path / "b-apnb.safetensors", "apnb")
    (tmp_path / "0-broken.safetensors").write_bytes(b"not a checkpoint")
    assert ModelStore(tmp_path).default() == "fcn.safetensors"
    (tmp_path / "fcn.safetensors").unlink()
    assert ModelStore(tmp_path).default() == "m.safetensors"
    (tmp_path / "m.safetensors").unlink()
    assert ModelStore(tmp_path).default() == "ann-effl0.safetensors"  # the only full ANN left
    (tmp_path / "ann-effl0.safetensors").unlink()
    assert ModelStore(tmp_path).default() == "ann-r18-synthcity.safetensors"  # readable, first by name
    for path in tmp_path.glob("[ab]*.safetensors"):
        path.unlink()
    assert ModelStore(tmp_path).default() == "0-broken.safetensors"  # refused with its reason if opened
    (tmp_path / "0-broken.safetensors").unlink()
    empty = ModelStore(tmp_path)
    assert empty.names() == [UNTRAINED] and empty.default() == UNTRAINED


def test_an_uploaded_full_ann_does_not_become_the_default(tmp_path):
    (tmp_path / "folder").mkdir()
    header_only(tmp_path / "folder" / "apnb.safetensors", "apnb")
    store = ModelStore(tmp_path / "folder")
    store.add_file(tiny(tmp_path / "full.safetensors"))
    assert store.default() == "apnb.safetensors"


@pytest.mark.parametrize(
    "data, max_side, expected",
    [
        ({"dataset": "synthcity", "synthcity_size": [256, 512], "crop_size": [256, 256]}, None,
         (512, "the model was trained at 512x256")),
        ({"dataset": "cityscapes", "synthcity_size": [512, 1024], "crop_size": [769, 769]}, None,
         (769, "the model was trained on 769x769 crops")),
        ({"dataset": "folder", "root": "mine"}, None, (1024, "the model's card records no training size")),
        (None, None, (1024, "the model's card records no training size")),  # converted, untrained
        ({"dataset": "synthcity", "synthcity_size": [256, 512]}, 300, (300, "set by --max-side")),
    ],
)  # fmt: skip
def test_processing_size_is_the_training_scale_unless_max_side_is_given(data, max_side, expected):
    provenance = {} if data is None else {"data": data}
    meta = CheckpointMeta(variant("full", backbone="resnet18"), provenance=provenance)
    assert processing_size(meta, max_side) == expected


def street(path, size=(200, 100)):
    """A 200x100 RGB image with a gradient, so a resized copy differs from a re-read one."""
    x = np.linspace(0, 255, size[0], dtype=np.float32)
    picture = np.stack([np.tile(x, (size[1], 1))] * 3, axis=-1).astype(np.uint8)
    Image.fromarray(picture).save(path)
    return str(path)


@pytest.fixture(scope="module")
def two_scales(tmp_path_factory):
    """A folder with a full ANN trained at 96x48 SynthCity images and an APNB (header only)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    tiny(folder / "full-96.safetensors", SYNTHCITY_96)
    header_only(folder / "a-apnb.safetensors", "apnb")
    return folder


@pytest.mark.parametrize("max_side, side, why", [(None, 96, "the model was trained at 96x48"),
                                                 (64, 64, "set by --max-side")])  # fmt: skip
def test_the_app_starts_on_the_full_ann_at_its_training_scale(two_scales, tmp_path, max_side, side, why):
    """The page says which size and why; the API reads the 200x100 image at that size."""
    from app.api import Api
    from app.layout import build_demo
    from app.session import Results

    store = ModelStore(two_scales)
    demo = build_demo(store, max_side=max_side)
    text = next(block.value for block in demo.blocks.values() if block.elem_id == "processing-size")
    assert text == f"Images are processed with their longer side at most **{side} px** ({why})."
    api = Api(store, store.default(), max_side, Results())
    _, summary = api.segment({"path": street(tmp_path / "street.png")})
    assert summary["checkpoint"] == "full-96.safetensors" and summary["size"] == [side, side // 2]
    card = api.model_card()
    assert f"- processed here at a longer side of {side} px ({why})" in card


def test_switching_the_model_reads_the_image_again_at_its_scale(tmp_path):
    """96 px for the SynthCity model, 32 for the one trained on 32x32 crops, and 96 again: read
    from the file again, not enlarged from the 32 px copy. With --max-side: one size for both."""
    from app.models import choose_model
    from app.tabs.segment import resegment, segment

    tiny(tmp_path / "full-96.safetensors", SYNTHCITY_96)
    tiny(tmp_path / "mine-32.safetensors", FOLDER_32, seed=1)
    image = street(tmp_path / "street.png")
    store = ModelStore(tmp_path)
    view = (0.5, False, [])
    session = segment(None, image, None, "full-96.safetensors", *view, store=store)[0]
    first = session.image
    for name, size in (("mine-32.safetensors", (16, 32)), ("full-96.safetensors", (48, 96))):
        session, *_, text = choose_model(session, name, store=store)
        session = resegment(session, None, None, name, *view, store=store, max_side=None)[0]
        assert session.image.shape[:2] == size and f"**{size[1]} px**" in text
    assert np.array_equal(session.image, first)
    session = segment(None, image, None, "full-96.safetensors", *view, store=store, max_side=64)[0]
    session = resegment(session, None, None, "mine-32.safetensors", *view, store=store, max_side=64)[0]
    assert session.checkpoint == "mine-32.safetensors" and session.image.shape[:2] == (32, 64)


def test_the_card_says_how_the_model_was_trained(tmp_path):
    """The trainer's provenance in the card's words (ann/training/card.py's "trained on" row)."""
    from app.models import model_card

    torch.manual_seed(0)
    model = build_network(tiny_config()).eval()
    provenance = {
        "device": "cpu (AMD EPYC 7B13, 2 cores), 2 threads", "world_size": 1, "images_seen": 14000,
        "data": {"dataset": "synthcity", "synthcity_seed": 0, "synthcity_size": [256, 512],
                 "synthcity_train_images": 500, "crop_size": [256, 256], "progressive": [[0.7, 0.5]]},
    }  # fmt: skip
    save(model, tmp_path / "m.safetensors", CheckpointMeta(model.config, provenance=provenance))
    card = model_card(ModelStore(tmp_path), "m.safetensors")
    assert ("- trained on: cpu (AMD EPYC 7B13, 2 cores), 2 threads at 512x256 SynthCity images, 256x256 "
            "crops; iterations before 70% at 128x128; 14,000 images seen") in card  # fmt: skip
    assert "- processed here at a longer side of 512 px (the model was trained at 512x256)" in card
    data = {"dataset": "cityscapes", "crop_size": [769, 769]}  # no images_seen recorded: none said
    provenance = {"device": "NVIDIA H100", "world_size": 2, "data": data}
    save(model, tmp_path / "c.safetensors", CheckpointMeta(model.config, provenance=provenance))
    card = model_card(ModelStore(tmp_path), "c.safetensors")
    assert "- trained on: 2 processes on NVIDIA H100 at 769x769 crops\n" in card
