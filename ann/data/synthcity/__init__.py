"""SynthCity: procedural street scenes in the Cityscapes label space (19 trainIds, 255 = ignore).

Built so that long-range context matters (the paper's claim, Sec. 1): road/sidewalk,
building/wall, vegetation/terrain, truck/bus/train and person/rider share their colour and
texture distributions within an image, so only geometry and neighbours separate them.
See docs/synthcity.md. (seed, split, index) fixes every byte of an image and its label.
"""

import numpy as np
import torch

from . import render as _render
from . import scene

SPLITS = {"train": None, "val": 500, "test": 500}  # train is unbounded: any index >= 0
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def _check(split: str, index: int, size: tuple[int, int]) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown SynthCity split {split!r}; valid: {', '.join(SPLITS)}")
    limit = SPLITS[split]
    if index < 0 or (limit is not None and index >= limit):
        raise IndexError(f"SynthCity {split} index {index} out of range (0..{limit or 'inf'})")
    width, height = size
    if width < 32 or height < 32:
        raise ValueError(f"SynthCity size {size} too small: width and height must be >= 32")


def render(
    seed: int, split: str, index: int, size: tuple[int, int] = (1024, 512)
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (image uint8 (H, W, 3) RGB, label uint8 (H, W) trainIds or 255); size = (W, H)."""
    _check(split, index, size)
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_IDS[split], index]))
    canvas = scene.build(rng, (int(size[0]), int(size[1])))
    image, label = _render.composite(canvas, rng)
    return _render.finish(image, rng), label


class SynthCity(torch.utils.data.Dataset):
    """Renders scenes on the fly; length defaults to 500 for val/test and is required for train."""

    def __init__(self, split="train", seed=0, size=(1024, 512), length=None, transform=None):
        if split not in SPLITS:
            raise ValueError(f"unknown SynthCity split {split!r}; valid: {', '.join(SPLITS)}")
        if length is None:
            if SPLITS[split] is None:
                raise ValueError("SynthCity train is an unbounded stream: pass length=")
            length = SPLITS[split]
        if SPLITS[split] is not None and length > SPLITS[split]:
            raise ValueError(f"SynthCity {split} has {SPLITS[split]} images, length={length} asked")
        self.split, self.seed, self.size = split, seed, tuple(size)
        self.length, self.transform = int(length), transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for SynthCity {self.split} of length {self.length}")
        image, label = render(self.seed, self.split, index, self.size)
        return self.transform(image, label) if self.transform else (image, label)
