"""Write SynthCity in the Cityscapes directory layout, or measure rendering throughput.

python -m ann.data.synthcity --split val --count 500 --out DIR [--seed S] [--size 1024x512]
python -m ann.data.synthcity --benchmark 200 [--size 1024x512]
python -m ann.data.synthcity --ceiling 500 [--split test]   # best mIoU without context
"""

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ann.cli.args import size
from ann.data.synthcity import SPLITS, render
from ann.progress import progress


def paths(out: Path, split: str, index: int) -> tuple[Path, Path]:
    stem = f"synthcity_{index:06d}"
    image = out / "leftImg8bit" / split / "synthcity" / f"{stem}_leftImg8bit.png"
    label = out / "gtFine" / split / "synthcity" / f"{stem}_gtFine_labelTrainIds.png"
    return image, label


def write(out: Path, split: str, indices: list[int], seed: int, size: tuple[int, int]) -> None:
    for index in progress(indices, len(indices), f"synthcity {split}"):
        image, label = render(seed, split, index, size)
        image_path, label_path = paths(out, split, index)
        image_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(image_path, optimize=True)
        Image.fromarray(label, mode="L").save(label_path, optimize=True)


def benchmark(count: int, seed: int, size: tuple[int, int]) -> None:
    """Single-process render() throughput over train indices (one core)."""
    render(seed, "train", 0, size)  # builds the texture and noise banks
    start = time.perf_counter()
    for index in range(1, count + 1):
        render(seed, "train", index, size)
    elapsed = time.perf_counter() - start
    rate, ms = count / elapsed, 1000 * elapsed / count
    print(f"synthcity render {size[0]}x{size[1]}: {rate:.1f} images/s on one core ({ms:.1f} ms/image)")
    print(f"numpy {np.__version__}, pillow {Image.__version__}")


def print_ceiling(seed: int, split: str, count: int, size: tuple[int, int]) -> None:
    from ann.data.synthcity.ceiling import split_ceiling

    summary = split_ceiling(seed, split, count, size)
    where = f"{split} 0..{count - 1} ({size[0]}x{size[1]})"
    print(f"context-blind oracle on {where}: mIoU {100 * summary['miou']:.1f}")
    for name, iou in summary["per_class_iou"].items():
        print(f"  {name:<14} {'absent' if iou is None else f'{100 * iou:.1f}'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ann.data.synthcity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--split", choices=list(SPLITS), default="val")
    parser.add_argument(
        "--count", type=int, default=None, help="images to write (default: the whole val/test split)"
    )
    parser.add_argument("--start", type=int, default=0, help="first index")
    parser.add_argument(
        "--indices", type=lambda t: [int(v) for v in t.split(",")], help="e.g. 4,11,29 (not with --count)"
    )
    parser.add_argument("--out", type=Path, help="output root (Cityscapes layout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=size, default=(1024, 512), help="WIDTHxHEIGHT")
    parser.add_argument("--benchmark", type=int, metavar="N", help="time N renders instead of writing files")
    parser.add_argument("--ceiling", type=int, metavar="N",
                        help="mIoU of a context-blind oracle on the first N images of --split")  # fmt: skip
    args = parser.parse_args(argv)
    if args.benchmark:
        benchmark(args.benchmark, args.seed, args.size)
        return
    if args.ceiling:
        print_ceiling(args.seed, args.split, args.ceiling, args.size)
        return
    if args.out is None:
        parser.error("--out DIR is required unless --benchmark is given")
    if args.indices is not None:
        write(args.out, args.split, args.indices, args.seed, args.size)
        return
    count = args.count if args.count is not None else SPLITS[args.split]
    if count is None:
        parser.error("--count is required for the unbounded train split")
    write(args.out, args.split, list(range(args.start, args.start + count)), args.seed, args.size)


if __name__ == "__main__":
    main()
