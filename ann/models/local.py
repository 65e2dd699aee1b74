"""A control network that sees only a 9x9 neighbourhood (SynthCity's context test, issue 3).

Four 3x3 convs at full resolution (receptive field 3, 5, 7, 9 pixels) and a 1x1 conv give the
five stages; with a 1x1 bottleneck, no context block and no auxiliary head, every prediction
depends on a 9x9 window of the input only. Where SynthCity's class pairs share their appearance,
this model cannot tell them apart, which is what the dataset is designed to show.
"""

from torch import Tensor, nn


def conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class LocalNet(nn.Module):
    """Five stages at stride 1, receptive field 9x9 at Stage4 and Stage5."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.channels = (width // 2, width, width, 2 * width, 2 * width)
        c = self.channels
        self.stages = nn.ModuleList(
            [conv_bn_relu(3, c[0], 3), conv_bn_relu(c[0], c[1], 3), conv_bn_relu(c[1], c[2], 3)]
            + [conv_bn_relu(c[2], c[3], 3), conv_bn_relu(c[3], c[4], 1)]
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        stages = []
        for stage in self.stages:
            x = stage(x)
            stages.append(x)
        return stages
