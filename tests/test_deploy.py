"""ONNX export: the graph onnxruntime runs gives PyTorch's logits from uint8 input, carries the
checkpoint's classes and normalisation, keeps its fixed size, and a refused export writes nothing."""

import json
import logging
import warnings
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from ann.checkpoint import CheckpointMeta, load, save
from ann.cli.deploy import main
from ann.inference import preprocess
from ann.models.backbones import CAFFE_BGR_NORMALIZATION
from ann.models.network import build_network
from ann.models.sampling import SamplingConfig
from ann.training.config import load_config


def checkpoint(folder, sampling=None, normalization=None):
    torch.manual_seed(0)
    config = load_config("smoke").model
    if sampling:
        config = replace(config, sampling=sampling)
    net = build_network(config)
    for module in net.modules():
        if isinstance(module, nn.Conv2d) and module.weight.abs().sum() == 0:
            nn.init.normal_(module.weight, std=0.1)  # non-zero W: the attention is in the logits
    path = folder / "smoke.safetensors"
    meta = CheckpointMeta(net.eval().config, classes=[f"class {k}" for k in range(19)])
    if normalization:
        meta.normalization = normalization
    save(net, path, meta, dtype=torch.float32)
    return path


@pytest.mark.parametrize(
    "sampling, normalization",
    [(None, None), (SamplingConfig("pyramid_random", (1, 2, 3)), CAFFE_BGR_NORMALIZATION)],
)
def test_onnxruntime_matches_pytorch_on_uint8_images(tmp_path, sampling, normalization, capsys):
    source = checkpoint(tmp_path, sampling, normalization)
    out = tmp_path / "model.onnx"
    assert main([str(source), "--onnx", str(out), "--size", "96x64"]) == 0
    assert "argmax_agreement" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(7).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    logits = session.run(None, {"image": image.transpose(2, 0, 1)[None].copy()})[0]
    model = load(source)
    with torch.no_grad():
        expected = model(preprocess(image, model.meta.normalization)).numpy()
    assert logits.shape == (1, 19, 64, 96)
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["classes"])[3] == "class 3"
    assert json.loads(props["normalization"]) == model.meta.normalization
    assert props["source_sha256"] == model.meta.sha256
    with pytest.raises(Exception, match="(?i)dimension|shape"):  # the size is fixed at export
        session.run(None, {"image": np.zeros((1, 3, 64, 64), np.uint8)})


def test_refused_exports_write_nothing(tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main([str(tmp_path / "missing.safetensors"), "--onnx", str(out)]) == 2
    assert "missing.safetensors" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "x.safetensors"), "--onnx", str(out), "--size", "1024"])
    assert "WIDTHxHEIGHT" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bad_batch_and_onnx_folder_are_refused_before_exporting(tmp_path, capsys):
    source = checkpoint(tmp_path)
    with pytest.raises(SystemExit):
        main([str(source), "--onnx", str(tmp_path / "m.onnx"), "--batch", "0"])
    assert "--batch" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    assert main([str(source), "--onnx", str(tmp_path / "out"), "--size", "64x32", "--no-check"]) == 2
    assert "is a folder" in capsys.readouterr().err and list((tmp_path / "out").iterdir()) == []


def test_export_into_a_new_folder_says_what_it_wrote_and_nothing_else(tmp_path, capfd):
    """No exporter notices a user cannot act on: "torchvision is not installed" (logged for ops the
    graph never uses) and torch's deprecated LeafSpec (a FutureWarning from copying the program)."""
    out = tmp_path / "exports" / "v1" / "model.onnx"
    source = checkpoint(tmp_path)
    logged = logging.Handler()  # torch's handler writes to the stderr of its import, not this test's
    logged.emit = lambda record: messages.append(record.getMessage())
    messages = []
    logging.getLogger("torch.onnx").addHandler(logged)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # shown even where pytest or an earlier export saw them once
            assert main([str(source), "--onnx", str(out), "--size", "64x32", "--no-check"]) == 0
    finally:
        logging.getLogger("torch.onnx").removeHandler(logged)
    assert onnx.load(str(out)).graph.input[0].name == "image"
    printed = capfd.readouterr()
    assert printed.out.splitlines() == [f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)"]
    assert printed.err == "" and messages == [] and [str(w.message) for w in caught] == []
