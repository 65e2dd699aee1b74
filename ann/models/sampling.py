"""Key/value sampling modules of APNB and AFNB (paper Sec. 3.2, Fig. 4, Table 7).

A sampler turns a projected key or value map (B, C, H, W) into S anchors (B, C, S). It has no
parameters, so the method and the pyramid sizes of a trained model can be switched at inference
time. Anchors are ordered level by level, each level row-major: for (1, 3, 6, 8), index 0 is the
1x1 level, 1..9 the 3x3 level, 10..45 the 6x6 level and 46..109 the 8x8 level.

Methods (Table 7, the METHODS table): random, max, average take one size n (S = n^2); their
pyramid_ forms take any tuple of sizes (S = sum n^2); the random ones draw positions from a seed.
`identity` keeps all N positions as anchors, which turns APNB into the standard non-local block
(NB) and AFNB into FNB: one attention code path for all four blocks. Whether a method fits a
feature map is one check, `misfit`, which the sampler, the analyses and the app ask.
"""

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Method:
    """What a sampling method takes: `sizes` "none" (every position is an anchor), "one" n (S = n^2)
    or "pyramid" (any tuple of n, S = sum n^2); `seeded` if it draws positions, which its seed picks."""

    sizes: str
    seeded: bool


METHODS = {
    "identity": Method("none", seeded=False),
    "random": Method("one", seeded=True),
    "max": Method("one", seeded=False),
    "average": Method("one", seeded=False),
    "pyramid_random": Method("pyramid", seeded=True),
    "pyramid_max": Method("pyramid", seeded=False),
    "pyramid_average": Method("pyramid", seeded=False),
}


@dataclass(frozen=True)
class SamplingConfig:
    method: str = "pyramid_average"
    sizes: tuple[int, ...] = (1, 3, 6, 8)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown sampling method {self.method!r}; valid: {', '.join(METHODS)}")
        object.__setattr__(self, "sizes", tuple(int(n) for n in self.sizes))
        takes = METHODS[self.method].sizes
        if takes == "none":
            return
        if not self.sizes or any(n < 1 for n in self.sizes):
            raise ValueError(f"pyramid sizes must be positive integers, got {self.sizes}")
        if takes == "one" and len(self.sizes) != 1:
            raise ValueError(f"{self.method!r} sampling takes one size n (S = n^2), got {self.sizes}")

    @property
    def num_anchors(self) -> int | None:
        """S, or None for identity sampling, where S = N depends on the input."""
        return None if self.method == "identity" else sum(n * n for n in self.sizes)

    @property
    def kind(self) -> str:
        return self.method.removeprefix("pyramid_")


def describe(sampling: SamplingConfig) -> str:
    """The sampling in words, with its S, as `ann.info` and the app show it."""
    if sampling.method == "identity":
        return "identity (all positions, S = N)"
    seed = f", seed {sampling.seed}" if METHODS[sampling.method].seeded else ""
    return f"{sampling.method} {sampling.sizes} (S = {sampling.num_anchors}{seed})"


# the eight rows of Table 7 in the paper's order; pyramid average (1, 3, 6, 8) is the paper's choice
TABLE7 = (
    SamplingConfig("random", (15,)),
    SamplingConfig("max", (15,)),
    SamplingConfig("average", (15,)),
    SamplingConfig("pyramid_random", (1, 2, 3, 6)),
    SamplingConfig("pyramid_max", (1, 2, 3, 6)),
    SamplingConfig("pyramid_average", (1, 2, 3, 6)),
    SamplingConfig("pyramid_average", (1, 3, 6, 8)),
    SamplingConfig("pyramid_average", (1, 4, 8, 12)),
)


def misfit(config: SamplingConfig, feature_hw: tuple[int, int], whose: str = "the") -> str | None:
    """Why `config` does not fit an H x W feature map, or None: random sampling cannot draw n^2
    distinct positions from fewer, and a pooling grid finer than the map repeats cells. The message
    calls the map `whose` feature map ("the", "this image's")."""
    if config.method == "identity":
        return None
    H, W = (int(v) for v in feature_hw)
    n = max(config.sizes)
    if config.kind == "random" and n * n > H * W:
        return (
            f"random sampling with n = {n} needs {n * n} distinct positions; "
            f"{whose} {H}x{W} feature map has {H * W}"
        )
    if config.kind != "random" and n > min(H, W):
        return f"pyramid size {n} is finer than {whose} {H}x{W} feature map"
    return None


