"""What the network's features look like and what its predictions depend on (paper Sec. 4.3, Fig. 7).

The computations behind the app's "Stage features" and "Explain" tabs, free of any UI library:
- channel reductions of a (C, H, W) feature map to one image: mean, max over channels, or the
  first three principal components as RGB;
- one normalisation shared by a whole gallery (stages, blocks, two models), so equal values get
  equal colours and stages can be compared;
- the cosine similarity of every position of a map to one clicked position;
- attribution targets: the sum of one class logit over a clicked region or over the pixels
  predicted as that class, as an nn.Module an attribution method can differentiate.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ann.analysis.explore import image_to_feature
from ann.inference import preprocess
from ann.models.backbones import input_normalization
from ann.models.efficientnet import EfficientNetLite0, efficientnet_lite0
from ann.models.network import ANN, ANNConfig, HeadOutput
from ann.models.resnet import DilatedResNet

STAGES = ("stage1", "stage2", "stage3", "stage4", "stage5")
REDUCTIONS = ("mean", "max", "pca")
PCA_MAX_PIXELS = 1024  # axes from a regular subset of positions: 3 axes need few samples, fast at C=2048
PERCENTILES = (1.0, 99.0)  # robust range: a few extreme activations would otherwise wash out a map


class TargetError(ValueError):
    """An attribution target that cannot be built (absent class, empty region)."""


def named_features(stages: list[Tensor], head: HeadOutput | None = None, config: ANNConfig | None = None):
    """Stage1..Stage5 and, when the network has them, the fusion and context block outputs.

    The fusion output (HeadOutput.fused) is named after its block ("afnb", "fnb", "common"), the
    context output (context_out) after its block ("apnb", "nb"); a baseline shows neither, since
    there `fused` is Stage5 and `context_out` the 3x3 conv output.
    """
    if len(stages) != 5:
        raise ValueError(f"expected the five backbone stages, got {len(stages)} tensors")
    features = dict(zip(STAGES, stages, strict=True))
    if head is not None and config is not None:
        if config.fusion != "none":
            features[config.fusion] = head.fused
        if config.context != "none":
            features[config.context] = head.context_out
    return features


def as_chw(feature: Tensor) -> Tensor:
    if feature.dim() == 4:
        if feature.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {feature.shape[0]}")
        feature = feature[0]
    if feature.dim() != 3:
        raise ValueError(f"expected a (C, H, W) feature map, got shape {tuple(feature.shape)}")
    return feature.detach().float()


def reduce_channels(feature: Tensor, method: str) -> Tensor:
    """(C, H, W) -> (H, W) for "mean" and "max" (over channels), (3, H, W) for "pca"."""
    x = as_chw(feature)
    if method == "mean":
        return x.mean(0)
    if method == "max":
        return x.amax(0)
    if method == "pca":
        return pca_projection(x)
    raise ValueError(f"unknown channel reduction {method!r}; valid: {', '.join(REDUCTIONS)}")


def pca_projection(feature: Tensor, components: int = 3) -> Tensor:
    """(C, H, W) -> (components, H, W): each position projected on the top principal axes.

    The axes come from the eigenvectors of the smaller Gram matrix of a regular subset of
    positions; each axis's sign is fixed so that its largest loading is positive (the sklearn
    convention), so the colours do not flip between calls.
    """
    C, H, W = feature.shape
    X = feature.flatten(1).T  # (N, C)
    step = max(1, -(-X.shape[0] // PCA_MAX_PIXELS))
    sample = X[::step]
    mean = sample.mean(0, keepdim=True)
    sample = sample - mean  # (Ns, C)
    if sample.shape[0] >= C:
        _, axes = torch.linalg.eigh(sample.T @ sample)  # ascending eigenvalues, axes (C, C)
    else:
        _, left = torch.linalg.eigh(sample @ sample.T)  # (Ns, Ns)
        axes = F.normalize(sample.T @ left, dim=0)  # right singular vectors (C, Ns)
    axes = axes[:, -components:].flip(1)  # (C, k), largest variance first
    if axes.shape[1] < components:  # fewer channels or positions than components
        axes = F.pad(axes, (0, components - axes.shape[1]))
    biggest = axes.abs().argmax(0)
    axes = axes * torch.sign(axes[biggest, torch.arange(axes.shape[1])] + 1e-30)
    projected = (X - mean) @ axes  # (N, k)
    return projected.T.reshape(components, H, W).float()


def map_range(reduced: Tensor, symmetric: bool) -> tuple[float, float]:
    values = reduced.detach().float().flatten().cpu().numpy()
    if symmetric:
        high = float(np.percentile(np.abs(values), PERCENTILES[1]))
        return -high, high
    low, high = np.percentile(values, PERCENTILES)
    return float(low), float(high)


def value_ranges(maps: dict[str, Tensor], shared: bool = True) -> dict[str, tuple[float, float]]:
    """The (low, high) each map is scaled by in normalize_maps.

    shared=True: one range for the whole gallery, the envelope of each map's 1st-99th percentile
    range, so every map fits and equal values get equal colours across stages and models.
    PCA maps (3, H, W) are centred, so their range is symmetric about 0 (0 -> grey 0.5).
    """
    symmetric = {name: m.dim() == 3 for name, m in maps.items()}
    if len(set(symmetric.values())) > 1:
        raise ValueError("cannot share one normalisation between PCA and single-channel maps")
    ranges = {name: map_range(m, symmetric[name]) for name, m in maps.items()}
    if shared and ranges:
        low = min(r[0] for r in ranges.values())
        high = max(r[1] for r in ranges.values())
        ranges = dict.fromkeys(maps, (low, high))
    return ranges


def reduced_gallery(
    groups: dict[str, dict[str, Tensor]], method: str, shared: bool = True
) -> tuple[dict[tuple[str, str], tuple[float, float]], dict[tuple[str, str], Tensor]]:
    """The Stage features gallery: every map of every group (a model's named features) reduced by
    `method`, keyed (group, name); the range each is scaled by and the maps scaled to [0, 1].
    With `shared`, one range spans both models too: equal value, equal colour (Fig. 7)."""
    maps = {
        (label, name): reduce_channels(found[name], method)
        for label, found in groups.items()
        for name in found
    }
    return value_ranges(maps, shared), normalize_maps(maps, shared)


def normalize_maps(maps: dict[str, Tensor], shared: bool = True) -> dict[str, Tensor]:
    """Maps from reduce_channels scaled to [0, 1] by value_ranges, clipped."""
    ranges = value_ranges(maps, shared)
    return {name: scale_to_unit(m, *ranges[name]) for name, m in maps.items()}


def scale_to_unit(reduced: Tensor, low: float, high: float) -> Tensor:
    span = high - low if high > low else 1.0  # a constant map shows as its lowest colour
    return ((reduced.float() - low) / span).clamp(0, 1)


def feature_cell(
    point: tuple[int, int], image_hw: tuple[int, int], feature_hw: tuple[int, int], align_corners: bool
) -> tuple[int, int]:
    """The feature cell (row, col) under image pixel `point` = (y, x), by the network's own
    upsampling convention (the one ann.analysis.explore uses for attention queries)."""
    for p, size in zip(point, image_hw, strict=True):
        if not 0 <= p < size:
            raise ValueError(f"point {tuple(point)} lies outside the image of size {tuple(image_hw)}")
    return (
        image_to_feature(point[0], image_hw[0], feature_hw[0], align_corners),
        image_to_feature(point[1], image_hw[1], feature_hw[1], align_corners),
    )


def cosine_map(feature: Tensor, cell: tuple[int, int]) -> Tensor:
    """(C, H, W) -> (H, W): cosine similarity of every position to the feature at `cell`."""
    x = as_chw(feature)
    query = x[:, cell[0], cell[1]]  # (C,)
    return F.cosine_similarity(x, query[:, None, None], dim=0, eps=1e-8)


def cosine_maps(
    features: dict[str, Tensor], point: tuple[int, int], image_hw: tuple[int, int], align_corners: bool = True
) -> dict[str, tuple[Tensor, tuple[int, int]]]:
    """For every map: the cosine similarity map (values in [-1, 1]) and the cell that was queried."""
    result = {}
    for name, feature in features.items():
        cell = feature_cell(point, image_hw, tuple(feature.shape[-2:]), align_corners)
        result[name] = (cosine_map(feature, cell), cell)
    return result


def imagenet_backbone(output_stride: int = 8) -> tuple[EfficientNetLite0, dict]:
    """EfficientNet-Lite0 with its ImageNet weights, i.e. before segmentation training (Fig. 7),
    in eval mode, with the normalisation its weights expect."""
    return efficientnet_lite0(output_stride, pretrained=True).eval(), input_normalization(
        "efficientnet_lite0"
    )


def imagenet_features(image: np.ndarray, backbone: nn.Module, normalization: dict) -> dict[str, Tensor]:
    """Stage1..Stage5 of an ImageNet backbone (imagenet_backbone) on a uint8 RGB image."""
    return named_features(backbone_stages(backbone, preprocess(image, normalization)))


@torch.no_grad()
def backbone_stages(backbone: nn.Module, x: Tensor) -> list[Tensor]:
    """The five stage outputs of a backbone on a normalised (1, 3, H, W) image."""
    return list(backbone(x))


def stage_module(model: ANN, name: str) -> nn.Module:
    """The module whose output is the named feature map, for layer attributions (Grad-CAM)."""
    backbone = model.backbone
    if name in STAGES:
        index = STAGES.index(name)
        if isinstance(backbone, DilatedResNet):
            return [backbone.stem, backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4][index]
        if isinstance(backbone, EfficientNetLite0):
            return backbone.stages[index]
        raise ValueError(f"no stage modules known for backbone {type(backbone).__name__}")
    blocks = {model.config.fusion: model.fusion, model.config.context: model.context}
    block = blocks.get(name) if name not in ("none", "common") else None
    if block is None:
        valid = [*STAGES, *(k for k, v in blocks.items() if v is not None and k != "common")]
        raise ValueError(
            f"no layer {name!r} in this {model.config.backbone} network; valid: {', '.join(valid)}"
        )
    return block.fuse  # the block's output (AFNB/APNB return a tuple with their attention)


def class_mask(prediction: Tensor, class_index: int, classes: list[str] | None = None) -> Tensor:
    """Pixels predicted as `class_index`; TargetError naming the classes present if none is."""
    mask = prediction == class_index
    if not bool(mask.any()):
        name = lambda k: classes[k] if classes and 0 <= k < len(classes) else str(k)  # noqa: E731
        present = ", ".join(name(int(k)) for k in torch.unique(prediction))
        raise TargetError(
            f"class {name(class_index)!r} is absent from the prediction (no pixel is predicted as it); "
            f"pick a region instead, or one of the predicted classes: {present}"
        )
    return mask


def region_mask(image_hw: tuple[int, int], point: tuple[int, int], radius: int) -> Tensor:
    """A disc of `radius` pixels around point = (y, x), clipped to the image."""
    H, W = image_hw
    y, x = point
    if not (0 <= y < H and 0 <= x < W):
        raise TargetError(f"point {tuple(point)} lies outside the image of size {tuple(image_hw)}")
    if radius < 0:
        raise TargetError(f"region radius must be >= 0, got {radius}")
    ys = torch.arange(H).view(H, 1)
    xs = torch.arange(W).view(1, W)
    return (ys - y) ** 2 + (xs - x) ** 2 <= radius**2


def majority_class(prediction: Tensor, mask: Tensor) -> int:
    """The class predicted most often inside mask (ties: the lowest index)."""
    values = prediction[mask]
    if values.numel() == 0:
        raise TargetError("the region is empty")
    return int(torch.bincount(values.flatten()).argmax())


class MaskedLogitSum(nn.Module):
    """model(x) -> (B,): the sum of the class logit over the mask, the explained quantity.

    The mask is given at any resolution and resized to the logits, so the same target
    serves attributions computed on a downscaled copy of the image.
    """

    def __init__(self, model: nn.Module, class_index: int, mask: Tensor) -> None:
        super().__init__()
        if mask.dim() != 2 or not bool(mask.any()):
            raise TargetError("the target mask must be a non-empty (H, W) mask")
        self.model = model
        self.class_index = class_index
        self.register_buffer("mask", mask.float())

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(x)  # (B, K, H, W)
        if not 0 <= self.class_index < logits.shape[1]:
            raise TargetError(f"class index {self.class_index} out of range for {logits.shape[1]} classes")
        mask = self.mask
        if mask.shape != logits.shape[-2:]:
            # max pooling, not nearest: a small region must not vanish on a downscaled image
            mask = F.adaptive_max_pool2d(mask[None, None], tuple(logits.shape[-2:]))[0, 0]
        return (logits[:, self.class_index] * mask).sum(dim=(1, 2))
