"""Joint image/label transforms of the training recipe (paper Sec. 4.1, "Training Settings").

Random scale 0.5..2.0 with aspect jitter 0.9..1.1, random crop padded with the mean colour (label
padded with ignore), horizontal flip and a brightness shift of +-10, then normalisation and tensors.
Images are uint8 (H, W, 3) RGB and labels uint8 (H, W) until `Normalize`. Labels are only ever
resized by nearest neighbour, so no new class ids appear. Random transforms draw from the
`numpy.random.Generator` that `Compose` passes them, so augmentation replays from a seed.
"""

from collections.abc import Sequence

import numpy as np
import torch
import torch.utils.data
from PIL import Image

from ann.data.labels import IGNORE_INDEX

CHANNEL_ORDERS = ("RGB", "BGR")
Array = np.ndarray


class Compose:
    """Apply `transforms` in order, each called as `t(image, label, rng)` with one shared generator.

    DataLoader workers each receive a copy of this object; without reseeding they would all replay
    the same random stream. Inside a worker the generator is reseeded from (seed, worker seed), and
    the worker seed derives from torch's seed in the main process, so runs stay reproducible.
    """

    def __init__(self, transforms: Sequence, seed: int = 0) -> None:
        self.transforms = list(transforms)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._worker_seed: int | None = None

    def __call__(self, image: Array, label: Array):
        self._follow_worker_seed()
        for transform in self.transforms:
            image, label = transform(image, label, self.rng)
        return image, label

    def _follow_worker_seed(self) -> None:
        info = torch.utils.data.get_worker_info()
        if info is not None and info.seed != self._worker_seed:
            self._worker_seed = info.seed
            self.rng = np.random.default_rng([self.seed, info.seed])


def resize(image: Array, label: Array, height: int, width: int) -> tuple[Array, Array]:
    """Bilinear for the image, nearest for the label (class ids must not be blended)."""
    image = Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.BILINEAR)
    label = Image.fromarray(np.ascontiguousarray(label)).resize((width, height), Image.NEAREST)
    return np.asarray(image), np.asarray(label)


class RandomScale:
    """Scale by s ~ U(min, max) with aspect a ~ U(jitter): width by s*sqrt(a), height by s/sqrt(a)."""

    def __init__(
        self, scale_range: tuple[float, float] = (0.5, 2.0), aspect_range: tuple[float, float] = (0.9, 1.1)
    ) -> None:
        self.scale_range = scale_range
        self.aspect_range = aspect_range

    def __call__(self, image: Array, label: Array, rng: np.random.Generator) -> tuple[Array, Array]:
        return resize(image, label, *self.draw_size(*label.shape, rng))

    def draw_size(self, H: int, W: int, rng: np.random.Generator) -> tuple[int, int]:
        """The scaled (height, width) of an H x W image."""
        scale = rng.uniform(*self.scale_range)
        aspect = np.sqrt(rng.uniform(*self.aspect_range))
        return max(1, round(H * scale / aspect)), max(1, round(W * scale * aspect))


def pad_to(image: Array, label: Array, height: int, width: int, fill: Sequence[int]) -> tuple[Array, Array]:
    """Pad bottom/right up to (height, width): image with `fill` (RGB), label with ignore."""
    H, W = label.shape
    pad_h, pad_w = max(height - H, 0), max(width - W, 0)
    if pad_h == 0 and pad_w == 0:
        return image, label
    padded_image = np.empty((H + pad_h, W + pad_w, 3), dtype=image.dtype)
    padded_image[...] = np.asarray(fill, dtype=image.dtype)
    padded_image[:H, :W] = image
    padded_label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
    return padded_image, padded_label


class RandomCrop:
    """A random (height, width) window, padding first where the image is smaller."""

    def __init__(self, size: int | tuple[int, int], fill: Sequence[int] = (0, 0, 0)) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.fill = tuple(fill)

    def __call__(self, image: Array, label: Array, rng: np.random.Generator) -> tuple[Array, Array]:
        height, width = self.size
        image, label = pad_to(image, label, height, width, self.fill)
        top, left = self.draw_corner(*label.shape, rng)
        return image[top : top + height, left : left + width], label[top : top + height, left : left + width]

    def draw_corner(self, H: int, W: int, rng: np.random.Generator) -> tuple[int, int]:
        """(top, left) of the window in an H x W image padded up to the crop size."""
        height, width = self.size
        top = int(rng.integers(0, max(H, height) - height + 1))
        return top, int(rng.integers(0, max(W, width) - width + 1))


