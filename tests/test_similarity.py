"""Linear CKA of stage features (ann.analysis.similarity, python -m ann.stage_similarity): checked
against the kernel form on small data, its invariances, and the command line on tiny checkpoints."""

import json

import pytest
import torch

from ann.analysis.similarity import (
    Alignment,
    comparison_backbone,
    initial_seed,
    linear_cka,
    paired_positions,
    stage_alignment,
)
from ann.cli import stage_similarity as cli
from tests.conftest_app import tiny_config

pytest_plugins = ("tests.conftest_app",)  # tiny_checkpoints


def kernel_cka(x, y):
    """CKA as defined, from the centred N x N Gram matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))."""
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h  # noqa: E741
    return float((k * l).sum() / torch.sqrt((k * k).sum() * (l * l).sum()))


def test_the_feature_form_equals_the_kernel_form_and_streams():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=g, dtype=torch.float64)
    y = x @ torch.randn(5, 7, generator=g, dtype=torch.float64) + torch.randn(
        60, 7, generator=g, dtype=torch.float64
    )
    expected = kernel_cka(x, y)
    assert linear_cka(x, y) == pytest.approx(expected, abs=1e-12)
    streamed = Alignment()
    for rows in (slice(0, 13), slice(13, 40), slice(40, 60)):  # images of different sizes
        streamed.add(x[rows].float(), y[rows].float())
    assert streamed.count == 60 and streamed.cka() == pytest.approx(expected, abs=1e-6)


def test_rotation_scale_and_shift_leave_it_at_one_unrelated_features_near_zero():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 8, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert linear_cka(x, 3 * x @ rotation + 5) == pytest.approx(1.0, abs=1e-6)
    assert linear_cka(x, torch.randn(4000, 6, generator=g)) < 0.01
    assert linear_cka(x, x[:, :4]) == pytest.approx(linear_cka(x[:, :4], x), abs=1e-9)  # symmetric
    assert 0.3 < linear_cka(x, x[:, :4]) < 0.9  # half the directions shared


def test_a_constant_map_aligns_with_nothing_and_rows_must_pair():
    assert linear_cka(torch.ones(10, 3), torch.randn(10, 2)) == 0.0
    with pytest.raises(ValueError, match="10 rows against 9"):
        linear_cka(torch.randn(10, 3), torch.randn(9, 3))


def test_the_larger_map_is_pooled_to_the_smaller_by_place():
    a = torch.arange(16.0).reshape(1, 1, 4, 4)
    b = torch.zeros(1, 2, 2, 2)
    x, y = paired_positions(a, b)
    assert x.shape == (4, 1) and y.shape == (4, 2)
    assert x[:, 0].tolist() == [2.5, 4.5, 10.5, 12.5]  # the 2x2 blocks' means, row-major as b's cells


def test_stage_alignment_compares_the_maps_both_have():
    g = torch.Generator().manual_seed(2)
    maps = [
        {"stage1": torch.randn(1, 4, 6, 6, generator=g), "apnb": torch.randn(1, 4, 3, 3, generator=g)}
        for _ in range(2)
    ]
    pairs = [(m, {"stage1": 2 * m["stage1"]}) for m in maps]
    result = stage_alignment(pairs)
    assert list(result) == ["stage1"]
    assert result["stage1"]["positions"] == 72 and result["stage1"]["cka"] == pytest.approx(1.0, abs=1e-6)
    assert result["stage1"]["channels"] == (4, 4) and result["stage1"]["size_hw"] == (6, 6)
    with pytest.raises(ValueError, match="share no named feature map"):
        stage_alignment([({"a": torch.zeros(1, 1, 2, 2)}, {"b": torch.zeros(1, 1, 2, 2)})])


def test_cli_a_checkpoint_against_itself_is_one_and_against_untrained_less(
    tiny_checkpoints, tmp_path, capsys
):
    tiny = str(tiny_checkpoints / "tiny.safetensors")
    same, fresh = tmp_path / "same.json", tmp_path / "fresh.json"
    common = ["--limit", "2", "--size", "64,128"]
    assert cli.main([tiny, "--other", tiny, *common, "--json", str(same)]) == 0
    assert cli.main([tiny, "--other", "untrained", *common, "--json", str(fresh)]) == 0
    out = capsys.readouterr().out
    assert out.count("stage5") == 2 and "against untrained" in out
    itself, untrained = json.loads(same.read_text()), json.loads(fresh.read_text())
    assert list(itself["stages"]) == ["stage1", "stage2", "stage3", "stage4", "stage5"]
    assert all(row["cka"] == pytest.approx(1.0, abs=1e-5) for row in itself["stages"].values())
    assert itself["stages"]["stage1"]["positions"] == 2 * 32 * 64 and untrained["limit"] == 2
    # the tiny model is a seed-0 initialisation: "untrained" must be another one, not its twin
    assert all(row["cka"] < 0.99 for row in untrained["stages"].values())


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--other", "nowhere.safetensors"], "no such checkpoint: nowhere.safetensors"),
        (["--size", "64"], "--size takes two numbers"),
    ],
)
def test_cli_refuses_in_one_line(tiny_checkpoints, capsys, flags, says):
    status = cli.main([str(tiny_checkpoints / "fcn.safetensors"), "--limit", "1", "--size", "64,128", *flags])
    err = capsys.readouterr().err
    assert status == 2 and says in err and err.count("\n") == 1


def test_initial_is_the_backbone_the_run_began_from(tmp_path):
    """The trainer seeds, then builds the network (ann.training.loop.build_run): `--other initial`
    rebuilds exactly that backbone from the seed in the checkpoint's provenance."""
    from ann.checkpoint import CheckpointMeta, load, save
    from ann.models import build_network
    from ann.training.build import seed_everything

    seed_everything(3)
    began = build_network(tiny_config()).eval()
    save(began, tmp_path / "run.safetensors", CheckpointMeta(began.config, provenance={"seed": 3}))
    backbone, _ = comparison_backbone(load(tmp_path / "run.safetensors"), "initial")
    for name, value in began.backbone.state_dict().items():
        torch.testing.assert_close(backbone.state_dict()[name], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="records no training seed"):
        initial_seed({})
    with pytest.raises(ValueError, match="started from r101.pth"):
        initial_seed({"seed": 0, "backbone_weights": "r101.pth"})
