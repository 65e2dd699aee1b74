"""ann.analysis.context and python -m ann.class_context: where the attention lands, by class."""

import json
import math

import numpy as np
import pytest
import torch

from ann.analysis.context import (
    ClassContext,
    anchor_composition,
    attention_blocks,
    cell_counts,
    class_context,
)
from ann.analysis.context_plots import plot_landing, plot_matrix
from ann.analysis.explore import Explorer, image_to_feature
from ann.checkpoint import CheckpointMeta
from ann.cli.class_context import main
from ann.data.labels import CITYSCAPES_CLASSES
from ann.models import build_network, variant
from ann.models.sampling import AnchorGeometry, Sampler, SamplingConfig
from tests.conftest_app import attentive_model

pytest_plugins = ("tests.conftest_app",)  # tiny_checkpoints

H, W = 32, 48  # image; feature map 4 x 6 at output stride 8


def geometry(boxes, feature_hw) -> AnchorGeometry:
    return AnchorGeometry(torch.zeros(len(boxes), dtype=torch.long), torch.tensor(boxes), (1,), feature_hw)


def halves() -> np.ndarray:
    """16 x 16: class 0 on the left half, 1 on the right, except the right half's top 4 rows (0)."""
    labels = np.zeros((16, 16), dtype=np.uint8)
    labels[:, 8:] = 1
    labels[:4, 8:] = 0
    return labels


@pytest.mark.parametrize("align_corners", [False, True])
def test_hand_made_composition(align_corners):
    # a 2 x 2 feature map: each cell owns one 8 x 8 quadrant under both conventions
    boxes = [
        (0, 0, 2, 2),
        (0, 0, 1, 1),
        (0, 1, 2, 2),
        (1, 1, 2, 2),
    ]  # all, top-left, right column, bottom-right
    composition = anchor_composition(halves(), geometry(boxes, (2, 2)), 2, align_corners)
    expected = [[160 / 256, 96 / 256], [1, 0], [32 / 128, 96 / 128], [0, 1]]
    np.testing.assert_allclose(composition, expected)


def test_ignored_pixels_are_left_out_and_an_unlabelled_anchor_is_all_zero():
    labels = halves()
    labels[:8, :4] = 255  # half of the top-left quadrant
    labels[8:, 8:] = 255  # all of the bottom-right quadrant
    boxes = [(0, 0, 1, 1), (1, 1, 2, 2), (0, 0, 2, 2)]
    composition = anchor_composition(labels, geometry(boxes, (2, 2)), 2, False)
    np.testing.assert_allclose(composition, [[1, 0], [0, 0], [(32 + 64 + 32) / 160, 32 / 160]])


@pytest.mark.parametrize("align_corners", [False, True])
def test_composition_follows_the_explorers_pixel_to_cell_mapping(align_corners):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (30, 44)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.2] = 255
    h, w = 4, 6
    anchors = Sampler(SamplingConfig()).anchors(h, w)  # (1, 3, 6, 8): bins overlap and repeat
    expected = np.zeros((len(anchors.level), 4))
    for s, (y0, x0, y1, x1) in enumerate(anchors.boxes.tolist()):
        for y in range(30):
            for x in range(44):
                fy, fx = image_to_feature(y, 30, h, align_corners), image_to_feature(x, 44, w, align_corners)
                if y0 <= fy < y1 and x0 <= fx < x1 and labels[y, x] != 255:
                    expected[s, labels[y, x]] += 1
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(anchor_composition(labels, anchors, 4, align_corners), expected)


def test_a_label_that_is_no_class_is_refused():
    with pytest.raises(ValueError, match="label 7 is neither a class id"):
        cell_counts(np.full((8, 8), 7, dtype=np.uint8), (1, 1), 4, False)


def test_attention_on_one_anchor_gives_that_anchors_composition():
    composition = np.array([[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]])  # (S=3, K=2)
    weights = torch.zeros(4, 3)
    weights[:, 2] = 1  # every query attends to anchor 2 only
    queries = np.array([[3, 0], [0, 2], [1, 1], [0, 0]])  # pixels of each class in each of the 4 cells
    context = ClassContext(["a", "b"])
    context.update(weights, queries, composition)
    result = context.result()
    np.testing.assert_allclose(result.matrix, [[0.25, 0.75], [0.25, 0.75]])
    np.testing.assert_array_equal(result.pixels, [4, 3])
    np.testing.assert_allclose(result.entropy, [0, 0], atol=1e-12)
    np.testing.assert_allclose(result.effective_anchors, [1, 1])
    np.testing.assert_allclose(result.own_share, [0.25, 0.75])
    assert result.absent == []


