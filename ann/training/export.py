"""The end of a run: the final model in the library's safetensors format with its provenance, the
training-curve PNG and the model card."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from ann.checkpoint import CheckpointMeta, read_meta, save
from ann.timing import cpu_name
from ann.training.card import model_card, write_card
from ann.training.data import Split, normalization
from ann.training.logging import plot_curve

MODEL_FILE = "model.safetensors"


def git_commit() -> str:
    """HEAD of the checkout the trainer runs from, `+dirty` with uncommitted changes.

    ANN_GIT_COMMIT, when set, wins: a copy of a working tree (the GPU machine gets one, without
    .git or with a .git git may refuse) cannot tell which commit it is; the caller can.
    """
    repo = Path(__file__).resolve().parents[2]
    if os.environ.get("ANN_GIT_COMMIT"):
        return os.environ["ANN_GIT_COMMIT"]
    if not (repo / ".git").exists():
        return "unknown"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo, capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    # the card says "trained on a 2-core CPU": the cores the run had, not a bare "cpu"
    return f"cpu ({cpu_name()}), {torch.get_num_threads()} threads"


def provenance(run, command: str, reproduce: str = "") -> dict:
    config, data = run.config, run.config.data
    return {
        "command": command,
        "reproduce": reproduce or command,
        "git_commit": git_commit(),
        "config": config.name,
        "data": {
            "dataset": data.dataset,
            "root": data.root if data.dataset != "synthcity" else "",
            "train_split": data.train_split,
            "val_split": data.val_split,
            "test_split": data.test_split,
            "synthcity_seed": data.synthcity_seed,
            "synthcity_size": list(data.synthcity_size),
            "synthcity_train_images": data.synthcity_train_images,  # 0 = unbounded stream
            "val_limit": data.val_limit,  # val metrics on the first N images; 0 = all
            "test_limit": data.resolved_test_limit,  # test metrics on the first N images; 0 = all
            "crop_size": list(data.crop_size),  # the training scale (the last stage's, if progressive)
            "progressive": [list(stage) for stage in data.progressive],
        },
        "images_seen": run.iteration * config.train.batch_size,
        "iterations": run.iteration,
        "batch_size": config.train.batch_size,
        "metrics": run.summary or {},
        "test_metrics": run.test_summary or {},
        "best_miou": None if run.best_miou != run.best_miou else run.best_miou,
        "seed": config.train.seed,
        "backbone_weights": config.train.backbone_weights,  # "" = seeded init or the package's ImageNet
        "wall_time_s": round(run.wall_time, 1),
        "device": device_name(run.processes.device),
        "world_size": run.processes.world,
        "torch": torch.__version__,
    }


def export(run, val_split: Split, command: str, reproduce: str = "") -> Path:
    """Write model.safetensors, training_curve.png and model_card.md into the run folder."""
    import time

    run.wall_time += time.perf_counter() - run.started
    run.started = time.perf_counter()
    info = provenance(run, command, reproduce)
    meta = CheckpointMeta(
        run.net.config,
        list(val_split.class_names),
        [list(c) for c in val_split.palette],
        normalization(run.config),
        info,
    )
    dtype = torch.float16 if run.config.train.export_dtype == "float16" else torch.float32
    path = save(run.net, run.out / MODEL_FILE, meta, dtype=dtype)
    try:
        curve = plot_curve(run.out, run.out / "training_curve.png").name
    except ImportError as error:  # a trained model is not lost for want of a plotting package
        print(f"warning: no training_curve.png ({error}); the card has no curve", file=sys.stderr)
        curve = None
    card = model_card(run.config, info, run.summary, curve, run.test_summary)
    write_card(run.out / "model_card.md", card)
    return path


def install(run: Path, target: Path) -> Path:
    """A finished run folder -> `target` (NAME.safetensors) with its card NAME.md, the card's facts
    as NAME.json and its curve NAME_curve.png beside it: what the app, `ann.info` and
    checkpoints/README.md expect."""
    # Read first: a run without its card or with unreadable weights installs nothing.
    card = (run / "model_card.md").read_text()
    provenance = read_meta(run / MODEL_FILE).provenance
    target.parent.mkdir(parents=True, exist_ok=True)
    name = target.name.removesuffix(".safetensors")
    if (run / "training_curve.png").exists():
        shutil.copyfile(run / "training_curve.png", target.parent / f"{name}_curve.png")
        card = card.replace("(training_curve.png)", f"({name}_curve.png)")
    shutil.copyfile(run / MODEL_FILE, target)
    (target.parent / f"{name}.md").write_text(card)
    # The card's facts for programs (a re-run set against its card, a results table) without
    # opening the weights: the provenance they carry, test metrics included.
    facts = {"checkpoint": target.name, "card": f"{name}.md", **provenance}
    (target.parent / f"{name}.json").write_text(json.dumps(facts, indent=1) + "\n")
    return target
