"""Convert the authors' released checkpoints (openseg.pytorch's ANN) into our checkpoint format
(`python -m ann.convert --from original IN.pth --out OUT.safetensors`, the app's uploads of a .pth).

Their file is a torch pickle {'config_dict', 'state_dict', 'runner_state'} (or a bare state dict),
names possibly prefixed by 'module.' (DataParallel). It is read with weights_only=True only: a
pickle that would run code is refused. Every entry is renamed by one table of prefix rules
(RULES) onto the full ANN with a deep-stem ResNet-101 at output stride 8; anything missing,
unexpected or mis-shaped is named in the error, in the authors' names. Their input convention
(BGR, 0..255, mean (102.98, 115.95, 122.77), std 1; align_corners=True) goes into the metadata.
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ann.checkpoint import CheckpointMeta, file_sha256, save
from ann.data.layouts import LAYOUTS
from ann.models.backbones import CAFFE_BGR_NORMALIZATION
from ann.models.network import ANN, build_network, variant
from ann.models.pretrained import CheckpointError, read_pth, short_list

# (their prefix, our prefix); None drops the entry after a check (SHARED). Whole dotted
# components only: "context.1.0." never matches "context.1.0x".
RULES: tuple[tuple[str, str | None], ...] = (
    ("backbone.prefix.", "backbone.stem."),  # deep stem: conv1/bn1/conv2/bn2/conv3/bn3
    ("backbone.layer1.", "backbone.layer1."),
    ("backbone.layer2.", "backbone.layer2."),
    ("backbone.layer3.", "backbone.layer3."),
    ("backbone.layer4.", "backbone.layer4."),
    ("fusion.stages.0.f_key.0.", "fusion.attentions.0.key.0."),
    ("fusion.stages.0.f_key.1.0.", "fusion.attentions.0.key.1."),  # BNReLU's BN
    ("fusion.stages.0.f_query.0.", "fusion.attentions.0.query.0."),
    ("fusion.stages.0.f_query.1.0.", "fusion.attentions.0.query.1."),
    ("fusion.stages.0.f_value.", "fusion.attentions.0.value."),
    ("fusion.stages.0.W.", "fusion.attentions.0.W."),
    ("fusion.conv_bn_dropout.0.", "fusion.fuse.0."),
    ("fusion.conv_bn_dropout.1.", "fusion.fuse.1."),  # plain BN: no ReLU in AFNB
    ("context.0.", "bottleneck.0."),
    ("context.1.0.", "bottleneck.1."),
    ("context.2.stages.0.f_key.0.", "context.attention.key.0."),
    ("context.2.stages.0.f_key.1.0.", "context.attention.key.1."),
    ("context.2.stages.0.f_query.", None),  # the same module as f_key in their APNB
    ("context.2.stages.0.f_value.", "context.attention.value."),
    ("context.2.stages.0.W.", "context.attention.W."),
    ("context.2.conv_bn_dropout.0.", "context.fuse.0."),
    ("context.2.conv_bn_dropout.1.0.", "context.fuse.1."),
    ("cls.", "classifier."),
    ("dsn.0.", "aux_head.0."),
    ("dsn.1.0.", "aux_head.1."),
    ("dsn.3.", "aux_head.4."),  # dsn.2 is Dropout2d, as our aux_head.3
)
# dropped prefix -> the prefix whose tensors it must equal
SHARED = {"context.2.stages.0.f_query.": "context.2.stages.0.f_key."}

ORIGINAL_NORMALIZATION = CAFFE_BGR_NORMALIZATION  # their input convention (ANN-REFERENCE.md)
PROVENANCE_NOTE = "converted from the authors' release"


class ConvertError(CheckpointError):
    """A file that is not a convertible checkpoint; the message names the file and the problem."""


def rename(name: str) -> str | None:
    """Our name for one of their names; None if dropped; KeyError if no rule matches."""
    for theirs, ours in RULES:
        if name.startswith(theirs):
            return None if ours is None else ours + name[len(theirs) :]
    raise KeyError(name)


def original_name(name: str) -> str:
    """Their name for one of ours (the inverse of `rename`), for error messages."""
    for theirs, ours in RULES:
        if ours is not None and name.startswith(ours):
            return theirs + name[len(ours) :]
    return name


def read_original(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """(state dict without 'module.' prefixes, runner_state or {}) of their .pth, weights only."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: no such file")
    with path.open("rb") as file:
        header = file.read(9)
    if header[8:9] == b"{":  # a safetensors file: 8-byte header length, then the header's JSON
        raise ConvertError(
            f"{path}: a safetensors file, not the authors' .pth; if it is ours, ann.load reads it"
        )
    try:
        return read_pth(path)
    except CheckpointError as error:
        raise ConvertError(str(error)) from error


