"""Dilated ResNet backbones (paper Sec. 3.4; ANN-REFERENCE.md "Architecture as released").

The released code uses a deep stem (three 3x3 convs, 3->64->64->128) and removes the strides of
the last two stages (output stride 8), dilating layer3 by 2 and layer4 by 4, where the first block
of a dilated layer uses half the dilation. Stage1 is the stem before max pooling (stride 2),
Stage2..Stage5 are layer1..layer4. Module names follow torchvision's ResNet (plus `stem`), so
ImageNet and the authors' weights map onto them by renaming only the stem.
"""

from collections import OrderedDict

from torch import Tensor, nn

DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int, downsample) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int, downsample) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        # the stride sits on the 3x3 conv, as in the released (torchcv) ResNet
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def deep_stem() -> nn.Sequential:
    layers = []
    for name, (cin, cout, stride) in zip("123", [(3, 64, 2), (64, 64, 1), (64, 128, 1)], strict=True):
        layers += [
            (f"conv{name}", nn.Conv2d(cin, cout, 3, stride, 1, bias=False)),
            (f"bn{name}", nn.BatchNorm2d(cout)),
            (f"relu{name}", nn.ReLU(inplace=True)),
        ]
    return nn.Sequential(OrderedDict(layers))


def plain_stem() -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            bn1=nn.BatchNorm2d(64),
            relu1=nn.ReLU(inplace=True),
        )
    )


class DilatedResNet(nn.Module):
    """ResNet returning the five stage outputs [Stage1, ..., Stage5]."""

    def __init__(self, depth: int = 101, output_stride: int = 8, stem: str = "deep") -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth {depth} not supported; valid: {sorted(DEPTHS)}")
        # (stride, dilation) of layer3 and layer4 for each output stride
        dilations = {8: ((1, 2), (1, 4)), 16: ((2, 1), (1, 2)), 32: ((2, 1), (2, 1))}
        if output_stride not in dilations:
            raise ValueError(f"output stride {output_stride} not supported; valid: 8, 16, 32")
        if stem not in ("deep", "plain"):
            raise ValueError(f"unknown stem {stem!r}; valid: deep, plain")
        block = BasicBlock if depth < 50 else Bottleneck
        self.stem = deep_stem() if stem == "deep" else plain_stem()
        # ceil_mode as released: a 1024x2048 input gives 129x257 features at stride 8
        self.maxpool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.inplanes = 128 if stem == "deep" else 64
        blocks = DEPTHS[depth]
        self.layer1 = self._make_layer(block, 64, blocks[0], 1, 1)
        self.layer2 = self._make_layer(block, 128, blocks[1], 2, 1)
        self.layer3 = self._make_layer(block, 256, blocks[2], *dilations[output_stride][0])
        self.layer4 = self._make_layer(block, 512, blocks[3], *dilations[output_stride][1])
        stem_channels = self.stem[-2].num_features
        self.channels = (
            stem_channels,
            64 * block.expansion,
            128 * block.expansion,
            256 * block.expansion,
            512 * block.expansion,
        )

    def _make_layer(self, block, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        # first block of a dilated layer uses half the dilation (released convention)
        first_dilation = max(1, dilation // 2)
        layers = [block(self.inplanes, planes, stride, first_dilation, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, dilation, None) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        stage1 = self.stem(x)  # (B, 128, H/2, W/2)
        stage2 = self.layer1(self.maxpool(stage1))  # (B, 256, H/4, W/4)
        stage3 = self.layer2(stage2)  # (B, 512, H/8, W/8)
        stage4 = self.layer3(stage3)  # (B, 1024, H/8, W/8) at output stride 8
        stage5 = self.layer4(stage4)  # (B, 2048, H/8, W/8)
        return [stage1, stage2, stage3, stage4, stage5]
