"""Non-local blocks of the paper: NB, APNB (Sec. 3.1-3.2) and FNB, AFNB (Sec. 3.3).

All four share one attention core, `AsymmetricAttention` (Eq. 9-10 / 15-16): NB and FNB are
APNB and AFNB with the identity sampler (every position is an anchor). Details follow the
released code (ANN-REFERENCE.md): in APNB query and key share one conv+BN+ReLU, the value is a
plain conv, logits are scaled by key_channels^-0.5, and W starts at zero so each block begins as
an identity on its input branch; the result is concatenated with the input (Eq. 11 / 17) and
fused by conv-BN(-ReLU)-Dropout2d.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ann.models.sampling import AnchorGeometry, Sampler


@dataclass
class Attention:
    """What one attention block computed: the weights and where its anchors come from."""

    weights: Tensor  # (B, N, S), softmax over the S anchors
    anchors: AnchorGeometry  # geometry of the S anchors in the key map
    query_hw: tuple[int, int]  # N = H * W of the query map


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AsymmetricAttention(nn.Module):
    """Attention of queries from `high` over S sampled anchors of `low` (Eq. 8-10, 14-16)."""

    def __init__(
        self,
        high_channels: int,
        low_channels: int,
        out_channels: int,
        key_channels: int,
        value_channels: int,
        sampler: Sampler,
        share_query_key: bool,
        bn_after_w: bool = False,
    ) -> None:
        super().__init__()
        if share_query_key and high_channels != low_channels:
            raise ValueError("a shared query/key projection needs equal high and low channels")
        self.key_channels = key_channels
        self.key = conv_bn_relu(low_channels, key_channels)
        self.query = None if share_query_key else conv_bn_relu(high_channels, key_channels)
        self.value = nn.Conv2d(low_channels, value_channels, 1)
        self.W = nn.Conv2d(value_channels, out_channels, 1)
        # zero W: the block adds nothing at initialisation (released code; Wang et al. Sec. 4.1)
        nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)
        self.W_bn = nn.BatchNorm2d(out_channels) if bn_after_w else None  # appendix C option
        self.sampler = sampler
        self.use_sdpa = False  # fused kernel for NB/FNB when no attention map is requested

    def forward(self, high: Tensor, low: Tensor, record: bool = False) -> tuple[Tensor, Attention | None]:
        B, _, H, W = high.shape
        key_map = self.key(low)  # (B, C^, Hl, Wl)
        query_map = key_map if self.query is None else self.query(high)
        query = query_map.flatten(2).transpose(1, 2)  # (B, N, C^)
        key, value = self.sampler.pair(key_map, self.value(low))  # (B, C^, S), (B, Cv, S)
        value = value.transpose(1, 2)  # (B, S, Cv)
        if self.use_sdpa and not record:
            scale = self.key_channels**-0.5
            # the fused kernels (flash, memory-efficient) need 4-D (B, heads, L, C) inputs whose last
            # dimension has stride 1; the transposed views have stride L, and torch would silently
            # fall back to the N x N math path
            q, k, v = (part[:, None].contiguous() for part in (query, key.transpose(1, 2), value))
            context = F.scaled_dot_product_attention(q, k, v, scale=scale)[:, 0]
            weights = None
        else:
            weights = torch.softmax(query @ key * self.key_channels**-0.5, dim=-1)  # (B, N, S)
            context = weights @ value  # (B, N, Cv)
        context = self.W(context.transpose(1, 2).reshape(B, -1, H, W))  # (B, Cout, H, W)
        if self.W_bn is not None:
            context = self.W_bn(context)
        if not record:
            return context, None
        anchors = self.sampler.anchors(*low.shape[-2:])
        return context, Attention(weights, anchors, (H, W))


class APNB(nn.Module):
    """Asymmetric Pyramid Non-local Block; NB when its sampler is the identity (Eq. 11)."""

    def __init__(
        self,
        channels: int,
        key_channels: int,
        value_channels: int,
        sampler: Sampler,
        dropout: float = 0.05,
    ) -> None:
        super().__init__()
        self.attention = AsymmetricAttention(
            channels,
            channels,
            channels,
            key_channels,
            value_channels,
            sampler,
            share_query_key=True,
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )

    def forward(self, x: Tensor, record: bool = False) -> tuple[Tensor, Attention | None]:
        context, attention = self.attention(x, x, record)
        return self.fuse(torch.cat([context, x], dim=1)), attention


class AFNB(nn.Module):
    """Asymmetric Fusion Non-local Block; FNB when its samplers are the identity (Eq. 17).

    One attention per fused low stage (Table 9); their responses are summed, as the appendix
    describes for a stage that receives several fusion invitations.
    """

    def __init__(
        self,
        low_channels: tuple[int, ...],
        high_channels: int,
        key_channels: int,
        value_channels: int,
        sampler: Sampler,
        dropout: float = 0.05,
        bn_after_w: bool = False,
    ) -> None:
        super().__init__()
        self.attentions = nn.ModuleList(
            AsymmetricAttention(
                high_channels,
                c,
                high_channels,
                key_channels,
                value_channels,
                sampler,
                False,
                bn_after_w,
            )
            for c in low_channels
        )
        # no ReLU after this BN in the released AFNB
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * high_channels, high_channels, 1),
            nn.BatchNorm2d(high_channels),
            nn.Dropout2d(dropout),
        )

    def forward(
        self, high: Tensor, lows: list[Tensor], record: bool = False
    ) -> tuple[Tensor, list[Attention]]:
        context, attentions = 0, []
        for attention, low in zip(self.attentions, lows, strict=True):
            response, weights = attention(high, low, record)
            context = context + response
            attentions.append(weights)
        return self.fuse(torch.cat([context, high], dim=1)), attentions if record else []


class CommonFusion(nn.Module):
    """Table 6's "common fusion": Stage5 + ReLU(BN(Conv(Stage4))), summed over fused stages."""

    def __init__(self, low_channels: tuple[int, ...], high_channels: int) -> None:
        super().__init__()
        self.projections = nn.ModuleList(conv_bn_relu(c, high_channels) for c in low_channels)

    def forward(
        self, high: Tensor, lows: list[Tensor], record: bool = False
    ) -> tuple[Tensor, list[Attention]]:
        out = high
        for projection, low in zip(self.projections, lows, strict=True):
            low = projection(low)
            if low.shape[-2:] != high.shape[-2:]:
                low = F.interpolate(low, size=high.shape[-2:], mode="bilinear", align_corners=False)
            out = out + low
        return out, []
