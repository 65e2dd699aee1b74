"""APNB against NB on the same weights, for one image or over a split (ann.analysis.nb_compare).

    python -m ann.nb_compare model.safetensors [--data synthcity | DIR] [--split test] [--limit 20]
        [--size H,W] [--blocks fusion,context] [--sampling METHOD --sizes 1,2,3,6 --seed 0]
        [--json out.json] [--plot out.png]
    python -m ann.nb_compare model.safetensors --image street.png [--label street_ids.png]
        [--size H,W] [--repeats 3] [--sampling ...] [--json out.json] [--plot out.png]

Over a split: every Table 7 sampling that fits the feature map (or only --sampling), the trained
one and NB at inference (every position an anchor), each with its mIoU and the mean cosine of its
context vectors to NB's. One image: per block the cosine map and GMACs under the trained sampling
(or --sampling) and under NB, the pixels whose class changes, the mIoU change with --label, and
the head time on this CPU. --plot draws the bars of the split, or the image's maps.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from ann.analysis.inputs import labelled_split, progress
from ann.cli.args import check_output, check_size, numbers, refused, unwritable, whole_number
from ann.training.config import DATASETS
from ann.training.data import trained_scale

SPLIT_DEFAULTS = {"data": "synthcity", "split": "test", "limit": 20}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ann.nb_compare", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", help="'synthcity' (default) or a labelled dataset folder")
    p.add_argument(
        "--dataset", choices=DATASETS, help="layout of a dataset folder; default: the checkpoint's"
    )
    p.add_argument("--split", help="split of SynthCity or of the folder (default: test)")
    p.add_argument("--limit", type=whole_number(0), help="the first N images (default 20; 0: all)")
    p.add_argument("--image", type=Path, help="compare on this one image instead of a split")
    p.add_argument("--label", type=Path, help="class-id PNG of --image (255 = ignore), for the mIoU change")
    p.add_argument("--repeats", type=whole_number(1), default=3, help="head runs timed per side (--image)")
    p.add_argument(
        "--size", type=numbers, help="H,W (default: the checkpoint's training scale, else 512,1024)"
    )
    p.add_argument("--blocks", type=lambda t: tuple(t.split(",")), help="fusion,context (default: both)")
    p.add_argument("--sampling", help="the sampled side: this method instead of the trained / Table 7 ones")
    p.add_argument("--sizes", type=numbers, help="pyramid sizes of --sampling, e.g. 1,2,3,6")
    p.add_argument("--seed", type=int, help="seed of random --sampling (default 0)")
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--plot", type=Path, help="write the figure as a PNG")
    args = p.parse_args(argv)
    if not args.image:
        for name, value in SPLIT_DEFAULTS.items():
            setattr(args, name, value if getattr(args, name) is None else getattr(args, name))
    return args


def check_args(args: argparse.Namespace) -> None:
    """Refuse what would be ignored or could not be written, before the model is read."""
    check_size(args.size)
    if args.image:
        given = [
            f"--{name}" for name in ("data", "dataset", "split", "limit") if getattr(args, name) is not None
        ]
        if given:
            raise ValueError(f"{', '.join(given)} choose a split; --image compares on one image")
    elif args.label:
        raise ValueError("--label goes with --image")
    if args.data == "synthcity" and args.dataset:
        raise ValueError("--dataset names the layout of a dataset folder; it has no effect with synthcity")
    if not args.sampling and (args.sizes or args.seed is not None):
        raise ValueError(
            "--sizes and --seed need --sampling (e.g. --sampling pyramid_average --sizes 1,2,3,6)"
        )
    for flag in ("json", "plot"):
        check_output(getattr(args, flag), f"--{flag}")


def sampling_of(args: argparse.Namespace, model):
    from ann.models.sampling import SamplingConfig

    if not args.sampling:
        return None
    return SamplingConfig(args.sampling, args.sizes or model.config.sampling.sizes, args.seed or 0)


def run_image(args: argparse.Namespace, model):
    from ann.analysis.nb_compare import compare_image
    from ann.images import read_image, read_label_map

    image = read_image(args.image, max(trained_scale(model.meta, args.size)))
    label = None
    if args.label:
        label = read_label_map(args.label, image.shape[:2], model.config.num_classes)
    comparison = compare_image(model, image, label, sampling_of(args, model), args.blocks, args.repeats)
    return comparison, image


def run_split(args: argparse.Namespace, model):
    from ann.analysis.nb_compare import compare_split
    from ann.models.sampling import TABLE7

    sampling = sampling_of(args, model)
    pairs, total = labelled_split(
        args.data, model.meta, args.checkpoint, args.split, args.limit, args.size, args.dataset
    )
    methods = TABLE7 if sampling is None else (sampling,)
    return compare_split(model, progress(pairs, total, "nb compare"), methods, blocks=args.blocks), None


def run(args: argparse.Namespace):
    """Check, load, compare: (the JSON summary, the comparison, the image or None for a split)."""
    from ann.analysis.nb_compare import compared_blocks
    from ann.checkpoint import load

    check_args(args)
    model = load(args.checkpoint)
    compared_blocks(model, args.blocks)  # a model without APNB/AFNB fails before any image is read
    start = time.perf_counter()
    comparison, image = (run_image if args.image else run_split)(args, model)
    summary = {
        "checkpoint": args.checkpoint.name,
        "image": str(args.image) if args.image else None,
        "data": None if args.image else args.data,
        "split": None if args.image else args.split,
        "size": list(image.shape[:2]) if args.image else list(trained_scale(model.meta, args.size)),
        "seconds": round(time.perf_counter() - start, 2),
        **comparison.to_json(),
    }
    return summary, comparison, image


def format_image(summary: dict) -> str:
    rows = [f"{'block':<6} {'sampled with':<42} {'cos mean':>8} {'cos min':>8} {'GMACs':>8} {'NB GMACs':>9}"]
    for block in summary["blocks"].values():
        cosine, gmacs = block["cosine"], block["gmacs"]
        rows.append(f"{block['kind'].upper():<6} {block['sampling']:<42} {cosine['mean']:>8.4f} "
                    f"{cosine['min']:>8.4f} {gmacs['sampled']:>8.4f} {gmacs['nb']:>9.4f}")  # fmt: skip
    pixels = summary["image_size"][0] * summary["image_size"][1]
    rows.append(f"class changed: {summary['changed_pixels']} of {pixels} pixels "
                f"({100 * summary['changed_share']:.2f}%)")  # fmt: skip
    if summary["miou"]:
        miou = summary["miou"]
        rows.append(f"mIoU: sampled {100 * miou['sampled']:.2f}, NB {100 * miou['nb']:.2f}, "
                    f"change {100 * summary['miou_change']:+.2f} (NB - sampled)")  # fmt: skip
    time_ms = summary["head_time_ms"]
    rows.append(f"head time, median ({summary['timed_on']}): sampled {time_ms['sampled']['wall_ms']:.1f} ms, "
                f"NB {time_ms['nb']['wall_ms']:.1f} ms (process CPU {time_ms['sampled']['cpu_ms']:.1f} / "
                f"{time_ms['nb']['cpu_ms']:.1f} ms)")  # fmt: skip
    return "\n".join(rows)


def format_split(summary: dict) -> str:
    kinds = list(summary["blocks"].values())
    header = f"{'sampling':<50} {'mIoU':>6} " + " ".join(f"{'cos ' + k.upper():>9}" for k in kinds)
    rows = [f"{summary['images']} images", header + f" {'changed vs NB':>14}"]
    for row in summary["rows"]:
        name = row["sampling"] + (" [trained]" if row["trained"] else "")
        name = "NB at inference (every position, S = N)" if row["method"] == "identity" else name
        miou = "n/a" if row["miou"] is None else f"{100 * row['miou']:.2f}"
        cosines = " ".join(f"{row['cosine_to_nb'][k]:>9.4f}" for k in kinds)
        rows.append(f"{name:<50} {miou:>6} {cosines} {100 * row['changed_share_vs_nb']:>13.2f}%")
    rows += [f"skipped {name}: {why}" for name, why in summary["skipped"].items()]
    return "\n".join(rows)


def write(args: argparse.Namespace, summary: dict, comparison, image) -> None:
    from ann.analysis.nb_compare_plots import plot_image, plot_split

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if args.plot:
        title = f"{args.checkpoint.name}: APNB against NB on the same weights"
        if image is None:
            plot_split(comparison, args.plot, title)
        else:
            plot_image(comparison, image, args.plot, title)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary, comparison, image = run(args)
    except (ValueError, OSError) as error:  # CheckpointError, DatasetError, ImageError
        return refused(error)
    print(format_image(summary) if args.image else format_split(summary))
    print(f"done in {summary['seconds']:.1f} s")
    try:
        write(args, summary, comparison, image)
    except OSError as error:
        return unwritable(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
