"""Evaluate a checkpoint on a split: per-class IoU, mIoU and pixel accuracy (paper Sec. 4.1-4.2).

    python -m ann.evaluate model.safetensors --data DIR --split val [--mode whole|slide|msflip]
        [--json OUT] [--save-predictions DIR] [--sampling pyramid_max --sizes 1,2,3,6 --seed 0]

`--data synthcity` evaluates on the procedural SynthCity split without any folder. The library
function is `ann.evaluation.evaluate`, also the trainer's periodic validation.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ann.cli.args import (
    add_inference_args,
    check_output,
    load_for_inference,
    numbers,
    refused,
    unwritable,
    whole_number,
)
from ann.evaluation import PredictionWriter, evaluate
from ann.training.config import DATASETS
from ann.training.data import check_classes, data_config, eval_loader, open_split


def format_table(summary: dict) -> str:
    rows = [f"{'class':<16} IoU"]
    for name, value in summary["per_class_iou"].items():
        rows.append(f"{name:<16} {'  n/a' if value is None else f'{100 * value:5.1f}'}")
    rows.append(f"{'mIoU':<16} {100 * summary['miou']:5.1f}")
    rows.append(f"{'pixel accuracy':<16} {100 * summary['pixel_acc']:5.1f}")
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ann.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", required=True, help="dataset folder, or 'synthcity' for the procedural split")
    p.add_argument("--dataset", choices=DATASETS, help="folder layout; default: the checkpoint's")
    p.add_argument("--split", default="val")
    add_inference_args(p)
    p.add_argument("--limit", type=whole_number(0), default=0, help="the first N images only (0: all)")
    p.add_argument(
        "--synthcity-seed", type=whole_number(0), help="default: the checkpoint's training city, else 0"
    )
    p.add_argument("--synthcity-size", type=numbers,
                   help="H,W of SynthCity images (default: as trained, else 512,1024)")  # fmt: skip
    p.add_argument("--workers", type=whole_number(0), default=2)
    p.add_argument("--json", type=Path, help="write miou, pixel_acc, per_class_iou and confusion here")
    p.add_argument("--plot", type=Path, help="write the row-normalised confusion matrix as a PNG")
    p.add_argument("--save-predictions", type=Path, help="folder for trainId PNGs and overlays")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Load, optionally switch sampling, evaluate; the summary dict of ConfusionMatrix.summary."""
    check_data_args(args)
    check_output(args.json, "--json")
    check_output(args.plot, "--plot")
    model, options = load_for_inference(args)
    meta = model.meta
    data = data_config(args.data, meta, args.dataset, args.synthcity_seed, args.synthcity_size)
    split = open_split(data, args.split)
    check_classes(args.checkpoint, list(meta.classes), list(split.class_names), data.dataset, data.root)
    pin = torch.device(args.device).type == "cuda"
    loader = eval_loader(split, meta.normalization, args.limit, 0, 1, args.workers, pin)
    writer = (
        PredictionWriter(args.save_predictions, split.name, meta.palette) if args.save_predictions else None
    )
    progress = not args.no_progress
    matrix = evaluate(
        model, loader, model.config.num_classes, args.mode, options, args.device, args.amp, progress, writer
    )
    if int(matrix.matrix.sum()) == 0:  # else mIoU and accuracy are NaN, which JSON cannot hold
        raise ValueError(f"no labelled pixel in {args.split}: every ground-truth pixel is 255 (ignore)")
    summary = matrix.summary(meta.classes)
    summary["confusion"] = matrix.matrix.tolist()  # pixels: rows = ground truth, columns = prediction
    return summary


def check_data_args(args: argparse.Namespace) -> None:
    """Refuse data options that are malformed or that --data would silently ignore (a folder has
    no SynthCity city or size, the procedural split no folder layout), before the model is read."""
    if args.data == "synthcity":
        if args.dataset:
            raise ValueError(
                "--dataset has no effect with --data synthcity; it names the layout of a dataset folder"
            )
        if args.synthcity_size and len(args.synthcity_size) != 2:
            given = ",".join(map(str, args.synthcity_size))
            raise ValueError(f"--synthcity-size takes two numbers H,W, got {given}")
        return
    for flag, value in (("--synthcity-seed", args.synthcity_seed), ("--synthcity-size", args.synthcity_size)):
        if value is not None:
            raise ValueError(f"{flag} has no effect with a dataset folder; it applies to --data synthcity")


def plot_confusion(summary: dict, path: Path, title: str) -> None:
    """Where each class's pixels went: rows (ground truth) normalised to 100 %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["per_class_iou"])
    counts = np.asarray(summary["confusion"], dtype=np.float64)
    rows = 100 * counts / np.maximum(counts.sum(1, keepdims=True), 1)
    side = 2.5 + 0.32 * len(names)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    shown = ax.imshow(rows, cmap="viridis", vmin=0, vmax=100)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted as")
    ax.set_ylabel("ground truth")
    if len(names) <= 40:  # readable numbers only while the cells are large enough
        for (y, x), share in np.ndenumerate(rows):
            if share >= 1:
                ax.text(x, y, f"{share:.0f}", ha="center", va="center", fontsize=5,
                        color="black" if share > 60 else "white")  # fmt: skip
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="% of the class's pixels")
    ax.set_title(f"{title}: mIoU {100 * summary['miou']:.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except (ValueError, OSError) as error:  # CheckpointError, DatasetError, ConfigError
        return refused(error)
    print(format_table(summary))
    try:
        for path in (args.json, args.plot):
            if path:
                path.parent.mkdir(parents=True, exist_ok=True)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
        if args.plot:
            plot_confusion(summary, args.plot, f"{args.checkpoint.name} on {args.split}")
    except OSError as error:  # e.g. the disk filled up during the evaluation
        return unwritable(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
