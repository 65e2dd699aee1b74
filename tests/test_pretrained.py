"""ImageNet ResNet weights from a local file: torchvision and deep-stem layouts, clear refusals."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from ann.checkpoint import CheckpointError
from ann.models.pretrained import load_backbone_weights
from ann.models.resnet import DilatedResNet
from ann.training.config import load_config
from ann.training.distributed import Processes
from ann.training.loop import build_run, train
from ann.training.state import TrainingError


def imagenet_file(tmp_path, stem: str, layout: str, suffix: str = ".pth"):
    """A ResNet-18 saved as an ImageNet release would name it, and the tensors it holds."""
    torch.manual_seed(1)
    source = DilatedResNet(18, 32, stem)
    for p in source.parameters():
        torch.nn.init.normal_(p)  # not what a fresh model draws
    ours = source.state_dict()
    prefix = {"torchvision": "", "openseg": "prefix.", "segmentation": "module.backbone."}[layout]
    state = {
        (prefix + k.removeprefix("stem.") if k.startswith("stem.") else k): v
        for k, v in ours.items()
        if layout != "torchvision" or not k.endswith("num_batches_tracked")  # torchvision omits some
    }
    if layout == "segmentation":
        state = {("module.backbone." + k if not k.startswith("module.") else k): v for k, v in state.items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    path = tmp_path / f"resnet18_{layout}{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return path, ours


@pytest.mark.parametrize(
    "stem, layout, suffix",
    [("plain", "torchvision", ".pth"), ("deep", "openseg", ".pth"), ("deep", "torchvision", ".safetensors"),
     ("deep", "segmentation", ".pth")],
)  # fmt: skip
def test_layouts_load_onto_the_dilated_resnet(tmp_path, stem, layout, suffix):
    path, ours = imagenet_file(tmp_path, stem, layout, suffix)
    target = DilatedResNet(18, 8, stem)  # another output stride: dilation adds no parameters
    load_backbone_weights(target, path)
    loaded = target.state_dict()
    for name, tensor in ours.items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(loaded[name], tensor), name


def test_misfits_are_named(tmp_path):
    path, _ = imagenet_file(tmp_path, "plain", "torchvision")
    with pytest.raises(
        CheckpointError, match=r"missing: stem\.conv2\.weight.*wrong shape: stem\.conv1\.weight"
    ):
        load_backbone_weights(DilatedResNet(18, 8, "deep"), path)  # plain-stem file, deep-stem net
    with pytest.raises(CheckpointError, match="no such file"):
        load_backbone_weights(DilatedResNet(18, 8, "plain"), tmp_path / "absent.pth")


def test_code_running_pickle_is_refused_without_running(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('ran')",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": Boom()}))
    with pytest.raises(CheckpointError, match="not a readable weight file"):
        load_backbone_weights(DilatedResNet(18, 8, "plain"), path)


def test_trainer_starts_from_the_file_and_refuses_a_misfit_before_writing(tmp_path):
    path, ours = imagenet_file(tmp_path, "deep", "openseg")
    fast = ["train.progress=false", "train.iterations=1", "data.val_limit=1"]
    config = load_config("smoke", [*fast, f"train.backbone_weights={path}"])
    run = build_run(config, tmp_path / "run", Processes(0, 1, 0, torch.device("cpu")))
    assert torch.equal(run.net.backbone.layer2[0].conv1.weight, ours["layer2.0.conv1.weight"])
    plain, _ = imagenet_file(tmp_path, "plain", "torchvision")
    with pytest.raises(CheckpointError, match="does not fit"):
        train(load_config("smoke", [*fast, f"train.backbone_weights={plain}"]), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    with pytest.raises(TrainingError, match="model.pretrained"):
        overrides = [*fast, f"train.backbone_weights={path}", "model.backbone=efficientnet_lite0"]
        train(load_config("smoke", overrides), tmp_path / "refused")


def test_a_trained_ann_checkpoint_gives_its_backbone_only(tmp_path):
    from ann.models.pretrained import backbone_state

    state = {"backbone.stem.conv1.weight": torch.zeros(1), "backbone.layer1.0.bn1.weight": torch.ones(1),
             "context.W.weight": torch.zeros(1), "classifier.weight": torch.zeros(1)}  # fmt: skip
    assert sorted(backbone_state(state)) == ["layer1.0.bn1.weight", "stem.conv1.weight"]
