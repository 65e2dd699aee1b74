"""Head-only ablations on a frozen backbone (paper Table 6 at CPU scale; docs/cpu-training.md).

Every head variant (the dilated-FCN baseline, +NB, +APNB, the full ANN's AFNB + APNB, the Table 7
samplers) trains on one feature cache (ann.training.feature_cache): the same backbone, the same
scenes in the same order, the same recipe. What differs is the head alone, which is what Table 6
compares. It is not the paper's protocol (the paper trains each variant end to end), and the
backbone is the one trained with a particular head: the docs say which, and report both.

The trained head joins the cache's backbone in one ordinary checkpoint (the app and ann.evaluate
read it); a state file every train.checkpoint_every iterations lets a stopped run resume.
"""

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ann.checkpoint import CheckpointMeta, load, save
from ann.metrics import ConfusionMatrix
from ann.models.network import ANN, build_network
from ann.training.build import build_criterion, build_optimizer, build_schedule, freeze, seed_everything
from ann.training.config import RunConfig, flatten
from ann.training.export import device_name, git_commit
from ann.training.feature_cache import CachedSplit, open_cached, read_info

STATE = "state.pt"
MODEL = "model.safetensors"
METRICS = "metrics.json"


class HeadTrainingError(ValueError):
    """A config whose network cannot take the cache's features, or a run folder in the way."""


@dataclass
class HeadRun:
    config: RunConfig
    net: ANN
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    iteration: int = 0
    wall_time: float = 0.0
    curve: list | None = None  # [(iteration, val mIoU)]


def train_head(
    config: RunConfig,
    cache: Path,
    out: Path,
    resume: bool = False,
    command: str = "",
    log=print,
    reproduce: str = "",
) -> dict:
    """Train config's head on the cached features; write the checkpoint and metrics.json into out."""
    info = read_info(cache)
    net = head_network(config, cache, info)
    train, val = open_cached(cache, "train"), open_cached(cache, "val")
    run = start(config, net, out, resume)
    criterion = build_criterion(config.loss)
    started = logged = time.perf_counter()
    while run.iteration < config.train.iterations:
        stages, labels = train.batch(
            batch_indices(run.iteration, config.train.batch_size, len(train), config.train.seed)
        )
        losses = step(run, criterion, stages, labels)
        run.iteration += 1
        if run.iteration % config.train.log_every == 0:
            rate = config.train.log_every * config.train.batch_size / (time.perf_counter() - logged)
            loss = losses["total"].item()
            log(f"heads {run.iteration}/{config.train.iterations}  loss {loss:.4f}  {rate:.1f} img/s")
            logged = time.perf_counter()
        if run.iteration % config.train.val_every == 0 or run.iteration == config.train.iterations:
            run.curve.append((run.iteration, measure(net, val)["miou"]))
            log(f"iteration {run.iteration}: val mIoU {100 * run.curve[-1][1]:.2f}")
        if run.iteration % config.train.checkpoint_every == 0:
            save_state(run, out, time.perf_counter() - started)
            started = time.perf_counter()
    run.wall_time += time.perf_counter() - started
    return finish(config, run, cache, info, out, (command, reproduce or command))


def head_network(config: RunConfig, cache: Path, info: dict) -> ANN:
    """config's network with the cache's backbone weights, frozen (eval-mode BN)."""
    model = config.model
    if (model.backbone, model.output_stride) != (info["backbone"], info["output_stride"]):
        raise HeadTrainingError(
            f"{cache} holds features of a {info['backbone']} at output stride {info['output_stride']}; "
            f"the config's network has a {model.backbone} at output stride {model.output_stride}"
        )
    if model.num_classes != len(info["classes"]):
        raise HeadTrainingError(
            f"the config has {model.num_classes} classes, the cache's labels {len(info['classes'])}"
        )
    if any(s - 1 not in (3, 4) for s in model.fuse_stages):
        raise HeadTrainingError(
            f"model.fuse_stages {list(model.fuse_stages)}: the cache holds Stage4 and Stage5 only"
        )
    trained = load(info["path"])
    if trained.meta.sha256 != info["sha256"]:
        raise HeadTrainingError(
            f"{info['path']} has changed since {cache} was built from it: build the cache again"
        )
    seed_everything(config.train.seed)
    net = build_network(replace(model, pretrained=False))
    net.backbone.load_state_dict(trained.backbone.state_dict())
    freeze(net.backbone)  # never run here (the cache stands for it), but saved with the head
    net.meta = trained.meta
    return net