@dataclass
class AnchorGeometry:
    """Where each anchor comes from, in cells of the feature map that was sampled.

    level: (S,) index into the pyramid sizes; boxes: (S, 4) as (y0, x0, y1, x1), end-exclusive,
    the exact rectangle the adaptive pooling bin covers (bins overlap when n does not divide H).
    """

    level: Tensor
    boxes: Tensor
    sizes: tuple[int, ...]
    feature_hw: tuple[int, int]

    def to_pixels(self, image_hw: tuple[int, int]) -> Tensor:
        """Boxes scaled to an image of size image_hw (float, end-exclusive)."""
        sy = image_hw[0] / self.feature_hw[0]
        sx = image_hw[1] / self.feature_hw[1]
        return self.boxes.float() * torch.tensor([sy, sx, sy, sx])


def adaptive_bins(length: int, n: int) -> list[tuple[int, int]]:
    """The [start, end) bins of torch's adaptive pooling of `length` cells into n outputs."""
    return [((i * length) // n, -((-(i + 1) * length) // n)) for i in range(n)]


class Sampler(nn.Module):
    """Parameter-free sampling of anchors from a (B, C, H, W) map; see the module docstring."""

    def __init__(self, config: SamplingConfig = SamplingConfig()) -> None:
        super().__init__()
        self.config = config
        self._draws = 0  # random draws made in training mode, so each step samples afresh

    def extra_repr(self) -> str:
        return f"method={self.config.method}, sizes={self.config.sizes}, seed={self.config.seed}"

    @property
    def draws(self) -> int:
        """Random draws made in training mode: a training run's state (last.pt), so that a resumed
        run draws on instead of again. Not a weight: a checkpoint file leaves it out."""
        return self._draws

    @draws.setter
    def draws(self, count: int) -> None:
        self._draws = int(count)

    def forward(self, x: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        if self.config.method == "identity":
            return x.flatten(2)  # (B, C, N)
        if self.config.kind == "random":
            index = self.random_index(H, W, x.device)
            return x.flatten(2)[:, :, index]  # (B, C, S)
        pool = F.adaptive_avg_pool2d if self.config.kind == "average" else F.adaptive_max_pool2d
        return torch.cat([pool(x, n).flatten(2) for n in self.config.sizes], dim=2)  # (B, C, S)

    def pair(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Key and value maps (same H, W) sampled at the same anchors: one random draw for both,
        or attention weight s (from the key at one position) would scale another position's value."""
        if self.config.kind != "random":
            return self(key), self(value)
        index = self.random_index(*key.shape[-2:], key.device)
        return key.flatten(2)[:, :, index], value.flatten(2)[:, :, index]  # (B, C, S) each

    def random_index(self, H: int, W: int, device: torch.device) -> Tensor:
        """n^2 distinct positions per level, as numpy.random.choice in the released code.

        In eval mode the draw depends only on (seed, H, W), so a fixed seed gives a fixed set of
        anchors for the app; in training mode every call draws anew, still reproducibly.
        """
        draw = self._draws if self.training else 0
        if self.training:
            self._draws += 1
        key = f"{self.config.seed},{H},{W},{draw}".encode()
        # numpy, not torch.randperm: the draw is then a constant to torch.export (ONNX, ann.deploy)
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:7]))
        reason = misfit(self.config, (H, W))  # random: n^2 distinct positions cannot come from fewer
        if reason is not None:
            raise ValueError(reason)
        N = H * W
        levels = [rng.choice(N, n * n, replace=False) for n in self.config.sizes]
        return torch.from_numpy(np.concatenate(levels)).to(device)

    def anchors(self, H: int, W: int) -> AnchorGeometry:
        """The geometry of the anchors this sampler takes from an H x W map."""
        if self.config.method == "identity":
            ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
            ys, xs = ys.flatten(), xs.flatten()
            boxes = torch.stack([ys, xs, ys + 1, xs + 1], dim=1)
            return AnchorGeometry(torch.zeros(H * W, dtype=torch.long), boxes, (), (H, W))
        if self.config.kind == "random":
            return self._random_geometry(H, W)
        levels, boxes = [], []
        for level, n in enumerate(self.config.sizes):
            for y0, y1 in adaptive_bins(H, n):
                for x0, x1 in adaptive_bins(W, n):
                    levels.append(level)
                    boxes.append((y0, x0, y1, x1))
        return AnchorGeometry(torch.tensor(levels), torch.tensor(boxes), self.config.sizes, (H, W))

    def _random_geometry(self, H: int, W: int) -> AnchorGeometry:
        was_training, self.training = self.training, False
        index = self.random_index(H, W, torch.device("cpu"))
        self.training = was_training
        ys, xs = index // W, index % W
        level = torch.cat([torch.full((n * n,), i) for i, n in enumerate(self.config.sizes)])
        boxes = torch.stack([ys, xs, ys + 1, xs + 1], dim=1)
        return AnchorGeometry(level, boxes, self.config.sizes, (H, W))
