"""The parts of a training run, one small function each (paper Sec. 4.2): the network with its
initial weights, its wrappers for many processes, SGD, the poly learning-rate schedule (with an
optional warm-up) and the Eq. 18 loss. `ann.training.loop.build_run` assembles them; a change of
recipe touches one of these functions and the config.
"""

import random

import numpy as np
import torch
from torch import nn

from ann.losses import CITYSCAPES_CLASS_WEIGHTS, SegmentationLoss
from ann.models.network import ANN, build_network
from ann.models.pretrained import load_backbone_weights
from ann.training.config import LossConfig, OptimConfig, RunConfig, TrainConfig
from ann.training.distributed import Processes


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(config: RunConfig, device: torch.device, initial_weights: bool = True) -> ANN:
    """The network on `device`, from ImageNet weights if configured (a resumed run restores its
    own instead: initial_weights=False), its backbone frozen if asked."""
    net = build_network(config.model)
    if config.train.backbone_weights and initial_weights:
        load_backbone_weights(net.backbone, config.train.backbone_weights)
    if config.train.freeze_backbone:
        freeze(net.backbone)
    net = net.to(device)
    if device.type == "cuda":
        # crops have one size, so cuDNN's per-shape algorithm search pays off after one step
        torch.backends.cudnn.benchmark = True
        if config.train.channels_last:
            net = net.to(memory_format=torch.channels_last)
    return net


def freeze(backbone: nn.Module) -> None:
    """No gradients (so no backward through it), and BN keeps its running statistics: eval mode at
    every call, whatever net.train() set after a validation."""
    backbone.requires_grad_(False)
    backbone.register_forward_pre_hook(keep_eval_mode)


def keep_eval_mode(module: nn.Module, args) -> None:
    module.eval()  # returns nothing: a pre-hook's return value would replace the input


def wrap_model(net: ANN, train: TrainConfig, processes: Processes) -> tuple[ANN, nn.Module]:
    """(the network, what the step calls): SyncBatchNorm and DDP across CUDA processes, DDP alone
    across CPU ones, torch.compile if asked."""
    model: nn.Module = net
    if processes.distributed:
        cuda = processes.device.type == "cuda"
        if cuda:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            net = model
        model = nn.parallel.DistributedDataParallel(model, device_ids=[processes.device] if cuda else None)
    if train.compile:
        model = torch.compile(model)
    return net, model


def build_optimizer(net: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """SGD with one learning rate for backbone and head, as released."""
    return torch.optim.SGD(
        net.parameters(), optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay,
        nesterov=optim.nesterov,
    )  # fmt: skip


def build_schedule(
    optimizer: torch.optim.Optimizer, optim: OptimConfig, iterations: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Poly decay per iteration, lr (1 - it / iterations) ^ poly_power (Sec. 4.2); with
    optim.warmup_iterations = W, iteration it < W runs at (it + 1) / W of that, so the first steps
    of a large lr do not throw away the ImageNet weights."""
    if not optim.warmup_iterations:
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, iterations, optim.poly_power)
    warmup, power = optim.warmup_iterations, optim.poly_power

    def factor(it: int) -> float:
        return (1 - min(it, iterations) / iterations) ** power * min(1.0, (it + 1) / warmup)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_criterion(loss: LossConfig) -> SegmentationLoss:
    """Eq. 18: OHEM cross-entropy on the output plus aux_weight times it on the Stage4 head."""
    weights = CITYSCAPES_CLASS_WEIGHTS if loss.class_weights == "cityscapes" else None
    return SegmentationLoss(loss.aux_weight, loss.ohem, loss.ohem_threshold, loss.ohem_min_kept, weights)
