"""Figures for a report: the app's Fig. 7 stage comparison and attention panels of a batch of images.

    python -m ann.figure model.safetensors street1.png street2.png [--kind stages|attention|both]
        [--points X,Y;X,Y] [--block context|fusion] [--reduction mean|max|pca] [--size H,W]
        --out figure.png
    python -m ann.figure model.safetensors --data synthcity --indices 4,11 [--split test] --out fig.pdf

Images are shrunk to the longer side of --size (default: the checkpoint's training scale, else
512,1024); SynthCity scenes (--data synthcity, or a labelled dataset folder) are read at it.
--points gives one X,Y for every image or one per image (default: each image's centre). The
figure's format follows the suffix of --out (.png, .svg, .pdf). See ann.analysis.figures.
"""

import argparse
import sys
import time
from pathlib import Path

from ann.analysis.features import REDUCTIONS
from ann.analysis.figures import BLOCKS, KINDS, report_figure
from ann.cli.args import check_output, check_size, numbers, refused
from ann.training.data import trained_scale


def points(text: str) -> list[tuple[float, float]]:
    """ "X,Y;X,Y" -> [(x, y), ...]."""
    found = []
    for part in text.split(";"):
        values = numbers(part, float)
        if len(values) != 2:
            raise argparse.ArgumentTypeError(f"a point is X,Y (pixels, x to the right, y down), got {part!r}")
        found.append(values)
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ann.figure", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("images", type=Path, nargs="*", help="image files (or --data with --indices)")
    p.add_argument("--data", help="'synthcity' or a labelled dataset folder, with --indices")
    p.add_argument("--indices", type=numbers, help="images of --data's split, e.g. 4,11")
    p.add_argument("--split", default="test", help="split of --data (default: test)")
    p.add_argument("--kind", choices=KINDS, default="both", help="stages (Fig. 7), attention, or both")
    p.add_argument("--points", type=points, help="query pixels X,Y;X,Y (default: each image's centre)")
    p.add_argument("--block", choices=BLOCKS, default="context", help="context (APNB) or fusion (AFNB)")
    p.add_argument("--reduction", choices=REDUCTIONS, default="mean", help="channel reduction of the stages")
    p.add_argument("--size", type=numbers, help="H,W (default: the checkpoint's training scale)")
    p.add_argument("--out", type=Path, required=True, help="the figure file: .png, .svg or .pdf")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Refuse what would be ignored or could not be read or written, before the model is read."""
    check_size(args.size)
    if bool(args.data) != bool(args.indices):
        raise ValueError("--data and --indices go together: --data synthcity --indices 4,11")
    if not args.images and not args.data:
        raise ValueError("give image files, or --data synthcity --indices 4,11")
    missing = [str(path) for path in args.images if not path.is_file()]
    if missing:
        raise ValueError(f"no such image file: {', '.join(missing)}")
    if not args.checkpoint.is_file():
        raise ValueError(f"no such checkpoint: {args.checkpoint}")
    check_output(args.out, "--out")


def read_images(args: argparse.Namespace, meta) -> list[tuple]:
    """(name, image) of the files, then of the --indices of --data."""
    from ann.analysis.inputs import labelled_split
    from ann.images import read_image

    size = trained_scale(meta, args.size)
    images = [(path.name, read_image(path, max(size))) for path in args.images]
    if args.data:
        wanted = set(args.indices)
        pairs, total = labelled_split(args.data, meta, args.checkpoint, args.split, max(wanted) + 1, size)
        if max(wanted) >= total:
            raise ValueError(f"--indices {max(wanted)}: {args.data} {args.split} has {total} images")
        found = {i: image for i, (image, _) in enumerate(pairs) if i in wanted}
        images += [(f"{args.data} {args.split} #{i}", found[i]) for i in args.indices]
    return images


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from ann.checkpoint import load

        check_args(args)
        model = load(args.checkpoint)
        images = read_images(args, model.meta)
        start = time.perf_counter()
        options = {"kind": args.kind, "points": args.points, "block": args.block, "reduction": args.reduction}
        _, views = report_figure(model, images, args.out, **options, title=args.checkpoint.name)
    except (ValueError, OSError) as error:  # CheckpointError, ImageError, DatasetError
        return refused(error)
    for view in views:
        x, y = view.point
        print(f"{view.name}: {view.block.upper()} at (x={x:g}, y={y:g}) = feature cell {view.cell}")
    print(f"{len(images)} images ({args.kind}) in {time.perf_counter() - start:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
