"""The network and its Table 6 / Table 9 variants, on tiny shapes."""

import re

import pytest
import torch

from ann.models.network import VARIANTS, ANNConfig, build_network, variant
from ann.models.sampling import SamplingConfig

SMALL = dict(num_classes=5, head_channels=16, key_channels=8, value_channels=8, aux_channels=8)


def small(name: str, **overrides):
    return build_network(variant(name, **{"backbone": "resnet18", **SMALL, **overrides}))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_gives_logits_at_input_size(name):
    model = small(name).eval()
    with torch.no_grad():
        logits, aux = model(torch.randn(2, 3, 40, 56), with_aux=True)
    assert logits.shape == (2, 5, 40, 56)
    assert aux is None if name == "local" else aux.shape == logits.shape
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    "backbone, channels",
    [
        ("resnet18", (128, 64, 128, 256, 512)),
        ("resnet34", (128, 64, 128, 256, 512)),
        ("resnet50", (128, 256, 512, 1024, 2048)),
        ("resnet101", (128, 256, 512, 1024, 2048)),
        ("efficientnet_lite0", (16, 24, 40, 112, 320)),
    ],
)
def test_every_backbone_gives_five_stages(backbone, channels):
    model = small("full", backbone=backbone).eval()
    with torch.no_grad():
        stages = model.backbone(torch.randn(1, 3, 33, 33))
        logits = model(torch.randn(1, 3, 33, 33))
    assert tuple(s.shape[1] for s in stages) == channels
    assert stages[4].shape[-2:] == stages[3].shape[-2:] == stages[2].shape[-2:]  # output stride 8
    assert logits.shape == (1, 5, 33, 33)


def test_released_feature_size_with_ceil_mode():
    """A 1024x2048 input gives 129x257 features at output stride 8 (ANN-REFERENCE.md)."""
    with torch.device("meta"):  # shapes only, no compute
        model = build_network(variant("full", **SMALL))
        stages = model.backbone(torch.empty(1, 3, 1024, 2048))
    assert [tuple(s.shape[-2:]) for s in stages] == [(512, 1024), (257, 513)] + [(129, 257)] * 3


def test_plain_stem():
    model = small("baseline", stem="plain")
    assert model.backbone.channels[0] == 64 and model.backbone.stem.conv1.kernel_size == (7, 7)


def test_output_stride_16():
    model = small("full", output_stride=16).eval()
    with torch.no_grad():
        stages = model.backbone(torch.randn(1, 3, 64, 64))
    assert [s.shape[-1] for s in stages] == [32, 17, 9, 5, 5]


