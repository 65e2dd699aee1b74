"""The model family of the paper: backbones, sampling, non-local blocks and the network."""

from ann.models.blocks import AFNB, APNB, AsymmetricAttention, Attention, CommonFusion
from ann.models.network import (
    ANN,
    VARIANTS,
    ANNConfig,
    HeadOutput,
    build_network,
    variant,
)
from ann.models.sampling import METHODS, AnchorGeometry, Sampler, SamplingConfig

__all__ = [
    "AFNB", "ANN", "APNB", "METHODS", "VARIANTS", "ANNConfig", "AnchorGeometry", "AsymmetricAttention",
    "Attention", "CommonFusion", "HeadOutput", "Sampler", "SamplingConfig", "build_network", "variant",
]  # fmt: skip
