"""The analysis tabs (stage features, explanations, efficiency, class context, APNB vs NB;
docs/app_analysis.md) and what they share: image helpers, the SynthCity split the split analyses
read, and a small cache of their results. Maps arrive from ann.analysis.features already scaled to [0, 1];
here they only get a colourblind-safe colormap and a display size."""

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from app.errors import UserError
from app.session import processing_size

COLORMAPS = ("viridis", "cividis", "magma")  # perceptually uniform and colourblind-safe
DISPLAY_SIDE = 320  # longer side of gallery images, pixels
SPLITS = ("test", "val")  # SynthCity's labelled splits (train is an unbounded stream)


def as_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def colorize(unit, cmap: str = "viridis") -> np.ndarray:
    """(H, W) in [0, 1] -> uint8 (H, W, 3) with a colormap; (3, H, W) in [0, 1] -> uint8 RGB."""
    if cmap not in COLORMAPS:
        raise ValueError(f"unknown colormap {cmap!r}; valid: {', '.join(COLORMAPS)}")
    values = np.clip(as_numpy(unit), 0, 1)
    if values.ndim == 3:
        return (values.transpose(1, 2, 0) * 255).round().astype(np.uint8)
    return (colormaps[cmap](values)[..., :3] * 255).round().astype(np.uint8)


def display_size(image_hw: tuple[int, int], side: int = DISPLAY_SIDE) -> tuple[int, int]:
    """(H, W) with the image's aspect ratio and the longer side `side`."""
    H, W = image_hw
    scale = side / max(H, W)
    return max(1, round(H * scale)), max(1, round(W * scale))


def resize(rgb: np.ndarray, size_hw: tuple[int, int], nearest: bool = True) -> np.ndarray:
    """Feature cells stay visible as blocks (nearest); images resize smoothly."""
    method = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize((size_hw[1], size_hw[0]), method))


def overlay(image: np.ndarray, heat_rgb: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """A heat map blended over a (greyed) image of the same size."""
    grey = image.astype(np.float32).mean(axis=2, keepdims=True)
    mixed = (1 - alpha) * grey + alpha * heat_rgb.astype(np.float32)
    return mixed.clip(0, 255).astype(np.uint8)


def mark_point(rgb: np.ndarray, point_hw: tuple[float, float], radius: int = 4) -> np.ndarray:
    """A white cross with a black border at (row, col), visible on any colormap."""
    out = rgb.copy()
    H, W = out.shape[:2]
    y, x = round(point_hw[0]), round(point_hw[1])
    for colour, width in (((0, 0, 0), 1), ((255, 255, 255), 0)):
        for d in range(-radius - width, radius + width + 1):
            for t in range(-width, width + 1):
                for yy, xx in ((y + d, x + t), (y + t, x + d)):
                    if 0 <= yy < H and 0 <= xx < W:
                        out[yy, xx] = colour
    return out


def split_size(meta, max_side: int | None = None) -> tuple[int, int]:
    """(H, W) SynthCity scenes are rendered at for a model: its training aspect (2:1 when unknown,
    ann.training.data.trained_scale) with the longer side at the app's processing size, so a split is
    read at the scale every uploaded image is."""
    from ann.training.data import trained_scale

    side = processing_size(meta, max_side)[0]
    H, W = trained_scale(meta)
    return round(H * side / max(H, W)), round(W * side / max(H, W))


def synthcity_split(meta, max_side: int | None, split: str, count: int) -> tuple[Iterator, int]:
    """(image, label) pairs of the first `count` scenes of a SynthCity split (the model's SynthCity
    city, ann.training.data.data_config) at `split_size`, and how many there are."""
    from ann.training.data import data_config, open_split

    if split not in SPLITS:
        raise UserError(f"unknown SynthCity split {split!r}; valid: {', '.join(SPLITS)}")
    opened = open_split(data_config("synthcity", meta, synthcity_size=split_size(meta, max_side)), split)
    if not 1 <= int(count) <= opened.length:
        raise UserError(f"count must be 1..{opened.length} (SynthCity {split} images), got {count}")
    return (opened.load(i) for i in range(int(count))), int(count)


def counted(pairs: Iterator, total: int, progress: Callable | None, desc: str) -> Iterator:
    """The pairs, reporting (done, total) images to a gr.Progress (None: the API, no bar)."""
    for done, pair in enumerate(pairs):
        if progress is not None:
            progress((done, total), desc=desc, unit="images")
        yield pair


class Recent:
    """The most recent results by key: a second view of the same data is instant."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, key: Hashable):
        with self._guard:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value) -> None:
        with self._guard:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
