"""Effective receptive fields of checkpoints over SynthCity scenes (ann.analysis.receptive_field).

    python -m ann.receptive_field A.safetensors [B.safetensors ...] [--split test] [--limit 20]
        [--size H,W] [--point Y,X] [--json out.json] [--plot out.png]

For each checkpoint: how far from a pixel (default the image centre) the input still moves its
prediction, as the half-side in pixels of the square around it that holds 50, 90 and 95 % of the
gradient mass, and its reach (the square holding all of it), averaged over the first --limit
scenes at --size (default: the first checkpoint's training scale). All checkpoints see the same
scenes at the same size, so their rows compare.
"""

import argparse
import json
import sys
from pathlib import Path

from ann.analysis.inputs import labelled_split, progress
from ann.cli.args import check_output, check_size, numbers, refused, unwritable, whole_number


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ann.receptive_field", description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--split", default="test", help="SynthCity split (default: test)")
    p.add_argument("--limit", type=whole_number(1), default=20, help="the first N scenes (default 20)")
    p.add_argument("--size", type=numbers, help="H,W (default: the first checkpoint's training scale)")
    p.add_argument("--point", type=numbers, help="Y,X of the pixel (default: the image centre)")
    p.add_argument("--json", type=Path, help="write the numbers here")
    p.add_argument("--plot", type=Path, help="write the fields side by side as a PNG")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    check_size(args.size)
    if args.point is not None and len(args.point) != 2:
        raise ValueError(f"--point takes two numbers Y,X, got {','.join(map(str, args.point))}")
    for flag in ("json", "plot"):
        check_output(getattr(args, flag), f"--{flag}")


def fields(args: argparse.Namespace) -> dict:
    from ann.analysis.receptive_field import effective_receptive_field
    from ann.checkpoint import load
    from ann.training.data import trained_scale

    models = {path.name: load(path) for path in args.checkpoints}  # every file read before any scene
    first = next(iter(models.values()))
    size = trained_scale(first.meta, args.size)
    if args.point and not (0 <= args.point[0] < size[0] and 0 <= args.point[1] < size[1]):
        raise ValueError(f"--point {args.point[0]},{args.point[1]} is outside the {size[1]}x{size[0]} image")
    pairs, total = labelled_split("synthcity", first.meta, args.checkpoints[0], args.split, args.limit, size)
    images = [image for image, _ in progress(pairs, total, "scenes")]  # rendered once, for every model
    point = tuple(args.point) if args.point else None
    result = {name: effective_receptive_field(model, images, point) for name, model in models.items()}
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_args(args)
        result = fields(args)
    except (ValueError, OSError) as error:  # CheckpointError, bad sizes
        return refused(error)
    summaries = {name: field.summary() for name, field in result.items()}
    print(
        f"{'checkpoint':<44} {'images':>6} {'size':>9} {'r50':>5} {'r90':>5} {'r95':>5} {'reach':>5}"
        "  px around the point"
    )
    for name, s in summaries.items():
        size = f"{s['size_hw'][1]}x{s['size_hw'][0]}"
        radii = (s["radius_50"], s["radius_90"], s["radius_95"], s["reach"])
        print(f"{name:<44} {s['images']:>6} {size:>9} " + " ".join(f"{r:>5}" for r in radii))
    try:
        if args.json:
            args.json.write_text(json.dumps(summaries, indent=1))
        if args.plot:
            from ann.analysis.receptive_field import plot_fields

            plot_fields(result, args.plot)
    except OSError as error:
        return unwritable(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
