"""The training loop of Sec. 4.2: SGD with poly decay per iteration on the Eq. 18 loss.

`train(config, out)` prepares the run folder (lock, resolved config), builds or restores the run,
trains to `train.iterations` with periodic logging, validation and atomic checkpoints, and exports
the final model. A resumed run replays the uninterrupted one exactly on CPU: model, optimizer,
scheduler, RNG states and sampler counters are restored, and the data of every iteration depends
only on (seed, iteration, rank) (ann/training/data.py).
"""

import contextlib
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ann.checkpoint import CheckpointError, load_state
from ann.data.datasets import DatasetError
from ann.evaluation import evaluate
from ann.inference import Normalization, mode_options
from ann.models.network import ANN
from ann.training import distributed
from ann.training.build import (
    build_criterion,
    build_model,
    build_optimizer,
    build_schedule,
    seed_everything,
    wrap_model,
)
from ann.training.checks import check_backbone_weights, with_dataset_classes
from ann.training.config import (
    ConfigError,
    RunConfig,
    build,
    config_differences,
    load_config,
    to_toml,
)
from ann.training.data import Split, eval_loader, normalization, open_split, resize_stages, train_loader
from ann.training.distributed import Processes
from ann.training.logging import Meter, RunLog
from ann.training.state import (
    RunLock,
    Stopped,
    StopRequest,
    TrainingError,
    atomic_write,
    load_checkpoint,
    rng_states,
    sampler_draws,
    save_checkpoint,
    set_rng_states,
    set_sampler_draws,
)

CHECKPOINT = Path("checkpoints") / "last.pt"
# Fields that may change on --resume without changing what is computed.
RESUMABLE_CHANGES = (
    "description", "train.progress", "train.log_every", "train.device", "train.compile",
    "train.val_every", "data.workers", "data.root", "data.skip_bad", "data.cache_dir",
)  # fmt: skip


@dataclass
class Run:
    config: RunConfig
    out: Path
    processes: Processes
    net: ANN  # the network itself: checkpoints, validation, export
    model: nn.Module  # what the step calls: net, or its DDP / compiled wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    normalize: nn.Module  # uint8 batches -> network input, on the device
    iteration: int = 0
    best_miou: float = float("nan")
    wall_time: float = 0.0  # seconds, summed over resumed sessions
    summary: dict | None = None  # last validation
    test_summary: dict | None = None  # data.test_split at the end
    lr: float = 0.0  # of the last step
    started: float = field(default_factory=time.perf_counter)


def train(config: RunConfig, out: Path, resume: bool = False, command: str = "", reproduce: str = "") -> Run:
    processes = distributed.setup(config.train.device)
    lock = RunLock(out)
    fresh, discard = not out.exists(), False
    try:
        train_split = open_split(config.data, config.data.train_split)
        val_split = open_split(config.data, config.data.val_split)
        # opened now so that a missing test folder stops the run before training, not after
        test_split = open_split(config.data, config.data.test_split) if config.data.test_split else None
        config = with_dataset_classes(config, val_split)
        state = load_checkpoint(out / CHECKPOINT) if resume and (out / CHECKPOINT).exists() else None
        if state is None:  # a resumed run restores its weights: the ImageNet file may be gone
            check_backbone_weights(config)
        else:  # before config.toml is rewritten: a refused resume leaves the folder as it was
            check_same_config(config, state, str(out / CHECKPOINT))
        error = prepare_folder(config, out, resume, lock) if processes.main else None
        distributed.broadcast_error(error, processes)
        run = build_run(config, out, processes, initial_weights=state is None)
        if state is not None:
            restore(run, state)
            del state  # not held through training: its optimizer state alone is the model's size
        train_to_end(run, train_split, val_split)
        # a SIGTERM now would lose a trained model: the test split and the export finish first
        with StopRequest():
            final_test(run, test_split)
            if processes.main:
                from ann.training.export import export

                export(run, val_split, command, reproduce)
        distributed.barrier()
        return run
    except Exception:
        # a run that failed before its first checkpoint leaves no half-made folder behind
        discard = fresh and lock.held and not (out / CHECKPOINT).exists()  # held: the folder is ours
        raise
    finally:
        lock.release()
        if discard:
            shutil.rmtree(out, ignore_errors=True)
        distributed.teardown()


