"""Where a checkpoint's APNB/AFNB attention lands, by class, over a split (ann.analysis.context).

    python -m ann.class_context model.safetensors [--data synthcity | DIR] [--split test] [--limit 100]
        [--size H,W] [--labels gt|prediction] [--json out.json] [--plot matrix.png]
        [--figure bars.png --classes sidewalk,terrain,wall]

`--data synthcity` renders the SynthCity split at --size (default: the checkpoint's training scale,
else 512,1024). A dataset folder is read in the checkpoint's layout (or --dataset) with its labels,
its images shrunk to the longer side of --size when larger. With `--labels prediction` the model's
own prediction is the labels: --data may then be any folder of images (walked as ann.predict walks
it). Prints a table per block; --json writes every number, --plot the class-to-class matrices,
--figure the bars of the --classes.
"""

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ann.analysis.context import LABEL_SOURCES, ContextResult, attention_blocks, class_context
from ann.analysis.inputs import NoLabelledSplit, labelled_split, progress
from ann.cli.args import check_output, check_size, numbers, refused, unwritable, whole_number
from ann.training.config import DATASETS
from ann.training.data import trained_scale

DEFAULT_QUERY_CLASSES = "sidewalk,terrain,wall"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ann.class_context", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", default="synthcity", help="'synthcity' (default), a dataset folder, or images")
    p.add_argument(
        "--dataset", choices=DATASETS, help="layout of a dataset folder; default: the checkpoint's"
    )
    p.add_argument("--split", help="split of SynthCity or of a dataset folder (default: test)")
    p.add_argument("--limit", type=whole_number(0), default=100, help="the first N images (0: all)")
    p.add_argument(
        "--size", type=numbers, help="H,W (default: the checkpoint's training scale, else 512,1024)"
    )
    p.add_argument("--labels", choices=LABEL_SOURCES, default="gt", help="gt, or the model's prediction")
    p.add_argument(
        "--blocks", type=lambda t: tuple(t.split(",")), help="fusion,context (default: the model's)"
    )
    p.add_argument("--json", type=Path, help="write every block's matrix and per-class numbers here")
    p.add_argument("--plot", type=Path, help="write the class-to-class matrices as a PNG")
    p.add_argument("--figure", type=Path, help="write the bars of the --classes as a PNG")
    p.add_argument("--classes", default=DEFAULT_QUERY_CLASSES, help="query classes of --figure")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Refuse what would be ignored or could not be written, before the model is read."""
    check_size(args.size)
    images_only = args.data != "synthcity" and args.labels == "prediction"
    if args.dataset and (args.data == "synthcity" or images_only):
        raise ValueError("--dataset names the layout of a labelled dataset folder; it has no effect here")
    if args.split and images_only:
        raise ValueError("--split has no effect on a folder of images with --labels prediction")
    for flag in ("json", "plot", "figure"):
        check_output(getattr(args, flag), f"--{flag}")


def items(args: argparse.Namespace, meta) -> tuple[Iterator, int]:
    """(image, label or None) pairs of the asked data, and how many there are."""
    if args.data != "synthcity" and args.labels == "prediction":
        return image_folder(Path(args.data), max(trained_scale(meta, args.size)), args.limit)
    try:
        return labelled_split(
            args.data, meta, args.checkpoint, args.split or "test", args.limit, args.size, args.dataset
        )
    except NoLabelledSplit as error:
        raise ValueError(f"{error}; for images without labels use --labels prediction") from error


def image_folder(folder: Path, max_side: int, limit: int) -> tuple[Iterator, int]:
    from ann.images import ImageError, collect_inputs, read_image

    files = list(collect_inputs([folder]).values())[: limit or None]

    def read() -> Iterator:
        for path in files:
            try:
                yield read_image(path, max_side), None
            except ImageError as error:
                print(f"skipped {path.parent}/{error}", file=sys.stderr)

    return read(), len(files)


def format_table(result: ContextResult) -> str:
    """Per query class: pixels, own-class share, the two other classes attended most, entropy."""
    S = np.exp(result.uniform_entropy)
    header = f"{'class':<14} {'pixels':>10} {'own %':>6} {'eff. anchors':>12} {'entropy':>7}  attends most to"
    rows = [
        f"{result.block.upper()}: {result.images} images, uniform attention = {S:.0f} effective anchors",
        header,
    ]
    for k, name in enumerate(result.classes):
        if name in result.absent:
            rows.append(f"{name:<14} {'-':>10}")
            continue
        others = [j for j in np.argsort(-result.matrix[k]) if j != k][:2]
        most = ", ".join(f"{result.classes[j]} {100 * result.matrix[k, j]:.0f}%" for j in others)
        rows.append(f"{name:<14} {result.pixels[k]:>10} {100 * result.own_share[k]:>6.1f} "
                    f"{result.effective_anchors[k]:>12.1f} {result.entropy[k]:>7.2f}  {most}")  # fmt: skip
    return "\n".join(rows)


def run(args: argparse.Namespace) -> tuple[dict, dict[str, ContextResult], list]:
    """Check, load, compute: (the JSON summary, the result of each block, the class palette)."""
    from ann.checkpoint import load

    check_args(args)
    model = load(args.checkpoint)
    attention_blocks(model, args.blocks)  # a model without attention fails before any image is read
    query_classes = args.classes.split(",")
    unknown = [name for name in query_classes if name not in model.meta.classes]
    if args.figure and unknown:
        raise ValueError(f"--classes {','.join(unknown)}: not classes of {args.checkpoint.name}")
    pairs, total = items(args, model.meta)
    start = time.perf_counter()
    results = class_context(model, progress(pairs, total, "class context"), args.blocks, args.labels)
    if next(iter(results.values())).images == 0:
        raise ValueError(f"no image of {args.data} could be read")
    summary = {
        "checkpoint": args.checkpoint.name,
        "data": args.data,
        "split": None if args.data != "synthcity" and args.labels == "prediction" else args.split or "test",
        "labels": args.labels,
        "size": list(trained_scale(model.meta, args.size)),
        "seconds": round(time.perf_counter() - start, 2),
        "blocks": {kind: result.to_json() for kind, result in results.items()},
    }
    return summary, results, model.meta.palette


def write(args: argparse.Namespace, summary: dict, results: dict[str, ContextResult], palette) -> None:
    from ann.analysis.context_plots import plot_landing, plot_matrix

    title = f"{args.checkpoint.name} on {args.data} ({args.labels} labels)"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if args.plot:
        plot_matrix(list(results.values()), args.plot, title)
    if args.figure:
        plot_landing(list(results.values()), args.figure, args.classes.split(","), palette, title)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary, results, palette = run(args)
    except (ValueError, OSError) as error:  # CheckpointError, DatasetError, ImageError
        return refused(error)
    for result in results.values():
        print(format_table(result), end="\n\n")
    print(f"{next(iter(results.values())).images} images in {summary['seconds']:.1f} s")
    try:
        write(args, summary, results, palette)
    except OSError as error:
        return unwritable(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