def test_uniform_attention_has_entropy_log_s_and_s_effective_anchors():
    S = 110
    rng = np.random.default_rng(1)
    composition = rng.dirichlet(np.ones(3), S)  # (S, 3), rows sum to 1
    queries = rng.integers(0, 5, (20, 3))
    context = ClassContext(["a", "b", "c"])
    context.update(torch.full((20, S), 1 / S), queries, composition)
    result = context.result()
    np.testing.assert_allclose(result.entropy, [math.log(S)] * 3, rtol=1e-6)
    np.testing.assert_allclose(result.effective_anchors, [S] * 3, rtol=1e-5)
    assert result.uniform_entropy == pytest.approx(math.log(S))
    np.testing.assert_allclose(result.matrix, np.tile(composition.mean(0), (3, 1)), rtol=1e-5)
    np.testing.assert_allclose(result.matrix.sum(1), 1, rtol=1e-6)


def test_mass_on_unlabelled_anchors_is_unassigned_and_rows_still_sum_to_one():
    composition = np.array([[0.0, 0.0], [0.2, 0.8]])  # anchor 0 holds only ignored pixels
    weights = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    context = ClassContext(["a", "b", "c"])
    context.update(weights, np.array([[2, 0, 0], [0, 1, 0]]), np.pad(composition, ((0, 0), (0, 1))))
    result = context.result()
    np.testing.assert_allclose(result.unassigned[:2], [0.5, 0.9], rtol=1e-6)
    np.testing.assert_allclose(result.matrix[:2], [[0.2, 0.8, 0], [0.2, 0.8, 0]], rtol=1e-6)
    assert result.absent == ["c"] and np.isnan(result.matrix[2]).all()
    data = json.loads(json.dumps(result.to_json()))  # plain types only
    assert data["matrix"][2] is None and data["absent"] == ["c"] and data["entropy"][2] is None
    assert data["uniform"] == {"entropy": pytest.approx(math.log(2)), "effective_anchors": pytest.approx(2)}


