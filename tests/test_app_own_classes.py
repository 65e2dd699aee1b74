"""The app on a model of the user's own classes (a `folder`-trained checkpoint): the bundled
examples carry Cityscapes ground truth, which must not be scored against other classes."""

import numpy as np
import pytest
import torch

from ann.checkpoint import CheckpointMeta, save
from ann.models import build_network, variant
from app.images import EXAMPLES, examples
from app.session import ModelStore
from app.tabs.explain import MAJORITY, show_image
from app.tabs.segment import segment

CLASSES = ["background", "crack", "rust"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    torch.manual_seed(0)
    config = variant("full", backbone="resnet18", num_classes=3, head_channels=32, key_channels=16,
                     value_channels=16, aux_channels=32)  # fmt: skip
    model = build_network(config)
    save(
        model,
        folder / "own.safetensors",
        CheckpointMeta(model.config, CLASSES, [[0, 0, 0], [255, 0, 0], [0, 255, 0]]),
    )
    return ModelStore(folder)


def run(store, image, label):
    return segment(None, image, label, "own.safetensors", 0.5, False, [], store=store, max_side=256)


def test_example_with_cityscapes_ground_truth_segments_without_iou(store):
    image, label = next(row for row in examples()[0] if row[1])  # a SynthCity example + labels
    session, _, legend, *_, iou, summary, _ = run(store, image, label)
    assert session.target is None and "mIoU" not in summary and iou is None
    assert any(name in legend for name in CLASSES) and "road" not in legend
    picture, menu, _ = show_image(session)
    assert menu["choices"][0] == MAJORITY and sorted(menu["choices"][1:]) == sorted(CLASSES)


def test_own_ground_truth_is_still_scored(store, tmp_path):
    from PIL import Image

    image = next((EXAMPLES / "photos").glob("*.jpg"))
    with Image.open(image) as photo:
        width, height = photo.size
    Image.fromarray(np.ones((height, width), np.uint8)).save(tmp_path / "mine.png")  # all "crack"
    session, *_, iou, summary, _ = run(store, str(image), str(tmp_path / "mine.png"))
    assert session.target is not None and "mIoU" in summary
    assert list(iou["class"]) == ["crack"]


def test_a_trainer_run_folder_shows_its_model_card(tmp_path):
    from app.models import model_card

    torch.manual_seed(0)
    model = build_network(variant("full", backbone="resnet18", num_classes=3, head_channels=32,
                                  key_channels=16, value_channels=16, aux_channels=32))  # fmt: skip
    save(
        model,
        tmp_path / "model.safetensors",
        CheckpointMeta(model.config, CLASSES, [[0, 0, 0], [1, 1, 1], [2, 2, 2]]),
    )
    (tmp_path / "model_card.md").write_text("# my run\nval mIoU 12.3")
    store = ModelStore(tmp_path / "elsewhere")
    name = store.add_file(str(tmp_path / "model.safetensors"), uploaded=False)
    assert "val mIoU 12.3" in model_card(store, name)
