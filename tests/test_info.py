"""`python -m ann.info`: parameter counts per part equal the network's own, the trainer's
provenance is shown, a converted checkpoint's note too, and a bad file does not stop the rest."""

import json
from collections import Counter

from ann.checkpoint import CheckpointMeta, save
from ann.cli.info import main
from ann.models import build_network, variant


def checkpoint(path, provenance, **config):
    net = build_network(variant("full", backbone="resnet18", head_channels=64, key_channels=32,
                                value_channels=32, **config))  # fmt: skip
    save(net, path, CheckpointMeta(net.config, provenance=provenance))
    return net


def test_counts_and_trainer_provenance(tmp_path, capsys):
    provenance = {
        "iterations": 8000, "batch_size": 16, "seed": 1, "wall_time_s": 420.0, "device": "NVIDIA H100",
        "torch": "2.11.0", "git_commit": "abc123", "data": {"dataset": "synthcity"},
        "metrics": {"miou": 0.7012}, "test_metrics": {"miou": 0.6951},
        "reproduce": "python -m ann.train ann-r18-synthcity --out runs/x",
    }  # fmt: skip
    net = checkpoint(tmp_path / "a.safetensors", provenance)
    assert main([str(tmp_path / "a.safetensors"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    expected = Counter()
    for name, parameter in net.named_parameters():
        expected[name.split(".")[0]] += parameter.numel()
    assert info["parameters"] == dict(expected)  # BN running statistics are not parameters
    assert set(info["dtypes"]) == {"F16", "I64"}  # fp16 weights, int64 BN batch counters
    assert main([str(tmp_path / "a.safetensors")]) == 0
    text = capsys.readouterr().out
    total = sum(p.numel() for p in net.parameters()) / 1e6
    assert f"parameters  {total:.2f} M: backbone" in text
    assert "pyramid_average (1, 3, 6, 8) (S = 110)" in text and "afnb (Stage4 into Stage5)" in text
    assert "val 70.1, test 69.5" in text and "8000 iterations of batch 16" in text and "7.0 min" in text
    assert "python -m ann.train ann-r18-synthcity --out runs/x" in text
    assert "first" not in text  # whole splits
    checkpoint(tmp_path / "b.safetensors", {**provenance, "data": {"dataset": "synthcity", "val_limit": 8}})
    assert main([str(tmp_path / "b.safetensors")]) == 0
    assert "val 70.1, test 69.5 (first 8 images of each split)" in capsys.readouterr().out


def test_converted_note_and_a_bad_file_among_good_ones(tmp_path, capsys):
    checkpoint(tmp_path / "c.safetensors", {"note": "converted from the authors' release"}, context="nb")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    argv = [str(tmp_path / "bad.safetensors"), str(tmp_path / "c.safetensors")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "bad.safetensors" in captured.err and "not a readable safetensors file" in captured.err
    assert "converted from the authors' release" in captured.out and "context     nb" in captured.out


def test_training_data_and_small_parts_in_words(tmp_path, capsys):
    provenance = {
        "iterations": 10, "batch_size": 2, "seed": 0, "wall_time_s": 30.0, "device": "cpu",
        "data": {"dataset": "synthcity", "synthcity_seed": 2, "synthcity_size": [32, 64],
                 "synthcity_train_images": 500},
        "metrics": {"miou": 0.0}, "test_metrics": {},
    }  # fmt: skip
    checkpoint(tmp_path / "s.safetensors", provenance)
    assert main([str(tmp_path / "s.safetensors")]) == 0
    text = capsys.readouterr().out
    # synthcity_size is (H, W); images are named W x H
    assert "on SynthCity city 2, 64x32 images, the first 500 train scenes, rendered once" in text
    assert "classifier 1.2 k" in text  # 1x1 conv 64 -> 19: 64 * 19 + 19 = 1235 parameters
    assert "val 0.0, test -" in text  # an mIoU of 0 is a result, a missing one is "-"
    folder = {**provenance, "data": {"dataset": "folder", "root": "/data/cracks"}}
    checkpoint(tmp_path / "f.safetensors", folder)
    assert main([str(tmp_path / "f.safetensors")]) == 0
    assert "on folder (/data/cracks), seed 0" in capsys.readouterr().out
