"""Inference as the paper evaluates (Sec. 4.2 "Inference Settings"): single-scale whole image,
sliding window, and multi-scale + flip. Shared by the evaluator and the app.

Logits of overlapping windows are averaged; the passes of multi-scale + flip are summed after
softmax-free resizing to the input size, as the released test protocol sums logits.
"""

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_SCALES = (0.75, 1.0, 1.25)


class Normalization(nn.Module):
    """uint8 (B, 3, H, W) RGB -> the network's input, by a checkpoint's normalization dict (channel
    order, scale, mean, std). A module, so its constants live on the device of the images: the
    trainer ships uint8 batches to the GPU (4x fewer bytes) and normalises them there."""

    def __init__(self, normalization: dict) -> None:
        super().__init__()
        self.bgr = normalization.get("channel_order", "RGB") == "BGR"
        self.scale = float(normalization.get("scale", 255.0))
        self.register_buffer(
            "mean", torch.tensor(normalization["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        )
        self.register_buffer("std", torch.tensor(normalization["std"], dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = x.float()
        if self.bgr:
            x = x.flip(1)
        return (x / self.scale - self.mean) / self.std  # the order of ann.data.transforms.Normalize


def preprocess(image: np.ndarray, normalization: dict) -> Tensor:
    """uint8 (H, W, 3) RGB -> normalised float (1, 3, H, W) by a checkpoint's normalization dict."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 H x W x 3 RGB image, got {image.dtype} {image.shape}")
    x = torch.from_numpy(np.array(image, copy=not image.flags.writeable)).permute(2, 0, 1).unsqueeze(0)
    return Normalization(normalization)(x)


@torch.no_grad()
def predict_whole(model: nn.Module, x: Tensor) -> Tensor:
    return model(x)


@torch.no_grad()
def predict_slide(model: nn.Module, x: Tensor, crop: tuple[int, int], stride: tuple[int, int]) -> Tensor:
    """Logits averaged over crop windows placed every `stride` (last window flush with the border);
    an image smaller than the crop is padded with zeros (the normalised mean)."""
    B, _, H, W = x.shape
    ch, cw = crop
    sh, sw = stride
    if sh <= 0 or sw <= 0 or ch <= 0 or cw <= 0:
        raise ValueError(f"crop {crop} and stride {stride} must be positive")
    if sh > ch or sw > cw:  # windows would leave gaps: pixels no window predicts
        raise ValueError(f"stride {stride} is larger than the crop {crop}; windows must overlap or touch")
    padded = F.pad(x, (0, max(cw - W, 0), 0, max(ch - H, 0)))
    PH, PW = padded.shape[-2:]
    logits = counts = None
    for y0 in window_starts(PH, ch, sh):
        for x0 in window_starts(PW, cw, sw):
            out = model(padded[:, :, y0 : y0 + ch, x0 : x0 + cw])
            if logits is None:
                logits = x.new_zeros(B, out.shape[1], PH, PW)
                counts = x.new_zeros(1, 1, PH, PW)
            logits[:, :, y0 : y0 + ch, x0 : x0 + cw] += out
            counts[:, :, y0 : y0 + ch, x0 : x0 + cw] += 1
    return (logits / counts)[:, :, :H, :W]


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    starts = list(range(0, max(length - crop, 0) + 1, stride))
    if starts[-1] + crop < length:
        starts.append(length - crop)
    return starts


@torch.no_grad()
def predict_msflip(
    model: nn.Module,
    x: Tensor,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    flip: bool = True,
    crop: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    align_corners: bool = True,
) -> Tensor:
    """Sum of logits over scales x {image, flipped}, each resized back to the input size; with a
    crop, each pass is a sliding-window pass (the Cityscapes test-server protocol)."""
    H, W = x.shape[-2:]
    total = None
    for scale in scales:
        size = (max(int(H * scale + 0.5), 1), max(int(W * scale + 0.5), 1))
        scaled = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
        for flipped in (False, True) if flip else (False,):
            inp = scaled.flip(-1) if flipped else scaled
            out = (
                predict_whole(model, inp) if crop is None else predict_slide(model, inp, crop, stride or crop)
            )
            out = out.flip(-1) if flipped else out
            out = F.interpolate(out, size=(H, W), mode="bilinear", align_corners=align_corners)
            total = out if total is None else total + out
    return total


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when asked; elsewhere a no-op (CPU inference stays fp32)."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", torch.bfloat16)
    return contextlib.nullcontext()


def predict(model: nn.Module, x: Tensor, mode: str = "whole", **options) -> Tensor:
    """Logits (B, K, H, W) for mode whole | slide | msflip."""
    if mode == "whole":
        return predict_whole(model, x)
    if mode == "slide":
        return predict_slide(model, x, options["crop"], options.get("stride") or options["crop"])
    if mode == "msflip":
        return predict_msflip(model, x, **options)
    raise ValueError(f"unknown inference mode {mode!r}; valid: whole, slide, msflip")


def mode_options(mode: str, crop=None, stride=None, scales=DEFAULT_SCALES, flip=True, align=True) -> dict:
    """The keyword options of ann.inference.predict for a mode."""
    if mode == "whole":
        return {}
    for name, value in (("crop", crop), ("stride", stride)):
        if value is not None and len(value) != 2:
            raise ValueError(f"--{name} takes two numbers H,W, got {','.join(map(str, value))}")
    if crop is not None and stride is not None and (stride[0] > crop[0] or stride[1] > crop[1]):
        # windows further apart than their size leave pixels that no window predicts
        raise ValueError(f"--stride {stride[0]},{stride[1]} is larger than --crop {crop[0]},{crop[1]}")
    if mode == "slide":
        if crop is None:
            raise ValueError("slide mode needs --crop H,W")
        return {"crop": tuple(crop), "stride": tuple(stride or crop)}
    if mode == "msflip":
        if not scales or min(scales) <= 0:  # a scale of 0 or less would still run, on a 1x1 image
            raise ValueError(f"--scales must be positive, got {','.join(map(str, scales))}")
        return {
            "scales": tuple(scales),
            "flip": flip,
            "crop": tuple(crop) if crop else None,
            "stride": tuple(stride) if stride else None,
            "align_corners": align,
        }
    raise ValueError(f"unknown mode {mode!r}; valid: whole, slide, msflip")


def segment(model: nn.Module, image: np.ndarray, mode: str = "whole", amp: bool = False, **options) -> Tensor:
    """Class ids (H, W) of a uint8 (H, W, 3) RGB image, by a model from `ann.load` (its
    checkpoint's normalisation, on the model's device); `mode` and `options` as `predict`."""
    device = next(model.parameters()).device
    x = preprocess(image, model.meta.normalization).to(device)
    with autocast(device, amp):
        return predict(model, x, mode, **options).float().argmax(1)[0].cpu()
