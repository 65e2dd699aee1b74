"""Export a checkpoint to ONNX, checked against PyTorch with onnxruntime (`python -m ann.deploy`).

The graph takes uint8 RGB images (B, 3, H, W), normalises them as the checkpoint says (the
`ann.inference.Normalization` module is part of the graph) and returns the logits (B, K, H, W):
a runtime needs nothing but the file. Its metadata holds the class names, palette,
normalisation and the sha256 of the source checkpoint.

The input size is fixed at export: the pyramid pooling bins of AFNB/APNB (paper Sec. 3.2) and the
random sampler's draws follow from the feature map's size, so the exporter specialises them.
Export once per deployment resolution (the app and `ann.predict` have no such limit).
"""

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ann.inference import Normalization

MIN_AGREEMENT = 0.999  # share of pixels whose argmax must match PyTorch's


class Deployed(nn.Module):
    """uint8 RGB -> logits, the checkpoint's normalisation included."""

    def __init__(self, model: nn.Module, normalization: dict) -> None:
        super().__init__()
        self.normalize, self.model = Normalization(normalization), model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(image))


@contextlib.contextmanager
def exporter_notices_filtered() -> Iterator[None]:
    """torch.onnx's exporter logs "torchvision is not installed. Skipping torchvision::nms" (and
    roi_align, ...) for ops this graph never uses, and copying the program warns that torch's own
    LeafSpec is deprecated: neither is the user's to act on. Those two alone are dropped."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")

    def not_torchvision(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")

    registration.addFilter(not_torchvision)
    try:
        with warnings.catch_warnings():
            leaf_spec = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
            warnings.filterwarnings("ignore", leaf_spec, FutureWarning)
            yield
    finally:
        registration.removeFilter(not_torchvision)


def export(model: nn.Module, out: Path, size: tuple[int, int], batch: int = 1) -> dict[str, str]:
    """Write the ONNX file of a loaded checkpoint (`ann.load`; temp file + rename); its metadata."""
    try:
        import onnx
    except ImportError as error:
        raise RuntimeError("ONNX export needs onnx and onnxscript: pip install '.[onnx]'") from error
    meta = model.meta
    width, height = size
    image = torch.zeros(batch, 3, height, width, dtype=torch.uint8)
    metadata = {
        "classes": json.dumps(meta.classes),
        "palette": json.dumps(meta.palette),
        "normalization": json.dumps(meta.normalization),
        "source_sha256": meta.sha256,
        "input": f"uint8 RGB ({batch}, 3, {height}, {width}); output: logits ({batch}, K, {height}, {width})",
    }
    tmp = out.with_name(out.name + ".tmp")
    try:
        with exporter_notices_filtered():
            program = torch.onnx.export(
                Deployed(model, meta.normalization).eval(), (image,), dynamo=True,
                input_names=["image"], output_names=["logits"], verbose=False,
            )  # fmt: skip
        proto = program.model_proto
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return metadata


def check(model: nn.Module, onnx_file: Path, seed: int = 0) -> dict[str, float]:
    """Logits of onnxruntime and PyTorch on one seeded random image of the exported size."""
    try:
        import onnxruntime
    except ImportError as error:
        raise RuntimeError(
            "the check needs onnxruntime (pip install '.[onnx]'), or pass --no-check"
        ) from error
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    ours = session.run(None, {"image": image})[0]
    with torch.no_grad():
        theirs = Deployed(model, model.meta.normalization).eval()(torch.from_numpy(image)).numpy()
    return {
        "max_abs_diff": float(np.abs(ours - theirs).max()),
        "argmax_agreement": float((ours.argmax(1) == theirs.argmax(1)).mean()),
    }