def prepare_folder(config: RunConfig, out: Path, resume: bool, lock: RunLock) -> str | None:
    """Lock the folder and save the resolved config; an error message instead of raising."""
    try:
        if out.exists() and not out.is_dir():
            raise TrainingError(f"--out {out} is a file, not a run folder; choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        saved = out / "config.toml"
        if not resume and ((out / CHECKPOINT).exists() or (out / "model.safetensors").exists()):
            raise TrainingError(
                f"{out} already holds a run; pass --resume to continue it or choose another --out"
            )
        if resume and saved.exists():
            differences = config_differences(load_config(str(saved)), config, RESUMABLE_CHANGES)
            if differences:
                raise TrainingError(
                    f"--resume with a different config than {saved}: " + "; ".join(differences)
                )
        (out / CHECKPOINT).parent.mkdir(exist_ok=True)
        atomic_write(saved, to_toml(config).encode())
    except (TrainingError, ValueError) as error:
        lock.release()
        return str(error)
    except OSError as error:  # e.g. a parent of --out is a file, or not writable
        lock.release()
        return f"--out {out}: cannot make the run folder there ({error.strerror}: {error.filename})"
    return None


def build_run(config: RunConfig, out: Path, processes: Processes, initial_weights: bool = True) -> Run:
    """The run's parts (ann/training/build.py), seeded as every process needs them."""
    seed_everything(config.train.seed)  # same initial weights on every process
    net = build_model(config, processes.device, initial_weights)
    net, model = wrap_model(net, config.train, processes)
    optimizer = build_optimizer(net, config.optim)
    scheduler = build_schedule(optimizer, config.optim, config.train.iterations)
    criterion = build_criterion(config.loss).to(processes.device)
    # dropout masks differ per process; the weights start equal (DDP also broadcasts them)
    seed_everything(config.train.seed * 1000 + processes.rank + 1)
    normalize = Normalization(normalization(config)).to(processes.device)
    return Run(config, out, processes, net, model, optimizer, scheduler, criterion, normalize)


def checkpoint_state(run: Run, rng: list[dict]) -> dict:
    return {
        "format": "ann-train-state/1",
        "config": run.config.to_dict(),
        "iteration": run.iteration,
        "model": {k: v.detach().cpu() for k, v in run.net.state_dict().items()},
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": rng,  # one entry per process: dropout masks differ per rank
        "sampler_draws": sampler_draws(run.net),
        "best_miou": run.best_miou,
        "summary": run.summary,
        "wall_time": run.wall_time + time.perf_counter() - run.started,
    }


def restore(run: Run, state: dict) -> None:
    source = str(run.out / CHECKPOINT)
    try:
        load_state(run.net, state["model"], source)
        run.optimizer.load_state_dict(state["optimizer"])
    except (CheckpointError, ValueError) as error:
        raise TrainingError(f"--resume: checkpoint does not match the model: {error}") from error
    run.scheduler.load_state_dict(state["scheduler"])
    set_sampler_draws(run.net, state["sampler_draws"])
    rng, processes = state["rng"], run.processes
    if len(rng) != processes.world and processes.main:
        print(f"note: checkpoint of {len(rng)} processes resumed on {processes.world}; RNG streams differ")
    if processes.rank < len(rng):  # a rank the checkpoint did not have keeps its seed of build_run,
        set_rng_states(rng[processes.rank])  # not rank 0's dropout masks
    run.iteration, run.best_miou = state["iteration"], state["best_miou"]
    run.summary, run.wall_time = state["summary"], state["wall_time"]
    run.started = time.perf_counter()


def check_same_config(config: RunConfig, state: dict, source: str) -> None:
    """The checkpoint's own config is what its weights were trained with: config.toml may have been
    edited or removed, and resuming with another recipe would silently break resume == uninterrupted."""
    if not isinstance(state, dict) or state.get("format") != "ann-train-state/1":
        raise TrainingError(f"{source}: not a training checkpoint of this trainer")
    try:
        differences = config_differences(build(RunConfig, state["config"], ""), config, RESUMABLE_CHANGES)
    except ConfigError as error:
        raise TrainingError(f"{source}: its config cannot be read by this version ({error})") from error
    if differences:
        raise TrainingError(f"--resume with a different config than {source} was trained with: "
                            + "; ".join(differences))  # fmt: skip


def autocast(run: Run):
    if run.processes.device.type == "cuda" and run.config.train.amp == "bf16":
        return torch.autocast("cuda", torch.bfloat16)
    return contextlib.nullcontext()


def train_step(run: Run, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    run.lr = run.optimizer.param_groups[0]["lr"]
    with autocast(run):
        logits, aux = run.model(images, with_aux=True)
    # the loss (softmax, OHEM sort) in fp32 whatever the autocast dtype
    losses = run.criterion(logits.float(), None if aux is None else aux.float(), labels)
    run.optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    run.optimizer.step()
    run.scheduler.step()
    return losses


def train_to_end(run: Run, train_split: Split, val_split: Split) -> None:
    cfg, processes = run.config.train, run.processes
    cuda = processes.device.type == "cuda"
    stages = resize_stages(run.config)
    # an iteration costs about its crop's pixels (a 256x128 step is a quarter of a 512x256 one)
    costs = [(end, math.prod(stage.data.crop_size)) for end, stage in stages]
    log = RunLog(run.out, run.iteration, cfg.iterations, cfg.progress, costs) if processes.main else None
    meter = Meter()
    try:
        with StopRequest() as stop:
            for end, stage in stages:  # one stage unless data.progressive
                if run.iteration >= end:
                    continue
                split = train_split if stage is run.config else open_split(stage.data, stage.data.train_split)
                run.criterion = build_criterion(stage.loss).to(processes.device)
                loader = train_loader(split, stage, run.iteration, processes.rank, processes.world, cuda, end)
                for images, labels in meter.timed(loader):
                    train_iteration(run, images, labels, meter, log, val_split, stop)
    finally:
        if log:
            log.close()


def train_iteration(run: Run, images, labels, meter: Meter, log, val_split: Split, stop: StopRequest) -> None:
    """One step, then what is due after it: logging, validation, checkpoint, or a requested stop."""
    cfg, processes = run.config.train, run.processes
    images = run.normalize(images.to(processes.device, non_blocking=True))
    if processes.device.type == "cuda" and cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = labels.to(processes.device, non_blocking=True).long()  # 255 stays the ignore index
    losses = train_step(run, images, labels)
    run.iteration += 1
    meter.images += len(images) * processes.world
    if log:
        log.step()
    end = run.iteration == cfg.iterations
    if run.iteration % cfg.log_every == 0 or end:
        log_training(run, losses, meter, log)
    if (cfg.val_every and run.iteration % cfg.val_every == 0) or end:
        try:
            validate(run, val_split, log)
        except DatasetError:  # a bad val file: keep the steps trained so far (one process only:
            if not processes.distributed:  # the others would wait in the collective)
                save_progress(run)
            raise
        meter.read()  # validation time is not training throughput
    # ranks must agree on the step; a collective (and host sync) every step would stall DDP, so
    # they compare at the log steps, which synchronise for the loss anyway
    due = not processes.distributed or run.iteration % cfg.log_every == 0
    stopping = not end and due and distributed.any_process(stop.requested, processes.device)
    if run.iteration % cfg.checkpoint_every == 0 or end or stopping:
        save_progress(run)
    if stopping:
        raise Stopped(run.iteration)


def save_progress(run: Run) -> None:
    rng = distributed.gather_to_main(rng_states(), run.processes)
    if run.processes.main:
        save_checkpoint(run.out / CHECKPOINT, checkpoint_state(run, rng))
    distributed.barrier()


def log_training(run: Run, losses: dict, meter: Meter, log: RunLog | None) -> None:
    names = sorted(losses)
    values = distributed.mean_over_processes([float(losses[k].detach()) for k in names], run.processes.device)
    if not all(math.isfinite(v) for v in values):
        raise TrainingError(f"loss is not finite at iteration {run.iteration}; try a lower optim.lr")
    images_per_s, data_wait = meter.read()
    if log is None:
        return
    lr = run.lr
    record = {"iteration": run.iteration, "loss": values[names.index("total")], "lr": lr}
    record.update({f"loss_{k}": v for k, v in zip(names, values, strict=True) if k != "total"})
    record.update(images_per_s=images_per_s, data_wait=data_wait)
    if run.processes.device.type == "cuda":
        record["gpu_max_memory_gb"] = torch.cuda.max_memory_allocated(run.processes.device) / 2**30
    log.record(record)
    log.show(run.iteration, record["loss"], lr, images_per_s)


def validate(run: Run, split: Split, log: RunLog | None) -> dict:
    """mIoU over the val split; the best one is kept in the run."""
    run.summary = measure(run, split)
    miou = run.summary["miou"]
    if not math.isnan(miou) and (math.isnan(run.best_miou) or miou > run.best_miou):
        run.best_miou = miou
    if log:
        log.record({"iteration": run.iteration, "val_miou": miou, "val_pixel_acc": run.summary["pixel_acc"]})
        log.message(f"iteration {run.iteration}: val mIoU {100 * miou:.2f}")
    return run.summary


def final_test(run: Run, split: Split | None) -> None:
    """The final model on data.test_split (if set), for the model card; never used to select."""
    if split is not None:
        run.test_summary = measure(run, split, run.config.data.resolved_test_limit)
        if run.processes.main:
            print(f"{run.config.data.test_split} mIoU {100 * run.test_summary['miou']:.2f}")


def measure(run: Run, split: Split, limit: int | None = None) -> dict:
    """Confusion-matrix summary of a split (its first `limit` images, default data.val_limit), each
    process evaluating its share, matrices summed."""
    processes, data = run.processes, run.config.data
    limit = data.val_limit if limit is None else limit
    cuda = processes.device.type == "cuda"
    loader = eval_loader(
        split, normalization(run.config), limit, processes.rank, processes.world, data.workers, cuda
    )
    options = mode_options(
        run.config.train.val_mode, crop=data.crop_size, align=run.config.model.align_corners
    )
    amp = run.config.train.amp == "bf16"
    matrix = evaluate(run.net, loader, run.config.model.num_classes, run.config.train.val_mode, options,
                      processes.device, amp)  # fmt: skip
    matrix.all_reduce()
    return matrix.summary(split.class_names)
