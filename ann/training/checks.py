"""What is checked before a run writes anything: the data's classes against the model and the
loss, and the ImageNet weight file against the backbone."""

from dataclasses import replace

import torch

from ann.losses import CITYSCAPES_CLASS_WEIGHTS
from ann.models.backbones import BACKBONES, build_backbone
from ann.models.pretrained import fitted_state
from ann.training.config import RunConfig
from ann.training.data import Split
from ann.training.state import TrainingError


def with_dataset_classes(config: RunConfig, split: Split) -> RunConfig:
    """The config with model.num_classes checked against the data; 0 takes the data's count
    (the `folder` config: the classes of your own dataset are in its classes.txt)."""
    count = len(split.class_names)
    if config.loss.class_weights == "cityscapes" and count != len(CITYSCAPES_CLASS_WEIGHTS):
        raise TrainingError(
            f"loss.class_weights=cityscapes holds the 19 Cityscapes weights but {config.data.dataset} "
            f"has {count} classes (--set loss.class_weights=none)"
        )
    if config.model.num_classes == 0:
        return replace(config, model=replace(config.model, num_classes=count))
    if config.model.num_classes != count:
        raise TrainingError(
            f"model.num_classes is {config.model.num_classes} but {config.data.dataset} has "
            f"{count} classes (--set model.num_classes={count}, or 0 to take the dataset's)"
        )
    return config


def check_backbone_weights(config: RunConfig) -> None:
    """A weight file that is missing or does not fit stops the run before its folder is written."""
    if config.train.freeze_backbone and not (config.train.backbone_weights or config.model.pretrained):
        raise TrainingError(
            "train.freeze_backbone keeps a random backbone: give trained weights with "
            "train.backbone_weights=FILE (ImageNet, or a trained ANN's model.safetensors) or model.pretrained"
        )
    if not config.train.backbone_weights:
        return
    model = config.model
    source = BACKBONES[model.backbone].source
    if source != "file":
        how = "takes its ImageNet weights through model.pretrained" if source == "package" else "has none"
        raise TrainingError(f"train.backbone_weights is for ResNet backbones; {model.backbone} {how}")
    with torch.device("meta"):  # shapes only: nothing allocated, nothing computed
        backbone = build_backbone(model.backbone, model.output_stride, model.stem)
    fitted_state(backbone, config.train.backbone_weights)