@pytest.mark.parametrize("stages", [(4,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("fusion", ["afnb", "common"])
def test_table_9_fused_stages(stages, fusion):
    model = small("full", fusion=fusion, fuse_stages=stages).eval()
    with torch.no_grad():
        out = model.head(model.backbone(torch.randn(1, 3, 48, 48)), record=True)
    assert out.logits.shape == (1, 5, 7, 7)
    if fusion == "afnb":
        assert len(out.attention["afnb"]) == len(stages)
        assert out.attention["afnb"][0].anchors.feature_hw == {2: (13, 13), 3: (7, 7), 4: (7, 7)}[stages[0]]


def test_gradients_reach_every_parameter():
    model = small("full").train()
    # W starts at zero, so the projections before it get no gradient in the first step; give W
    # a value so the test sees every path
    for attention in [model.fusion.attentions[0], model.context.attention]:
        torch.nn.init.normal_(attention.W.weight, std=0.1)
    logits, aux = model(torch.randn(2, 3, 32, 32), with_aux=True)
    (logits.square().mean() + aux.square().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_recorded_forward_is_the_prediction_forward():
    model = small("full").eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        stages = model.backbone(x)
        recorded = model.head(stages, record=True)
        plain = model(x)
    assert torch.equal(model.upsample(recorded.logits, x.shape[-2:]), plain)
    assert recorded.attention["apnb"].weights.shape == (1, 36, 110)
    assert recorded.attention["afnb"][0].weights.shape == (1, 36, 110)


@pytest.mark.parametrize(
    "sampling",
    [SamplingConfig("pyramid_max", (1, 2, 3, 6)), SamplingConfig("random", (3,), seed=3),
     SamplingConfig("pyramid_average", (1, 4, 8, 12)), SamplingConfig("average", (4,))],
)  # fmt: skip
def test_switching_sampling_keeps_weights_and_finite_outputs(sampling):
    model = small("full").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.set_sampling(sampling)
    with torch.no_grad():
        out = model.head(model.backbone(torch.randn(1, 3, 64, 64)), record=True)
    assert torch.isfinite(out.logits).all()
    assert out.attention["apnb"].weights.shape[-1] == sampling.num_anchors
    assert model.samplings() == {"fusion": sampling, "context": sampling}
    assert model.config.sampling == SamplingConfig()  # the training config is kept
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_random_sampling_switched_on_an_eval_model_keeps_one_draw_for_every_image():
    """`ann.predict --sampling random` on a folder: every image sees the fixed eval anchors of
    (seed, H, W), not draw k for image k (a sampler made in training mode counts its draws)."""
    model = small("full").eval()
    model.set_sampling(SamplingConfig("pyramid_random", (1, 2, 3), seed=4))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        first, second = (model.head(model.backbone(x), record=True) for _ in range(2))
    assert torch.equal(first.logits, second.logits)
    assert all(not m.training for m in model.modules())
    model.train().set_sampling(SamplingConfig("random", (3,)))
    assert model.context.attention.sampler.training  # a training model draws afresh each step


def test_nb_is_not_switched_unless_asked():
    model = small("fnb_nb")
    model.set_sampling(SamplingConfig())
    assert model.samplings()["context"].method == "identity"
    model.set_sampling(SamplingConfig(), blocks=("context",))
    assert model.samplings()["context"].method == "pyramid_average"


def test_paper_parameter_counts():
    """Head about 20.3 M + 4.7 M auxiliary (ANN-REFERENCE.md) on ResNet-101, 19 classes."""
    model = build_network(ANNConfig())
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    head = count(model) - count(model.backbone) - count(model.aux_head)
    assert abs(head - 20.3) < 0.05 and abs(count(model.aux_head) - 4.7) < 0.05


@pytest.mark.parametrize(
    "overrides, message",
    [(dict(fusion="psp"), "valid: none, common, fnb, afnb"), (dict(context="ocr"), "valid: none, nb, apnb"),
     (dict(backbone="vgg16"), "valid: resnet18"), (dict(fuse_stages=(5,)), "stages 1..4")],
)  # fmt: skip
def test_bad_config_names_the_valid_choices(overrides, message):
    with pytest.raises(ValueError, match=message):
        ANNConfig(**overrides)


def test_config_round_trips_through_dict():
    config = variant("fnb_nb", backbone="resnet50", sampling=SamplingConfig("pyramid_max", (1, 2)))
    assert ANNConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown ANNConfig fields"):
        ANNConfig.from_dict({**config.to_dict(), "colour": 1})


def test_local_control_sees_only_a_9x9_window():
    """The gradient of one output pixel reaches exactly the 9x9 input window around it."""
    model = build_network(variant("local", num_classes=3)).eval()
    x = torch.randn(1, 3, 21, 21, requires_grad=True)
    model(x)[0, :, 10, 10].sum().backward()
    support = (x.grad.abs().sum(1)[0] > 0).nonzero()
    assert support.min(0).values.tolist() == [6, 6] and support.max(0).values.tolist() == [14, 14]


def test_inference_skips_the_auxiliary_head():
    model = small("full").eval()
    calls = []
    model.aux_head.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
        assert calls == []
        model(torch.randn(1, 3, 32, 32), with_aux=True)
    assert calls == [1]


@pytest.mark.parametrize(
    "fusion, context, method",
    [("afnb", "apnb", "pyramid_average"), ("fnb", "nb", "pyramid_max"), ("common", "apnb", "random"),
     ("none", "none", "average"), ("afnb", "nb", "pyramid_random"), ("afnb", "apnb", "max")],
)  # fmt: skip
def test_trains_under_bf16_autocast_channels_last(fusion, context, method):
    """The trainer's CUDA settings (bf16 autocast, channels_last), on CPU's autocast: no op of
    ours mixes dtypes that autocast leaves alone, forward or backward."""
    from dataclasses import replace

    from ann.losses import SegmentationLoss
    from ann.training.config import load_config

    sizes = (1, 3, 6, 8) if method.startswith("pyramid") else (4,)
    config = replace(load_config("smoke").model, fusion=fusion, context=context,
                     sampling=SamplingConfig(method, sizes, 0))  # fmt: skip
    net = build_network(config).train().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 96).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", torch.bfloat16):
        logits, aux = net(x, with_aux=True)
    assert logits.dtype == torch.bfloat16 and logits.shape == (2, 19, 64, 96)
    target = torch.randint(0, 19, (2, 64, 96))
    SegmentationLoss(min_kept=100)(logits.float(), aux.float(), target)["total"].backward()
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad
    )


@pytest.mark.parametrize("name", ["nb", "apnb", "fnb", "afnb", "fnb_nb", "full"])
def test_nb_and_fnb_rows_attend_to_every_position(name):
    """Table 6: NB and FNB use every position as an anchor (S = N), APNB and AFNB the pyramid."""
    model = small(name).eval()
    with torch.no_grad():
        out = model.head(model.backbone(torch.randn(1, 3, 40, 40)), record=True)
    assert set(out.attention) == set(VARIANTS[name].values()) - {"none"}
    for block, weights in out.attention.items():
        weights = weights[0] if isinstance(weights, list) else weights
        # a 40x40 input gives 6x6 features (ceil-mode pooling): N = 36; the pyramid has S = 110
        assert weights.weights.shape[-1] == (36 if block in ("nb", "fnb") else 110), block


def test_afnb_bn_after_w_reaches_the_fusion_block_only():
    """Appendix C's BN after W_o is an AFNB option: with W at zero, the response is then the BN's
    shift (beta - mean / sqrt(var) * gamma) instead of zero."""
    model = small("full", afnb_bn_after_w=True).eval()
    attention = model.fusion.attentions[0]
    torch.nn.init.constant_(attention.W_bn.bias, 0.5)
    stages = model.backbone(torch.randn(1, 3, 32, 32))
    with torch.no_grad():
        context, _ = attention(stages[4], stages[3])
    assert torch.allclose(context, torch.full_like(context, 0.5))
    assert model.context.attention.W_bn is None and small("full").fusion.attentions[0].W_bn is None


def test_dropout_rate_reaches_every_dropout():
    # the config's rate (0.05 as released) is the only place it is set; a constant in one block
    # would make a dropout ablation silently train the released rate there
    model = small("full", dropout=0.25)
    rates = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout2d)]
    assert len(rates) == 3 and set(rates) == {0.25}  # AFNB, APNB, auxiliary head