def convert_state(state: dict[str, Tensor], source: str) -> tuple[dict[str, Tensor], int]:
    """(our state dict, num_classes) from their state dict; errors name entries in their names."""
    if "cls.weight" not in state:
        raise ConvertError(f"{source}: missing 'cls.weight' (the classifier), so not an ANN checkpoint")
    num_classes = state["cls.weight"].shape[0]
    ours, unexpected = {}, []
    for name, tensor in state.items():
        try:
            new = rename(name)
        except KeyError:
            unexpected.append(name)
            continue
        if new is None:
            check_shared(state, name, source)
        else:
            ours[new] = tensor
    with torch.device("meta"):
        expected = build_network(original_config(num_classes)).state_dict()
    missing = [original_name(k) for k in expected if k not in ours]
    unexpected += [original_name(k) for k in ours if k not in expected]
    wrong = [
        f"{original_name(k)} {tuple(ours[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in ours and ours[k].shape != v.shape
    ]
    problems = [
        f"{label} {len(items)} entries: {short_list(sorted(items), 8)}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong))
        if items
    ]
    if problems:
        raise ConvertError(f"{source}: not the authors' ANN ResNet-101 checkpoint: " + "; ".join(problems))
    return ours, num_classes


def check_shared(state: dict[str, Tensor], name: str, source: str) -> None:
    """A dropped entry must equal its twin: APNB's f_query is f_key in the released code."""
    for dropped, kept in SHARED.items():
        if name.startswith(dropped):
            twin = kept + name[len(dropped) :]
            if twin not in state:
                raise ConvertError(f"{source}: {name} has no {twin} to share with")
            if state[twin].shape != state[name].shape or not torch.equal(state[twin], state[name]):
                raise ConvertError(
                    f"{source}: {name} differs from {twin}; the released APNB shares one query/key "
                    "conv, so this is not a checkpoint of that network"
                )


def original_config(num_classes: int):
    """The released network: full ANN, deep-stem ResNet-101, output stride 8."""
    return variant(
        "full",
        backbone="resnet101",
        stem="deep",
        output_stride=8,
        num_classes=num_classes,
        pretrained=False,
        align_corners=True,
    )


def build_converted(tensors: dict[str, Tensor], num_classes: int) -> ANN:
    """The network holding `tensors`, built on the meta device: no time spent on initialisation."""
    with torch.device("meta"):
        model = build_network(original_config(num_classes))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()},
                          assign=True)  # fmt: skip
    return model.eval()


def class_names(num_classes: int) -> tuple[list[str], list[list[int]]]:
    """The names and colours of the one dataset with `num_classes` classes (19: Cityscapes, 150:
    ADE20K, 60: PASCAL Context, ...): the paper evaluates on each, and their counts differ. Numbered
    names and a fixed palette when no dataset has that count."""
    matches = {(d.class_names, d.palette) for d in LAYOUTS.values() if d.num_classes == num_classes}
    if len(matches) == 1:
        names, palette = matches.pop()
        return list(names), [list(c) for c in palette]
    generator = torch.Generator().manual_seed(num_classes)
    palette = torch.randint(0, 256, (num_classes, 3), generator=generator).tolist()
    return [f"class {i}" for i in range(num_classes)], palette


def numpy_scalar(value: object) -> object:
    """json.dumps' fallback: a numpy scalar as the Python number it holds."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not plain data")


def convert(source: str | Path, out: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Convert one of their checkpoints; returns the written path."""
    source = Path(source)
    if Path(out).resolve() == source.resolve():
        raise ConvertError(f"{out}: --out is the source file; writing it would destroy their checkpoint")
    state, runner_state = read_original(source)
    tensors, num_classes = convert_state(state, str(source))
    model = build_converted(tensors, num_classes)
    classes, palette = class_names(num_classes)
    provenance = {
        "note": PROVENANCE_NOTE,
        "source": source.name,
        "source_sha256": file_sha256(source),
        "converter": "python -m ann.convert --from original",
    }
    try:  # iterations and best score of their run, when it is plain data (numpy scalars as numbers)
        provenance["runner_state"] = json.loads(json.dumps(runner_state, default=numpy_scalar))
    except (TypeError, ValueError):
        pass
    meta = CheckpointMeta(model.config, classes, palette, dict(ORIGINAL_NORMALIZATION), provenance)
    return save(model, out, replace(meta, config=model.config), dtype=dtype)