def start(config: RunConfig, net: ANN, out: Path, resume: bool) -> HeadRun:
    optimizer = build_optimizer(net, config.optim)
    run = HeadRun(
        config, net, optimizer, build_schedule(optimizer, config.optim, config.train.iterations), curve=[]
    )
    if (out / STATE).exists() and not resume:
        raise HeadTrainingError(f"{out} holds a stopped run: --resume continues it, or give another --out")
    if (out / MODEL).exists() and not resume:
        raise HeadTrainingError(f"{out} holds a finished run ({MODEL}): give another --out")
    out.mkdir(parents=True, exist_ok=True)
    if resume and (out / STATE).exists():
        state = torch.load(out / STATE, weights_only=True)
        if state["config"] != flatten_config(config):
            raise HeadTrainingError(f"{out} was trained with another config; --resume needs the same one")
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        run.schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"])
        run.iteration, run.wall_time, run.curve = (
            state["iteration"],
            state["wall_time"],
            [tuple(c) for c in state["curve"]],
        )
    return run


def flatten_config(config: RunConfig) -> str:
    """The config as text, leaving out what may change across a resume (how often it logs)."""
    from dataclasses import asdict

    keep = {
        k: v
        for k, v in flatten(asdict(config)).items()
        if not k.startswith(("train.log_every", "train.progress"))
    }
    return json.dumps(keep, sort_keys=True, default=str)


def save_state(run: HeadRun, out: Path, elapsed: float) -> None:
    run.wall_time += elapsed
    state = {"net": run.net.state_dict(), "optimizer": run.optimizer.state_dict(),
             "schedule": run.schedule.state_dict(), "rng": torch.get_rng_state(),
             "iteration": run.iteration, "wall_time": run.wall_time, "curve": run.curve,
             "config": flatten_config(run.config)}  # fmt: skip
    partial = out / (STATE + ".tmp")
    torch.save(state, partial)
    partial.replace(out / STATE)


def batch_indices(iteration: int, batch: int, length: int, seed: int) -> torch.Tensor:
    """The scenes of `iteration`: a fresh permutation of the cache each epoch, from (seed, epoch)
    alone, so a resumed run draws what an uninterrupted one would."""
    positions = range(iteration * batch, (iteration + 1) * batch)
    picks = []
    for p in positions:
        epoch, k = divmod(p, length)
        order = torch.randperm(length, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        picks.append(order[k])
    return torch.stack(picks)


def step(run: HeadRun, criterion, stages, labels) -> dict:
    run.net.train()
    out = run.net.head(stages, with_aux=True)
    size = labels.shape[-2:]
    aux = None if out.aux is None else run.net.upsample(out.aux, size)
    losses = criterion(run.net.upsample(out.logits, size), aux, labels)
    run.optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    run.optimizer.step()
    run.schedule.step()
    return losses


@torch.no_grad()
def measure(net: ANN, split: CachedSplit, batch: int = 8) -> dict:
    """The trainer's summary (ConfusionMatrix.summary: fractions) of the head on a cached split."""
    net.eval()
    matrix = ConfusionMatrix(net.config.num_classes)
    for start in range(0, len(split), batch):
        stages, labels = split.batch(torch.arange(start, min(start + batch, len(split))))
        logits = net.upsample(net.head(stages, with_aux=False).logits, labels.shape[-2:])
        matrix.update(logits.argmax(1), labels)
    return matrix.summary(net.meta.classes)


def finish(
    config: RunConfig, run: HeadRun, cache: Path, info: dict, out: Path, commands: tuple[str, str]
) -> dict:
    """Test on the cached test split; write the checkpoint (the cache's backbone + this head) and
    metrics.json (the same provenance)."""
    test = measure(run.net, open_cached(cache, "test"))
    meta, counts, (height, width) = run.net.meta, info["counts"], info["size_hw"]
    city = meta.provenance.get("data", {}).get("synthcity_seed", 0)
    provenance = {
        "protocol": "head-only training on a frozen backbone's cached features (docs/cpu-training.md)",
        "backbone_from": info["checkpoint"], "backbone_sha256": info["sha256"],
        "command": commands[0], "reproduce": commands[1], "git_commit": git_commit(), "config": config.name,
        "data": {"dataset": "synthcity", "synthcity_seed": city,
                 "synthcity_size": [height, width], "synthcity_train_images": counts["train"],
                 "crop_size": [height, width], "progressive": [], "val_limit": counts["val"],
                 "test_limit": counts["test"]},
        "images_seen": run.iteration * config.train.batch_size, "iterations": run.iteration,
        "batch_size": config.train.batch_size, "seed": config.train.seed,
        "metrics": measure(run.net, open_cached(cache, "val")), "test_metrics": test,
        "val_curve": run.curve, "wall_time_s": round(run.wall_time, 1),
        "device": device_name(torch.device("cpu")), "world_size": 1, "torch": torch.__version__,
    }  # fmt: skip
    save(
        run.net,
        out / MODEL,
        CheckpointMeta(run.net.config, meta.classes, meta.palette, meta.normalization, provenance),
    )
    (out / METRICS).write_text(json.dumps(provenance, indent=1))
    (out / STATE).unlink(missing_ok=True)  # finished: nothing to resume
    return provenance
