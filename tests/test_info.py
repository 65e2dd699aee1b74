"""`python -m ann.info`: parameter counts per part equal the network's own, the trainer's
provenance is shown, a converted checkpoint's note too, and a bad file does not stop the rest."""

import json
from collections import Counter

from ann.checkpoint import CheckpointMeta, save
from ann.info import main
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