def basic_resnet(sd, x, output_stride):
    """A dilated ResNet-18 (BasicBlock) written out over its state dict: at output stride 8,
    layer3 dilation 2 and layer4 dilation 4 without stride; at 16, layer3 keeps its stride and
    layer4 has dilation 2; the first block of a dilated layer at half its dilation."""
    import torch.nn.functional as F

    def bn(x, p):
        return F.batch_norm(
            x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"]
        )

    for i in "123":
        x = F.relu(bn(F.conv2d(x, sd[f"stem.conv{i}.weight"], None, 2 if i == "1" else 1, 1), f"stem.bn{i}."))
    stages, x = [x], F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
    layer34 = {8: ((3, 1, 2), (4, 1, 4)), 16: ((3, 2, 1), (4, 1, 2))}[output_stride]
    for layer, stride, dilation in ((1, 1, 1), (2, 2, 1), *layer34):
        for b in range(2):
            p = f"layer{layer}.{b}."
            s, d = (stride, max(1, dilation // 2)) if b == 0 else (1, dilation)
            out = F.relu(bn(F.conv2d(x, sd[p + "conv1.weight"], None, s, d, d), p + "bn1."))
            out = bn(F.conv2d(out, sd[p + "conv2.weight"], None, 1, d, d), p + "bn2.")
            if p + "downsample.0.weight" in sd:
                x = bn(F.conv2d(x, sd[p + "downsample.0.weight"], None, s), p + "downsample.1.")
            x = F.relu(out + x)
        stages.append(x)
    return stages


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilated_resnet18_computes_the_written_out_function(output_stride):
    """ResNet-18/34's BasicBlock is not covered by the converter's ResNet-101 check: dilation in
    both 3x3 convs, the final ReLU after the residual sum, the stride on the first block."""
    torch.manual_seed(0)
    backbone = small("baseline", output_stride=output_stride).backbone.double()
    for m in backbone.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics, so every BN matters
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    x = torch.randn(1, 3, 37, 45, dtype=torch.float64)
    with torch.no_grad():
        ours = backbone.eval()(x)
        expected = basic_resnet(backbone.state_dict(), x, output_stride)
    for stage, (a, b) in enumerate(zip(ours, expected, strict=True), start=1):
        torch.testing.assert_close(a, b, msg=f"stage {stage}")


@pytest.mark.parametrize(
    "override, message",
    [
        ({"fusion": "afnb", "fuse_stages": ()}, "needs at least one stage in fuse_stages"),
        ({"head_channels": 0}, "head_channels must be at least 1"),
        ({"key_channels": -1}, "key_channels must be at least 1"),
        ({"dropout": 1.5}, "dropout must be in [0, 1)"),
        ({"num_classes": -1}, "num_classes must be at least 1 (or 0: the dataset's)"),
    ],
)
def test_config_refuses_what_would_only_fail_inside_torch(override, message):
    """Named in the config's words before a layer is built (they crashed in torch's, or ran)."""
    with pytest.raises(ValueError, match=re.escape(message)):
        ANNConfig(**override)


def test_num_classes_0_is_a_placeholder_for_the_datasets_count():
    config = ANNConfig(backbone="resnet18", num_classes=0)  # what ann-r18-folder.toml says
    with pytest.raises(ValueError, match="must be set from the data"):
        build_network(config)
