"""ann.analysis.nb_compare and python -m ann.nb_compare: APNB against NB on the same weights."""

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ann.analysis.explore import Explorer, per_class_iou
from ann.analysis.nb_compare import IDENTITY, compare_image, compare_split, run_side
from ann.analysis.nb_compare_plots import plot_image, plot_split
from ann.checkpoint import CheckpointMeta
from ann.cli.nb_compare import main
from ann.inference import preprocess
from ann.metrics import ConfusionMatrix
from ann.models import build_network, variant
from ann.models.sampling import TABLE7, SamplingConfig, misfit
from tests.conftest_app import attentive_model, save_tiny_and_fcn

H, W = 64, 128  # feature map 9 x 17 at output stride 8: N = 153
TRAINED = SamplingConfig("pyramid_average", (1, 3, 6, 8))


@pytest.fixture(scope="module")
def model():
    """The app tests' tiny ANN with random attention weights (W included, zero at initialisation)."""
    return attentive_model()


def street(seed: int = 0, size=(H, W)) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    image[:, size[1] // 2 :] //= 4  # a dark right half, so features differ across the image
    return image


def predict(net, image: np.ndarray, sampling: SamplingConfig) -> np.ndarray:
    """The plain forward pass of a copy of `net` whose AFNB and APNB sample with `sampling`."""
    other = copy.deepcopy(net)
    other.set_sampling(sampling)
    with torch.no_grad():
        return other(preprocess(image, CheckpointMeta(net.config).normalization))[0].argmax(0).numpy()


# ---- one image ----------------------------------------------------------------------------------


def test_identity_against_identity_is_cosine_one_and_changes_nothing(model):
    comparison = compare_image(model, street(), sampling=IDENTITY, repeats=1)
    assert set(comparison.blocks) == {"afnb", "apnb"}
    for block in comparison.blocks.values():
        assert block.cosine.shape == (9, 17)
        np.testing.assert_array_equal(block.cosine, 1)
        np.testing.assert_allclose(block.cosine_image, 1, atol=1e-6)
        assert block.cosine_image.shape == (H, W)
    assert comparison.changed_share == 0 and not comparison.changed.any()
    assert comparison.to_json()["changed_pixels"] == 0


def test_anchors_at_every_position_give_nbs_context_and_fewer_anchors_do_not(model):
    image = street(size=(H, H))  # a square 9 x 9 feature map: average pooling to 9 x 9 keeps every cell
    explorer = Explorer(model)
    explorer.run(image)
    assert tuple(explorer.stages[4].shape[-2:]) == (9, 9)
    blocks = {"fusion": "afnb", "context": "apnb"}
    nb = run_side(explorer, blocks, IDENTITY)
    every_cell = run_side(explorer, blocks, SamplingConfig("average", (9,)))
    coarse = run_side(explorer, blocks, SamplingConfig("pyramid_average", (1, 2)))
    for name in blocks:
        assert nb.contexts[name].shape == (1, 32, 9, 9)  # (1, C_v, h, w)
        torch.testing.assert_close(every_cell.contexts[name], nb.contexts[name], rtol=1e-5, atol=1e-6)
    comparison = compare_image(explorer, sampling=SamplingConfig("pyramid_average", (1, 2)), repeats=1)
    assert comparison.blocks["apnb"].cosine.min() < 0.99  # the test has teeth: 5 anchors are not NB
    cosine = torch.nn.functional.cosine_similarity(coarse.contexts["context"], nb.contexts["context"], dim=1)
    np.testing.assert_allclose(comparison.blocks["apnb"].cosine, cosine[0].numpy(), atol=1e-6)


def test_nb_costs_n_times_n_minus_s_more_macs(model):
    comparison = compare_image(model, street(), repeats=1)
    N, S, key, value = 153, 110, 32, 32
    for block in comparison.blocks.values():
        # only the two matrix products grow with the anchors: N x S x C^ and N x S x C_v (Eq. 13)
        extra = N * (N - S) * (key + value) / 1e9
        assert block.gmacs["nb"] - block.gmacs["sampled"] == pytest.approx(extra, rel=1e-9)
        assert block.gmacs["nb"] > block.gmacs["sampled"]
    for side in ("sampled", "nb"):
        assert comparison.time[side]["wall_ms"] > 0 and comparison.time[side]["cpu_ms"] >= 0
    assert comparison.timed_on.startswith("CPU time on ")


def test_sides_are_the_trained_network_and_the_network_with_nb(model):
    image = street()
    comparison = compare_image(model, image, repeats=1)
    np.testing.assert_array_equal(comparison.labels["sampled"], predict(model, image, TRAINED))
    np.testing.assert_array_equal(comparison.labels["nb"], predict(model, image, IDENTITY))
    assert 0 < comparison.changed_share < 0.5  # some classes change, most do not
    assert comparison.blocks["apnb"].sampling == TRAINED


def test_miou_change_is_the_difference_of_the_two_per_image_mious(model):
    image = street()
    label = compare_image(model, image, repeats=1).labels["sampled"].copy()
    label[:8] = 255
    comparison = compare_image(model, image, label, repeats=1)
    nb = float(np.nanmean(per_class_iou(comparison.labels["nb"], label, 19)))
    assert comparison.miou["sampled"] == 1.0  # the label is that prediction
    assert comparison.miou["nb"] == pytest.approx(nb, abs=1e-12) and nb < 1
    assert comparison.miou_change == pytest.approx(nb - 1.0, abs=1e-12)
    summary = json.loads(json.dumps(comparison.to_json()))  # plain types only
    assert summary["miou_change"] == pytest.approx(nb - 1.0)
    assert summary["per_class_iou"]["sampled"]["wall"] is None  # a class in neither map


def test_an_explorer_keeps_its_sampling_result_and_model(model):
    explorer = Explorer(model)
    explorer.run(street())
    switched = SamplingConfig("pyramid_max", (1, 2, 3, 6))
    before = explorer.set_sampling(switched)
    on_model = model.samplings()
    comparison = compare_image(explorer, repeats=1)  # the sampled side is the trained sampling
    assert explorer.result is before and explorer.sampling == {"fusion": switched, "context": switched}
    assert model.samplings() == on_model
    assert comparison.blocks["afnb"].sampling == TRAINED


def test_refusals(model):
    for name in ("baseline", "nb", "fnb_nb"):
        net = build_network(variant(name, backbone="resnet18", head_channels=16))
        with pytest.raises(ValueError, match="has no APNB or AFNB"):
            compare_image(net, street())
    apnb_only = build_network(variant("apnb", backbone="resnet18", head_channels=16))
    with pytest.raises(ValueError, match=r"no attention in block\(s\) fusion"):
        compare_image(apnb_only, street(), blocks=("fusion",))
    with pytest.raises(ValueError, match="needs 225 distinct positions; the 9x17 feature map has 153"):
        compare_image(model, street(), sampling=SamplingConfig("random", (15,)))
    with pytest.raises(ValueError, match="differ in size"):
        compare_image(model, street(), np.zeros((H - 1, W), dtype=np.uint8))


def test_table7_and_what_fits_a_feature_map():
    assert [config.num_anchors for config in TABLE7] == [225, 225, 225, 50, 50, 50, 110, 225]  # Table 7's S
    assert misfit(SamplingConfig("random", (15,)), (15, 15)) is None
    assert misfit(SamplingConfig("random", (15,)), (14, 16)) == (
        "random sampling with n = 15 needs 225 distinct positions; the 14x16 feature map has 224"
    )
    assert misfit(SamplingConfig("pyramid_average", (1, 3, 6, 8)), (8, 200)) is None
    assert misfit(SamplingConfig("pyramid_average", (1, 3, 6, 9)), (8, 200)) == (
        "pyramid size 9 is finer than the 8x200 feature map"
    )
    assert misfit(IDENTITY, (1, 1)) is None


# ---- a split ------------------------------------------------------------------------------------


def labelled(seed: int) -> tuple[np.ndarray, np.ndarray]:
    label = np.zeros((H, W), dtype=np.uint8)
    label[:, W // 3 :] = 1
    label[H // 2 :, 2 * W // 3 :] = 9
    label[:4] = 255
    return street(seed), label


def test_split_rows_match_plain_evaluation_and_nbs_own_row_is_similarity_one(model):
    pairs = [labelled(0), labelled(1), labelled(2)]
    split = compare_split(model, iter(pairs), limit=2)
    assert split.images == 2
    expected = [
        SamplingConfig("pyramid_random", (1, 2, 3, 6)),
        SamplingConfig("pyramid_max", (1, 2, 3, 6)),
        SamplingConfig("pyramid_average", (1, 2, 3, 6)),
        TRAINED,
        IDENTITY,
    ]
    assert [row.sampling for row in split.rows] == expected
    assert [row.trained for row in split.rows] == [False, False, False, True, False]
    assert len(split.skipped) == 4 and all("9x17" in why for why in split.skipped.values())
    assert split.nb.cosine == {"afnb": 1.0, "apnb": 1.0} and split.nb.changed_share == 0
    for sampling in (TRAINED, IDENTITY, SamplingConfig("pyramid_max", (1, 2, 3, 6))):
        matrix = ConfusionMatrix(19)
        for image, label in pairs[:2]:
            matrix.update(torch.from_numpy(predict(model, image, sampling)), torch.from_numpy(label).long())
        assert split.row(sampling).miou == pytest.approx(matrix.miou(), abs=1e-12)
    assert split.row(SamplingConfig("pyramid_max", (1, 2, 3, 6))).cosine["apnb"] < 0.99
    summary = json.loads(json.dumps(split.to_json()))
    assert summary["rows"][-1]["cosine_to_nb"] == {"afnb": 1.0, "apnb": 1.0}


def test_split_needs_labels(model):
    with pytest.raises(ValueError, match="needs a label map for every image"):
        compare_split(model, [(street(), None)])
    with pytest.raises(ValueError, match="no image to compare"):
        compare_split(model, [])


def test_plots_are_written(model, tmp_path):
    image = street()
    plot_image(compare_image(model, image, repeats=1), image, tmp_path / "image.png", "test")
    plot_split(compare_split(model, [labelled(0)], methods=TABLE7[3:5]), tmp_path / "split.png")
    for name in ("image.png", "split.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- command line -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, model):
    folder = tmp_path_factory.mktemp("checkpoints")
    save_tiny_and_fcn(folder, model)
    return folder


def test_cli_on_two_synthcity_images_writes_json_and_png(checkpoints, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(checkpoints / "tiny.safetensors"), "--limit", "2", "--size", f"{H},{W}"]
    assert main([*argv, "--json", str(out / "s.json"), "--plot", str(out / "s.png")]) == 0
    printed = capsys.readouterr()
    assert "nb compare: 2/2 images" in printed.err  # not a terminal: plain progress lines
    assert "NB at inference (every position, S = N)" in printed.out
    summary = json.loads((out / "s.json").read_text())
    assert summary["images"] == 2 and summary["size"] == [H, W] and summary["split"] == "test"
    assert [row["trained"] for row in summary["rows"]] == [False, False, False, True, False]
    assert summary["rows"][-1]["method"] == "identity"
    assert summary["rows"][-1]["cosine_to_nb"] == {"afnb": 1.0, "apnb": 1.0}
    assert (out / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_on_one_image_with_a_label(checkpoints, tmp_path, capsys):
    image, label = labelled(0)
    Image.fromarray(image).save(tmp_path / "street.png")
    Image.fromarray(label).save(tmp_path / "street_ids.png")
    outputs = ["--json", str(tmp_path / "i.json"), "--plot", str(tmp_path / "i.png")]
    argv = [str(checkpoints / "tiny.safetensors"), "--image", str(tmp_path / "street.png")]
    assert main([*argv, "--label", str(tmp_path / "street_ids.png"), "--repeats", "1", *outputs]) == 0
    assert "change" in capsys.readouterr().out
    summary = json.loads((tmp_path / "i.json").read_text())
    assert summary["miou_change"] == pytest.approx(summary["miou"]["nb"] - summary["miou"]["sampled"])
    assert all(b["gmacs"]["nb"] > b["gmacs"]["sampled"] for b in summary["blocks"].values())
    assert summary["image_size"] == [H, W] and summary["head_time_ms"]["nb"]["wall_ms"] > 0
    assert (tmp_path / "i.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_refuses_an_fcn_and_flags_without_effect(checkpoints, tmp_path, capsys):
    assert main([str(checkpoints / "fcn.safetensors"), "--limit", "1", "--size", f"{H},{W}"]) == 2
    assert "no APNB or AFNB (fusion none, context none)" in capsys.readouterr().err
    tiny = str(checkpoints / "tiny.safetensors")
    assert main([tiny, "--label", str(tmp_path / "l.png")]) == 2
    assert "--label goes with --image" in capsys.readouterr().err
    assert main([tiny, "--image", str(tmp_path / "a.png"), "--split", "val"]) == 2
    assert "--split choose a split; --image compares on one image" in capsys.readouterr().err