class RandomScaleCrop:
    """RandomScale then RandomCrop, resampling only the source window that the crop keeps.

    Draws the same random numbers in the same order as the two transforms and gives the same
    window (labels identical but for float rounding at nearest-neighbour ties), at a fraction of
    the cost: scaling a 1024x512 image by up to 2x to keep a 512x512 crop resampled 4x the
    pixels it kept, and this was most of the data loader's time after rendering.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        fill: Sequence[int] = (0, 0, 0),
        scale_range: tuple[float, float] = (0.5, 2.0),
        aspect_range: tuple[float, float] = (0.9, 1.1),
    ) -> None:
        self.scale = RandomScale(scale_range, aspect_range)
        self.crop = RandomCrop(size, fill)

    def __call__(self, image: Array, label: Array, rng: np.random.Generator) -> tuple[Array, Array]:
        H, W = label.shape
        scaled_h, scaled_w = self.scale.draw_size(H, W, rng)
        top, left = self.crop.draw_corner(scaled_h, scaled_w, rng)
        height, width = self.crop.size
        # the part of the window inside the scaled image; the rest is bottom/right padding
        inside_h, inside_w = min(height, scaled_h - top), min(width, scaled_w - left)
        fy, fx = H / scaled_h, W / scaled_w
        box = (left * fx, top * fy, (left + inside_w) * fx, (top + inside_h) * fy)
        size = (inside_w, inside_h)
        window = Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.BILINEAR, box=box)
        window_label = Image.fromarray(np.ascontiguousarray(label)).resize(size, Image.NEAREST, box=box)
        # np.array: writable copies (torch.from_numpy warns on the read-only views of PIL images)
        return pad_to(np.array(window), np.array(window_label), height, width, self.crop.fill)


class RandomHorizontalFlip:
    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, image: Array, label: Array, rng: np.random.Generator) -> tuple[Array, Array]:
        if rng.random() < self.prob:
            return image[:, ::-1], label[:, ::-1]
        return image, label


class RandomBrightness:
    """Add one shift ~ U(-delta, delta) to every pixel, clipped to 0..255."""

    def __init__(self, delta: float = 10.0) -> None:
        self.delta = delta

    def __call__(self, image: Array, label: Array, rng: np.random.Generator) -> tuple[Array, Array]:
        shift = rng.uniform(-self.delta, self.delta)
        # a 256-entry table: the same values as clip(rint(image + shift)), without float images
        table = np.clip(np.rint(np.arange(256) + shift), 0, 255).astype(np.uint8)
        return table[image], label


class Normalize:
    """(image / scale, channels reordered, - mean) / std, from a normalisation dict.

    The dict is `{"mean", "std", "scale", "channel_order"}`, mean and std given in the network's
    channel order: the released ANN weights expect BGR, 0..255, mean (102.98, 115.95, 122.77).
    """

    def __init__(self, normalization: dict) -> None:
        check_normalization(normalization)
        self.mean = np.asarray(normalization["mean"], dtype=np.float32)
        self.std = np.asarray(normalization["std"], dtype=np.float32)
        self.scale = float(normalization["scale"])
        self.bgr = normalization["channel_order"] == "BGR"

    def __call__(
        self, image: Array, label: Array, rng: np.random.Generator | None = None
    ) -> tuple[Array, Array]:
        image = image.astype(np.float32) / self.scale
        if self.bgr:
            image = image[..., ::-1]
        return (image - self.mean) / self.std, label


def check_normalization(normalization: dict) -> None:
    missing = {"mean", "std", "scale", "channel_order"} - set(normalization)
    if missing:
        raise ValueError(f"normalization dict lacks {sorted(missing)}: {normalization}")
    if normalization["channel_order"] not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order {normalization['channel_order']!r}; valid: {list(CHANNEL_ORDERS)}")
    if len(normalization["mean"]) != 3 or len(normalization["std"]) != 3:
        raise ValueError(f"mean and std need 3 values each: {normalization}")


def mean_fill(normalization: dict) -> tuple[int, int, int]:
    """The uint8 RGB colour that `Normalize` maps to 0, so padding carries no signal."""
    check_normalization(normalization)
    mean = np.asarray(normalization["mean"], dtype=np.float64) * float(normalization["scale"])
    if normalization["channel_order"] == "BGR":
        mean = mean[::-1]
    return tuple(int(v) for v in np.clip(np.rint(mean), 0, 255))


class ToTensor:
    """Image float32 (C, H, W), label int64 (H, W) with 255 kept as the ignore index."""

    def __call__(
        self, image: Array, label: Array, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
        return image, torch.from_numpy(label.astype(np.int64))


class ToUint8Tensor:
    """Image uint8 (C, H, W), label uint8 (H, W): the trainer's form. A quarter of the bytes of
    float32 + int64 to pass between processes and to the GPU, which normalises
    (ann.inference.Normalization, the same arithmetic as Normalize)."""

    def __call__(
        self, image: Array, label: Array, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return image, torch.from_numpy(np.ascontiguousarray(label))


def train_transform(
    crop_size: int | tuple[int, int],
    normalization: dict,
    scale_range: tuple[float, float] = (0.5, 2.0),
    aspect_range: tuple[float, float] = (0.9, 1.1),
    brightness: float = 10.0,
    pad: str = "mean",
    seed: int = 0,
    normalize: bool = True,
) -> Compose:
    """The paper's augmentation; `pad` is "mean" (pixels that normalise to 0) or "zero".
    normalize=False ends in uint8 tensors, to be normalised on the device."""
    if pad not in ("mean", "zero"):
        raise ValueError(f"pad {pad!r}; valid: ['mean', 'zero']")
    fill = mean_fill(normalization) if pad == "mean" else (0, 0, 0)
    # Brightness first: applied after padding it would shift the pad away from the mean colour.
    return Compose(
        [
            RandomBrightness(brightness),
            RandomScaleCrop(crop_size, fill, scale_range, aspect_range),
            RandomHorizontalFlip(0.5),
            *([Normalize(normalization), ToTensor()] if normalize else [ToUint8Tensor()]),
        ],
        seed=seed,
    )


def eval_transform(normalization: dict) -> Compose:
    """Whole image, no augmentation: normalise and convert."""
    return Compose([Normalize(normalization), ToTensor()])
