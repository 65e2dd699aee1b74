"""The Asymmetric Non-local Neural Network and its ablation variants (Sec. 3.4, Tables 6, 7, 9).

backbone -> [fusion of Stage4 (and others) into Stage5] -> 3x3 conv-BN-ReLU -> [context block]
-> 1x1 classifier, plus the auxiliary Stage4 head; both upsampled to the input size. Which
fusion and context blocks are used is data (`ANNConfig`); `build_network` is the only place that
turns the config into modules.
"""

from dataclasses import asdict, dataclass, field, fields

import torch.nn.functional as F
from torch import Tensor, nn

from ann.models.backbones import BACKBONES, build_backbone
from ann.models.blocks import AFNB, APNB, AsymmetricAttention, Attention, CommonFusion
from ann.models.sampling import Sampler, SamplingConfig

FUSIONS = ("none", "common", "fnb", "afnb")
CONTEXTS = ("none", "nb", "apnb")
ASYMMETRIC = ("afnb", "apnb")  # the blocks that attend to sampled anchors (Sec. 3.2), so can switch


@dataclass(frozen=True)
class ANNConfig:
    backbone: str = "resnet101"
    output_stride: int = 8
    stem: str = "deep"  # ResNet stem: deep (released) or plain
    pretrained: bool = False  # ImageNet weights where the backbone has a local source
    num_classes: int = 19
    fusion: str = "afnb"  # none | common | fnb | afnb
    fuse_stages: tuple[int, ...] = (4,)  # low stages fused into Stage5 (Table 9)
    context: str = "apnb"  # none | nb | apnb
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    head_channels: int = 512  # 3x3 conv after fusion: 2048 -> 512
    bottleneck_kernel: int = 3  # 1 for the local9 control, whose receptive field must stay 9x9
    key_channels: int = 256
    value_channels: int = 256
    aux: bool = True  # auxiliary Stage4 head (loss weight 0.4)
    aux_channels: int = 512
    dropout: float = 0.05
    afnb_bn_after_w: bool = False  # appendix C: helps AFNB alone, not the full model
    align_corners: bool = True  # released code upsamples with align_corners=True

    def __post_init__(self) -> None:
        check_choice("backbone", self.backbone, tuple(BACKBONES))
        check_choice("fusion", self.fusion, FUSIONS)
        check_choice("context", self.context, CONTEXTS)
        if isinstance(self.sampling, dict):
            object.__setattr__(self, "sampling", SamplingConfig(**self.sampling))
        object.__setattr__(self, "fuse_stages", tuple(int(s) for s in self.fuse_stages))
        if any(s not in (1, 2, 3, 4) for s in self.fuse_stages):
            raise ValueError(f"fuse_stages must be stages 1..4 fused into Stage5, got {self.fuse_stages}")
        if self.fusion != "none" and not self.fuse_stages:
            raise ValueError(f"fusion {self.fusion!r} needs at least one stage in fuse_stages, e.g. [4]")
        if self.bottleneck_kernel not in (1, 3):
            raise ValueError(f"bottleneck_kernel must be 1 or 3, got {self.bottleneck_kernel}")
        if self.num_classes < 0:  # 0: the trainer takes the count from the data (classes.txt)
            raise ValueError(f"num_classes must be at least 1 (or 0: the dataset's), got {self.num_classes}")
        for name in ("head_channels", "key_channels", "value_channels", "aux_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:  # a rate of 1 zeroes every feature
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ANNConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ANNConfig fields {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**data)


def check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


# Table 6 rows as (fusion, context); "full" is the paper's network. "local" is not a paper row: the
# 9x9-receptive-field control that SynthCity's context claim is measured against.
VARIANTS = {
    "baseline": dict(fusion="none", context="none"),
    "nb": dict(fusion="none", context="nb"),
    "apnb": dict(fusion="none", context="apnb"),
    "common_fusion": dict(fusion="common", context="none"),
    "fnb": dict(fusion="fnb", context="none"),
    "afnb": dict(fusion="afnb", context="none"),
    "common_fusion_nb": dict(fusion="common", context="nb"),
    "fnb_nb": dict(fusion="fnb", context="nb"),
    "full": dict(fusion="afnb", context="apnb"),
    "local": dict(backbone="local9", fusion="none", context="none", bottleneck_kernel=1, aux=False),
}


def variant(name: str, **overrides) -> ANNConfig:
    """The ANNConfig of a Table 6 row, e.g. variant("full", backbone="resnet18")."""
    check_choice("variant", name, tuple(VARIANTS))
    return ANNConfig(**{**VARIANTS[name], **overrides})


@dataclass
class HeadOutput:
    logits: Tensor  # (B, K, h, w) at feature resolution
    aux: Tensor | None
    fused: Tensor  # output of the fusion block (Stage5 if none)
    context_in: Tensor  # input of the context block (after the 3x3 conv)
    context_out: Tensor  # output of the context block
    attention: dict[str, list[Attention] | Attention]  # "afnb"/"fnb": one per fused stage; "apnb"/"nb"


class ANN(nn.Module):
    """Calling it on a normalised image returns the main logits at input resolution."""

    def __init__(
        self,
        config: ANNConfig,
        backbone: nn.Module,
        fusion: nn.Module | None,
        bottleneck: nn.Module,
        context: nn.Module | None,
        classifier: nn.Module,
        aux_head: nn.Module | None,
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.fusion = fusion
        self.bottleneck = bottleneck
        self.context = context
        self.classifier = classifier
        self.aux_head = aux_head

    def forward(self, x: Tensor, with_aux: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
        out = self.head(self.backbone(x), with_aux=with_aux)
        logits = self.upsample(out.logits, x.shape[-2:])
        if not with_aux:
            return logits
        aux = None if out.aux is None else self.upsample(out.aux, x.shape[-2:])
        return logits, aux

    def head(self, stages: list[Tensor], record: bool = False, with_aux: bool = True) -> HeadOutput:
        """Everything after the backbone; the app reruns only this when sampling changes."""
        high, attention = stages[4], {}
        fused = high
        if self.fusion is not None:
            lows = [stages[s - 1] for s in self.config.fuse_stages]
            fused, afnb = self.fusion(high, lows, record)
            if record and afnb:
                attention[self.config.fusion] = afnb
        context_in = self.bottleneck(fused)
        context_out = context_in
        if self.context is not None:
            context_out, apnb = self.context(context_in, record)
            if record:
                attention[self.config.context] = apnb
        # the auxiliary head serves training only; inference skips its 3x3 conv (~7% of the MACs)
        aux = self.aux_head(stages[3]) if with_aux and self.aux_head is not None else None
        return HeadOutput(self.classifier(context_out), aux, fused, context_in, context_out, attention)

    def upsample(self, logits: Tensor, size) -> Tensor:
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=self.config.align_corners)

    def set_sampling(self, sampling: SamplingConfig, blocks: tuple[str, ...] | None = None) -> None:
        """Switch the sampling of the attention blocks in place, keeping all weights.

        By default only the asymmetric blocks (AFNB as "fusion", APNB as "context") switch; NB and
        FNB were trained with every position as an anchor and switch only when named in `blocks`.
        The training config is kept, so `samplings()` shows what differs from it.
        """
        for name in self.switchable() if blocks is None else blocks:
            check_choice("block", name, ("fusion", "context"))
            module = getattr(self, name)
            for attention in [] if module is None else module.modules():
                if isinstance(attention, AsymmetricAttention):
                    attention.sampler = Sampler(sampling).train(self.training)  # eval: the fixed draw

    def samplings(self) -> dict[str, SamplingConfig]:
        """The sampling each block uses now (it may differ from the training config)."""
        found = {}
        for name in ("fusion", "context"):
            module = getattr(self, name)
            for attention in [] if module is None else module.modules():
                if isinstance(attention, AsymmetricAttention):
                    found[name] = attention.sampler.config
        return found

    def block_kinds(self) -> dict[str, str]:
        """{"fusion": "afnb"|"fnb", "context": "apnb"|"nb"} for the blocks that have attention."""
        kinds = {"fusion": self.config.fusion, "context": self.config.context}
        return {name: kinds[name] for name in self.samplings()}

    def switchable(self) -> tuple[str, ...]:
        """The blocks whose sampling switches unless others are named: AFNB and APNB. NB and FNB
        were trained with every position as an anchor."""
        return tuple(name for name, kind in self.block_kinds().items() if kind in ASYMMETRIC)

    def training_sampling(self) -> dict[str, SamplingConfig]:
        """The sampling each attention block was trained with (NB and FNB: identity)."""
        switchable = self.switchable()
        return {
            name: self.config.sampling if name in switchable else SamplingConfig("identity")
            for name in self.block_kinds()
        }


def build_network(config: ANNConfig) -> ANN:
    if config.num_classes < 1:
        raise ValueError(
            "num_classes 0 (the dataset's) must be set from the data before the network is built"
        )
    backbone = build_backbone(config.backbone, config.output_stride, config.stem, config.pretrained)
    channels = backbone.channels  # Stage1..Stage5
    high = channels[4]
    lows = tuple(channels[s - 1] for s in config.fuse_stages)
    pyramid = Sampler(config.sampling)
    identity = Sampler(SamplingConfig("identity"))
    K, C = config.key_channels, config.value_channels
    fusion = {
        "none": lambda: None,
        "common": lambda: CommonFusion(lows, high),
        "fnb": lambda: AFNB(lows, high, K, C, identity, config.dropout, config.afnb_bn_after_w),
        "afnb": lambda: AFNB(lows, high, K, C, pyramid, config.dropout, config.afnb_bn_after_w),
    }[config.fusion]()
    head = config.head_channels
    k = config.bottleneck_kernel
    bottleneck = nn.Sequential(
        nn.Conv2d(high, head, k, padding=k // 2), nn.BatchNorm2d(head), nn.ReLU(inplace=True)
    )
    context = {
        "none": lambda: None,
        "nb": lambda: APNB(head, K, C, identity, config.dropout),
        "apnb": lambda: APNB(head, K, C, pyramid, config.dropout),
    }[config.context]()
    classifier = nn.Conv2d(head, config.num_classes, 1)
    aux_head = None
    if config.aux:
        aux_head = nn.Sequential(
            nn.Conv2d(channels[3], config.aux_channels, 3, padding=1),
            nn.BatchNorm2d(config.aux_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(config.dropout),
            nn.Conv2d(config.aux_channels, config.num_classes, 1),
        )
    return ANN(config, backbone, fusion, bottleneck, context, classifier, aux_head)
