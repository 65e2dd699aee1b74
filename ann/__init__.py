"""Asymmetric Non-local Neural Networks for Semantic Segmentation (Zhu et al., ICCV 2019).

`ann.load(path)` returns a network in eval mode from a checkpoint of this library; calling it on
a normalised image tensor (B, 3, H, W) returns the main logits at input resolution, and
`ann.segment(model, image)` gives the class ids of a uint8 RGB image directly.
"""

from ann.checkpoint import CheckpointError, CheckpointMeta, load, read_meta, save
from ann.inference import segment
from ann.models import ANNConfig, SamplingConfig, build_network, variant

__all__ = [
    "ANNConfig", "CheckpointError", "CheckpointMeta", "SamplingConfig", "build_network", "load",
    "read_meta", "save", "segment", "variant",
]  # fmt: skip
