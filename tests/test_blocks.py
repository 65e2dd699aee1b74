"""NB / APNB / FNB / AFNB: the attention core against a naive non-local block (Sec. 3.1)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ann.analysis.efficiency import CPU_ATTENTION_FLOPS
from ann.models.blocks import AFNB, APNB, AsymmetricAttention
from ann.models.sampling import Sampler, SamplingConfig

IDENTITY = SamplingConfig("identity")
PYRAMID = SamplingConfig()


def randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Non-zero W and non-trivial BN statistics, so equalities are not vacuous."""
    torch.manual_seed(0)
    for p in module.parameters():
        p.data.normal_(0, 0.3)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return module.eval()


def naive_non_local(block: AsymmetricAttention, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """Eq. 1-4 written out with the full N x N similarity matrix."""
    B, _, H, W = high.shape
    key = block.key(low).flatten(2)  # (B, C^, N)
    query = key if block.query is None else block.query(high).flatten(2)
    value = block.value(low).flatten(2)  # (B, Cv, N)
    V = torch.einsum("bcn,bcm->bnm", query, key) / block.key_channels**0.5
    O = torch.einsum("bnm,bcm->bnc", V.softmax(dim=-1), value)  # (B, N, Cv)
    return block.W(O.transpose(1, 2).reshape(B, -1, H, W))


def test_apnb_with_identity_sampler_equals_nb():
    block = randomise(APNB(8, 4, 6, Sampler(IDENTITY)))
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        context, attention = block.attention(x, x, record=True)
        assert torch.allclose(context, naive_non_local(block.attention, x, x), atol=1e-5)
    assert attention.weights.shape == (2, 35, 35)


def test_afnb_with_identity_sampler_equals_fnb():
    block = randomise(AFNB((6,), 10, 4, 5, Sampler(IDENTITY)))
    high, low = torch.randn(1, 10, 4, 6), torch.randn(1, 6, 8, 12)  # low may be larger (Stage2/3)
    with torch.no_grad():
        context, _ = block.attentions[0](high, low)
        assert torch.allclose(context, naive_non_local(block.attentions[0], high, low), atol=1e-5)


@pytest.mark.parametrize("sampling", [PYRAMID, SamplingConfig("pyramid_max", (1, 2)), IDENTITY])
def test_attention_rows_sum_to_one(sampling):
    block = randomise(APNB(8, 4, 4, Sampler(sampling)))
    with torch.no_grad():
        _, attention = block(torch.randn(1, 8, 9, 9), record=True)
    assert torch.allclose(attention.weights.sum(-1), torch.ones(1, 81), atol=1e-6)
    assert (attention.weights >= 0).all()
    assert attention.weights.shape[-1] == len(attention.anchors.level)


def test_zero_initialised_W_contributes_nothing_at_init():
    torch.manual_seed(0)
    block = APNB(8, 4, 4, Sampler(PYRAMID)).eval()
    x = torch.randn(1, 8, 9, 9)
    context, _ = block.attention(x, x)
    assert torch.count_nonzero(context) == 0
    # so the block's output is the fuse of [0, x]; an input change in any one position changes
    # the output only there (the attention branch mixes nothing in yet)
    y = x.clone()
    y[..., 0, 0] += 1
    diff = (block(y)[0] - block(x)[0]).abs().sum(1)[0]  # (H, W)
    assert diff[0, 0] > 0 and diff.flatten()[1:].abs().max() < 1e-6


def test_apnb_shares_query_and_key_while_afnb_does_not():
    apnb = APNB(8, 4, 4, Sampler(PYRAMID))
    afnb = AFNB((6,), 8, 4, 4, Sampler(PYRAMID))
    assert apnb.attention.query is None  # query computed by the key projection (released code)
    assert afnb.attentions[0].query is not None
    names = [n for n, _ in apnb.named_parameters()]
    assert not any(".query." in n for n in names)


def test_scale_is_key_channels_to_minus_half():
    block = randomise(AsymmetricAttention(4, 4, 4, 16, 4, Sampler(IDENTITY), share_query_key=True))
    x = torch.randn(1, 4, 3, 3)
    with torch.no_grad():
        _, attention = block(x, x, record=True)
        key = block.key(x).flatten(2)
        expected = (key.transpose(1, 2) @ key * 0.25).softmax(-1)
    assert torch.allclose(attention.weights, expected, atol=1e-6)


def test_fused_sdpa_path_equals_naive():
    block = randomise(AsymmetricAttention(8, 8, 8, 4, 4, Sampler(IDENTITY), share_query_key=True))
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        naive, _ = block(x, x)
        block.use_sdpa = True
        fused, _ = block(x, x)
    assert torch.allclose(naive, fused, atol=1e-5)


def test_sdpa_path_runs_a_fused_kernel_not_the_n_by_n_math_path():
    # torch falls back to the math path silently when the last dimension is not contiguous
    block = randomise(AsymmetricAttention(8, 8, 8, 4, 4, Sampler(IDENTITY), share_query_key=True))
    block.use_sdpa = True
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    with counter, torch.no_grad():
        block(torch.randn(1, 8, 6, 6), torch.randn(1, 8, 6, 6))
    ops = counter.get_flop_counts()["Global"]
    assert torch.ops.aten._scaled_dot_product_flash_attention_for_cpu in ops
    assert torch.ops.aten.bmm not in ops  # the math path's Q K^T and softmax(V) V


def test_afnb_sums_responses_of_several_fused_stages():
    block = randomise(AFNB((4, 6), 8, 4, 4, Sampler(PYRAMID)))
    high, lows = torch.randn(1, 8, 8, 8), [torch.randn(1, 4, 16, 16), torch.randn(1, 6, 8, 8)]
    with torch.no_grad():
        out, attentions = block(high, lows, record=True)
        summed = block.attentions[0](high, lows[0])[0] + block.attentions[1](high, lows[1])[0]
        expected = block.fuse(torch.cat([summed, high], dim=1))
    assert torch.allclose(out, expected, atol=1e-6)
    assert len(attentions) == 2 and attentions[0].anchors.feature_hw == (16, 16)


def test_shared_projection_needs_equal_channels():
    with pytest.raises(ValueError, match="equal high and low channels"):
        AsymmetricAttention(8, 4, 8, 4, 4, Sampler(PYRAMID), share_query_key=True)


@pytest.mark.parametrize("share_query_key", [True, False])
def test_random_sampling_in_training_takes_key_and_value_from_the_same_anchors(share_query_key):
    """Random n = 3 on a 3x3 map draws every position, only reordered; attention does not depend
    on the order of its anchors, so it must equal NB, step after step, if each anchor's key and
    value come from one position (Table 7's random rows)."""
    sampler = Sampler(SamplingConfig("random", (3,), seed=1))
    block = randomise(AsymmetricAttention(6, 6, 6, 4, 5, sampler, share_query_key))
    sampler.train()  # a training step draws new anchors; BN stays on its running statistics
    high, low = torch.randn(2, 6, 3, 3), torch.randn(2, 6, 3, 3)
    with torch.no_grad():
        expected = naive_non_local(block, high, low)
        for _ in range(3):
            assert torch.allclose(block(high, low)[0], expected, atol=1e-5)


def test_bn_after_w_normalises_the_attention_response():
    """Appendix C's option: the response is BN(W(context)), a BN with its own statistics."""
    block = randomise(AFNB((6,), 10, 4, 5, Sampler(IDENTITY), bn_after_w=True))
    attention = block.attentions[0]
    high, low = torch.randn(1, 10, 4, 6), torch.randn(1, 6, 4, 6)
    with torch.no_grad():
        context, _ = attention(high, low)
        expected = attention.W_bn(naive_non_local(attention, high, low))
        assert torch.allclose(context, expected, atol=1e-5)
        assert not torch.allclose(context, naive_non_local(attention, high, low), atol=1e-3)


def test_common_fusion_adds_relu_bn_conv_of_each_low_stage():
    """Table 6's common fusion written out: Stage5 + sum of ReLU(BN(conv(low))), each resized to
    Stage5 bilinearly; randomised BN makes the pre-ReLU maps part negative, so ReLU matters."""
    import torch.nn.functional as F

    from ann.models.blocks import CommonFusion

    block = randomise(CommonFusion((4, 6), 8))
    high, lows = torch.randn(1, 8, 4, 4), [torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4)]
    expected = high.clone()
    with torch.no_grad():
        for (conv, bn, _), low in zip(block.projections, lows, strict=True):
            low = F.batch_norm(conv(low), bn.running_mean, bn.running_var, bn.weight, bn.bias, False)
            expected += F.interpolate(F.relu(low), size=(4, 4), mode="bilinear", align_corners=False)
        out, attentions = block(high, lows)
    assert torch.allclose(out, expected, atol=1e-5) and attentions == []
