"""Head-only ablations on a frozen backbone: the feature cache (ann.training.feature_cache), head
training on it (ann.training.heads) and its command line (python -m ann.heads), on a tiny
ResNet-18 ANN at 128x64 SynthCity scenes."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import ann
from ann.checkpoint import CheckpointMeta, save
from ann.cli import heads as cli
from ann.data.synthcity import render
from ann.inference import preprocess
from ann.models import build_network, variant
from ann.training import feature_cache
from ann.training.config import load_config
from ann.training.feature_cache import CacheError, build_cache, open_cached
from ann.training.heads import HeadTrainingError, train_head

SIZE_HW = (64, 128)
COUNTS = {"train": 6, "val": 2, "test": 3}
SMALL = [
    "model.head_channels=32", "model.key_channels=16", "model.value_channels=16", "model.aux_channels=16",
    "train.batch_size=2", "train.iterations=6", "train.log_every=1", "train.val_every=3",
    "train.checkpoint_every=2",
]  # fmt: skip


def tiny_checkpoint(path, seed=0):
    torch.manual_seed(seed)
    config = variant("full", backbone="resnet18", output_stride=16, head_channels=32, key_channels=16,
                     value_channels=16)  # fmt: skip
    model = build_network(config).eval()
    provenance = {"data": {"dataset": "synthcity", "synthcity_seed": 0, "synthcity_size": list(SIZE_HW)}}
    save(model, path, CheckpointMeta(model.config, provenance=provenance))
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("heads")
    checkpoint = tiny_checkpoint(folder / "tiny.safetensors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(feature_cache, "SHARD", 4)  # train: two shards
        build_cache(checkpoint, folder / "cache", COUNTS)
    return checkpoint, folder / "cache"


def info_rows(path) -> dict[str, str]:
    from ann.checkpoint import read_meta
    from ann.cli.info import provenance_rows

    return dict(provenance_rows(read_meta(path).provenance))


def head_config(*overrides):
    return load_config("ann-r18-synthcity-cpu", [*SMALL, *overrides])


def test_cached_features_are_the_backbones_on_the_rendered_scenes(cache):
    checkpoint, folder = cache
    model = ann.load(checkpoint)
    split = open_cached(folder, "train")
    assert len(split) == 6 and sorted(p.name for p in folder.glob("train-*")) == [
        "train-00000.safetensors",
        "train-00004.safetensors",
    ]
    image, label = render(0, "train", 5, size=(SIZE_HW[1], SIZE_HW[0]))
    with torch.no_grad():
        stages = model.backbone(preprocess(image, model.meta.normalization))
    cached, labels = split.batch(torch.tensor([5]))
    for s in (3, 4):
        torch.testing.assert_close(cached[s], stages[s], atol=2e-2, rtol=1e-2)  # fp16 on disk
    assert np.array_equal(labels[0].numpy(), label)


def test_a_stopped_build_writes_only_the_missing_shard(cache):
    checkpoint, folder = cache
    kept, lost = folder / "train-00000.safetensors", folder / "train-00004.safetensors"
    before, stamp = load_file(str(lost)), kept.stat().st_mtime_ns
    lost.unlink()
    with pytest.raises(CacheError, match="not cached.*train-00004"):
        open_cached(folder, "train")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(feature_cache, "SHARD", 4)
        build_cache(checkpoint, folder, COUNTS)
    assert kept.stat().st_mtime_ns == stamp
    assert all(torch.equal(before[k], v) for k, v in load_file(str(lost)).items())


def test_another_checkpoint_cannot_add_to_a_cache(cache, tmp_path):
    _, folder = cache
    other = tiny_checkpoint(tmp_path / "other.safetensors", seed=1)
    with pytest.raises(CacheError, match="caches tiny.safetensors"):
        build_cache(other, folder, COUNTS)


def test_head_trains_on_the_cache_and_joins_the_frozen_backbone(cache, tmp_path):
    checkpoint, folder = cache
    config = head_config("model.fusion=none", "model.context=apnb")
    metrics = train_head(
        config, folder, tmp_path / "apnb", command="ran", log=lambda line: None, reproduce="again"
    )
    assert metrics["iterations"] == 6 and [it for it, _ in metrics["val_curve"]] == [3, 6]
    assert (metrics["command"], metrics["reproduce"]) == ("ran", "again")
    test = metrics["test_metrics"]
    assert 0 <= test["miou"] <= 1 and len(test["per_class_iou"]) == 19
    assert json.loads((tmp_path / "apnb" / "metrics.json").read_text())["test_metrics"] == test
    trained, source = ann.load(tmp_path / "apnb" / "model.safetensors"), ann.load(checkpoint)
    assert (trained.config.fusion, trained.config.context) == ("none", "apnb")
    for (name, a), b in zip(
        trained.backbone.state_dict().items(), source.backbone.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name  # the backbone is the cache's, untouched
    assert not (tmp_path / "apnb" / "state.pt").exists()
    shown = info_rows(tmp_path / "apnb" / "model.safetensors")  # what ann.info prints of it
    assert (
        "head-only training on a frozen backbone" in shown["protocol"]
        and "tiny.safetensors" in shown["protocol"]
    )
    assert "6 iterations of batch 2" in shown["trained"] and "the first 6 train scenes" in shown["trained"]
    assert shown["mIoU"].startswith(
        f"val {100 * metrics['metrics']['miou']:.1f}, test {100 * test['miou']:.1f}"
    )


def test_a_resumed_head_run_ends_where_an_uninterrupted_one_does(cache, tmp_path):
    _, folder = cache
    config = head_config("model.fusion=none", "model.context=nb")
    whole = train_head(config, folder, tmp_path / "whole", log=lambda line: None)

    def stop_at_five(line):
        if line.startswith("heads 5/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_head(config, folder, tmp_path / "cut", log=stop_at_five)
    assert torch.load(tmp_path / "cut" / "state.pt", weights_only=True)["iteration"] == 4
    with pytest.raises(HeadTrainingError, match="--resume continues it"):
        train_head(config, folder, tmp_path / "cut", log=lambda line: None)
    resumed = train_head(config, folder, tmp_path / "cut", resume=True, log=lambda line: None)
    assert resumed["test_metrics"] == whole["test_metrics"] and resumed["val_curve"] == whole["val_curve"]
    a, b = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("whole", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_refuses_a_network_the_cache_cannot_feed_in_one_line(cache, tmp_path, capsys):
    _, folder = cache
    command = ["train", "ann-r18-synthcity-cpu", "--features", str(folder), "--out", str(tmp_path / "x")]
    status = cli.main([*command, "--set", "model.output_stride=8"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "output stride 16" in err and "output stride 8" in err
    assert (
        cli.main(
            [
                "train",
                "fcn-r18-synthcity-cpu",
                "--features",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "y"),
            ]
        )
        == 2
    )
    assert "no feature cache here" in capsys.readouterr().err


def test_the_command_to_reproduce_a_head_drops_resume_and_the_interpreter_path():
    args = cli.parse_args(["train", "ann-r18-synthcity-cpu", "--features", "runs/f", "--out", "runs/h x",
                           "--set", "model.context=nb", "--resume"])  # fmt: skip
    assert cli.reproduce(args) == (
        "python -m ann.heads train ann-r18-synthcity-cpu --features runs/f --out 'runs/h x'"
        " --set model.context=nb"
    )
