"""Evaluate a checkpoint on a split: per-class IoU, mIoU and pixel accuracy (paper Sec. 4.1-4.2).

    python -m ann.evaluate model.safetensors --data DIR --split val [--mode whole|slide|msflip]
        [--json OUT] [--save-predictions DIR] [--sampling pyramid_max --sizes 1,2,3,6 --seed 0]

`--data synthcity` evaluates on the procedural SynthCity split without any folder. The library
function is `ann.evaluation.evaluate`, also the trainer's periodic validation.
"""

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ann.evaluation import PredictionWriter, evaluate
from ann.inference import DEFAULT_SCALES, mode_options
from ann.training.config import DATASETS
from ann.training.data import check_classes, data_config, eval_loader, open_split

MODES_OF_FLAG = {"--crop": ("slide", "msflip"), "--stride": ("slide", "msflip"),
                 "--scales": ("msflip",), "--no-flip": ("msflip",)}  # fmt: skip


def format_table(summary: dict) -> str:
    rows = [f"{'class':<16} IoU"]
    for name, value in summary["per_class_iou"].items():
        rows.append(f"{name:<16} {'  n/a' if value is None else f'{100 * value:5.1f}'}")
    rows.append(f"{'mIoU':<16} {100 * summary['miou']:5.1f}")
    rows.append(f"{'pixel accuracy':<16} {100 * summary['pixel_acc']:5.1f}")
    return "\n".join(rows)


def numbers(text: str, kind: type = int) -> tuple:
    try:
        return tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from error


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum` (counts, sizes, repeats)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value

    return parse


def add_inference_args(p: argparse.ArgumentParser) -> None:
    """The options evaluate and predict share: inference mode, Table 7 switch, device."""
    p.add_argument("--mode", default="whole", choices=("whole", "slide", "msflip"))
    p.add_argument("--crop", type=numbers, help="H,W of sliding windows (slide, or msflip with windows)")
    p.add_argument("--stride", type=numbers, help="H,W between windows (default: the crop)")
    p.add_argument("--scales", type=lambda t: numbers(t, float),
                   help="msflip scales (default: 0.75,1.0,1.25)")  # fmt: skip
    p.add_argument("--no-flip", action="store_true", help="msflip without the flipped passes")
    p.add_argument("--sampling", help="switch the sampling method of AFNB/APNB (Table 7 at inference)")
    p.add_argument("--sizes", type=numbers, help="pyramid sizes for --sampling, e.g. 1,2,3,6")
    p.add_argument("--seed", type=int, help="seed of random sampling, with --sampling (default 0)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    p.add_argument("--no-progress", action="store_true")


def load_for_inference(args: argparse.Namespace):
    """The checkpoint on args.device, its sampling switched if asked, and predict's options."""
    from ann.checkpoint import load
    from ann.models.sampling import SamplingConfig

    check_inference_args(args)
    mode_options(args.mode, args.crop, args.stride)  # its errors before the model is read
    model = load(args.checkpoint, args.device)
    if args.sampling:
        sizes = args.sizes or model.config.sampling.sizes
        model.set_sampling(SamplingConfig(args.sampling, sizes, args.seed or 0))
    scales = args.scales or DEFAULT_SCALES
    options = mode_options(
        args.mode, args.crop, args.stride, scales, not args.no_flip, model.config.align_corners
    )
    return model, options


def check_inference_args(args: argparse.Namespace) -> None:
    """Refuse options that the chosen mode, or the absence of --sampling, would silently ignore."""
    given = {"--crop": args.crop, "--stride": args.stride, "--scales": args.scales, "--no-flip": args.no_flip}
    for flag, value in given.items():
        if value and args.mode not in MODES_OF_FLAG[flag]:
            modes = " or ".join(MODES_OF_FLAG[flag])
            raise ValueError(f"{flag} has no effect with --mode {args.mode}; it applies to --mode {modes}")
    if args.stride and not args.crop:
        raise ValueError("--stride needs --crop H,W (the window size)")
    if not args.sampling and (args.sizes or args.seed is not None):
        flag = "--sizes" if args.sizes else "--seed"
        raise ValueError(f"{flag} needs --sampling (e.g. --sampling pyramid_average --sizes 1,2,3,6)")


def check_output(path: Path | None, flag: str) -> None:
    """Refuse an output file that could not be written, before any work is done (nothing is created)."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder; give a file name")
    existing = path.absolute().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: cannot be written, {existing} is not a writable folder")


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
        from ann.data.datasets import plain_message

        print(f"error: {plain_message(error)}", file=sys.stderr)
        return 2
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
        print(f"error: could not write {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