def test_two_images_weigh_by_their_pixels():
    context = ClassContext(["a", "b"])
    context.update(torch.tensor([[1.0, 0.0]]), np.array([[3, 0]]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    context.update(torch.tensor([[0.0, 1.0]]), np.array([[1, 0]]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    result = context.result()
    np.testing.assert_allclose(result.matrix[0], [0.75, 0.25])
    assert result.images == 2 and result.absent == ["b"]


# ---- on a network -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    """The app tests' tiny ANN, with random query/key projections so its attention is not uniform."""
    return attentive_model(keys_only=True)


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[:, W // 3 :] = 1  # sidewalk
    labels[H // 2 :, 2 * W // 3 :] = 9  # terrain
    labels[:3] = 255
    return image, labels


@pytest.mark.parametrize("block, kind", [("context", "apnb"), ("fusion", "afnb")])
def test_network_result_is_every_labelled_pixels_clicked_attention(model, scene, block, kind):
    image, labels = scene
    result = class_context(model, [(image, labels)], blocks=(block,))[kind]
    explorer = Explorer(model)
    explorer.run(image)
    composition = anchor_composition(labels, explorer.attention(kind).anchors, 19, True)
    expected = np.zeros((19, 19))
    effective = np.zeros(19)
    for y in range(H):
        for x in range(W):
            if labels[y, x] != 255:
                weights, _ = explorer.attention_at(x, y, kind)  # what the app shows for a click there
                expected[labels[y, x]] += weights @ composition
                effective[labels[y, x]] += math.exp(-(weights * np.log(weights)).sum())
    counts = np.bincount(labels[labels != 255], minlength=19)
    present = counts > 0
    np.testing.assert_array_equal(result.pixels, counts)
    np.testing.assert_allclose(result.matrix[present], shares_of(expected[present]), rtol=1e-4)
    np.testing.assert_allclose(
        result.effective_anchors[present], effective[present] / counts[present], rtol=1e-4
    )
    assert 1 < result.effective_anchors[0] < 110  # neither one anchor nor uniform: the test has teeth
    assert set(result.absent) == set(CITYSCAPES_CLASSES) - {"road", "sidewalk", "terrain"}


def shares_of(rows: np.ndarray) -> np.ndarray:
    return rows / rows.sum(1, keepdims=True)


def test_prediction_labels_need_no_label_map(model, scene):
    image, _ = scene
    results = class_context(model, [(image, None)], labels="prediction")
    explorer = Explorer(model)
    predicted = explorer.run(image).labels
    for result in results.values():
        np.testing.assert_array_equal(result.pixels, np.bincount(predicted.ravel(), minlength=19))
        rows = result.matrix[~np.isnan(result.matrix).any(1)]
        np.testing.assert_allclose(rows.sum(1), 1, rtol=1e-6)
    assert list(results) == ["afnb", "apnb"]


def test_ground_truth_must_be_given_and_fit_the_image(model, scene):
    image, labels = scene
    with pytest.raises(ValueError, match="has no label map"):
        class_context(model, [(image, None)])
    with pytest.raises(ValueError, match="differ in size"):
        class_context(model, [(image, labels[:-1])])
    with pytest.raises(ValueError, match="unknown label source"):
        class_context(model, [], labels="truth")


def test_a_model_without_attention_is_refused():
    fcn = build_network(variant("baseline", backbone="resnet18", head_channels=16))
    with pytest.raises(ValueError, match="has no attention block"):
        attention_blocks(fcn)
    apnb_only = build_network(variant("apnb", backbone="resnet18", head_channels=16))
    with pytest.raises(ValueError, match=r"no attention in block\(s\) fusion; it has context \(apnb\)"):
        attention_blocks(apnb_only, ("fusion",))
    with pytest.raises(ValueError, match="unknown block"):
        attention_blocks(apnb_only, ("apnb",))


def test_plots_are_written(model, scene, tmp_path):
    results = list(class_context(model, [scene]).values())
    plot_matrix(results, tmp_path / "matrix.png", "test")
    plot_landing(
        results, tmp_path / "bars.png", ("sidewalk", "terrain", "wall"), CheckpointMeta(model.config).palette
    )
    for name in ("matrix.png", "bars.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="unknown class 'pavement'"):
        plot_landing(results, tmp_path / "bars.png", ("pavement",))


# ---- command line -------------------------------------------------------------------------------


def test_cli_on_synthcity_writes_json_rows_summing_to_one_and_pngs(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "out"
    outputs = ["--json", str(out / "c.json"), "--plot", str(out / "m.png"), "--figure", str(out / "f.png")]
    argv = [str(tiny_checkpoints / "tiny.safetensors"), "--limit", "3", "--size", "64,128", *outputs]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "APNB: 3 images, uniform attention = 110 effective anchors" in printed.out
    assert "class context: 3/3 images" in printed.err  # not a terminal: plain progress lines
    summary = json.loads((out / "c.json").read_text())
    assert summary["size"] == [64, 128] and summary["split"] == "test" and summary["labels"] == "gt"
    assert set(summary["blocks"]) == {"afnb", "apnb"}
    for block in summary["blocks"].values():
        assert block["images"] == 3 and len(block["classes"]) == 19
        rows = [row for row in block["matrix"] if row is not None]
        assert rows and np.allclose([sum(row) for row in rows], 1)
        missing = [name for name, row in zip(block["classes"], block["matrix"], strict=True) if row is None]
        assert missing == block["absent"]
        assert np.allclose(block["own_share"][0], block["matrix"][0][0])
    for name in ("m.png", "f.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_cli_refuses_a_model_without_attention(tiny_checkpoints, capsys):
    assert main([str(tiny_checkpoints / "fcn.safetensors"), "--limit", "1", "--size", "64,128"]) == 2
    assert "no attention block (fusion none, context none)" in capsys.readouterr().err


def test_cli_errors_name_the_problem(tiny_checkpoints, tmp_path, capsys):
    assert main([str(tmp_path / "missing.safetensors")]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(photos / "a.png")
    tiny = str(tiny_checkpoints / "tiny.safetensors")
    assert main([tiny, "--data", str(photos), "--size", "64,128"]) == 2
    assert "for images without labels use --labels prediction" in capsys.readouterr().err
    assert main([tiny, "--data", str(photos), "--labels", "prediction", "--size", "64,128"]) == 0
    assert "APNB: 1 images" in capsys.readouterr().out
    assert main([tiny, "--limit", "1", "--figure", str(tmp_path / "f.png"), "--classes", "pavement"]) == 2
    assert "--classes pavement: not classes of tiny.safetensors" in capsys.readouterr().err


def test_effective_anchors_are_the_mean_of_exp_entropy_not_exp_of_the_mean():
    S = 8
    weights = torch.stack([torch.full((S,), 1 / S), torch.eye(S)[0]])  # uniform, then on one anchor
    context = ClassContext(["a"])
    context.update(weights, np.array([[1], [1]]), np.ones((S, 1)))
    result = context.result()
    assert result.entropy[0] == pytest.approx(math.log(S) / 2)
    assert result.effective_anchors[0] == pytest.approx((S + 1) / 2)  # exp(mean) would be sqrt(S)
