"""Segment your own images with a checkpoint: no labels, no dataset layout.

    python -m ann.predict model.safetensors IMAGE_OR_FOLDER... --out DIR [--mode whole|slide|msflip]
        [--max-side N] [--sampling pyramid_max --sizes 1,2,3,6] [--json shares.json]

For each image, `DIR/<name>.png` holds the predicted class ids (trainIds of the checkpoint's
classes) and `DIR/<name>_overlay.png` the class colours over the image, both at the file's own
size (the network sees it with its longer side at most --max-side); a folder keeps its
subfolders. Images are decoded as the app decodes uploads (`ann.images`: EXIF orientation, any
mode to RGB, size checked before decoding); a file that cannot be used is named and skipped, the
others are still segmented, and the exit status is 1. A run whose files would overwrite an input
image (`--out` is the photo folder) or each other is refused before anything is written.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ann.cli.args import add_inference_args, check_output, load_for_inference, whole_number
from ann.evaluation import PredictionWriter
from ann.images import ImageError, collect_inputs, read_image, resize_max_side
from ann.inference import segment
from ann.progress import progress

# Cityscapes' width. Beyond it NB's N x N attention outgrows memory: 4.3 GB at 2048x1024
# (N = 256 x 128 at output stride 8), 140 GB for a 12-Mpixel photo.
DEFAULT_MAX_SIDE = 2048


def check_outputs(inputs: dict[str, Path], out: Path) -> None:
    """Refuse a run whose files would overwrite an input image or each other (e.g. `--out` is the
    photo folder: photos/a.png would be replaced by its mask)."""
    sources = {file.resolve(): file for file in inputs.values()}
    written: dict[Path, str] = {}
    for name in inputs:
        for path in (out / f"{name}.png", out / f"{name}_overlay.png"):
            target = path.resolve()
            if target in sources:
                raise ValueError(
                    f"{path} would overwrite the input image {sources[target]}; choose another --out"
                )
            if target in written:
                raise ValueError(f"{path} would be written for both {written[target]} and {name}")
            written[target] = name


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ann.predict", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("inputs", type=Path, nargs="+", help="image files and folders of images")
    p.add_argument("--out", type=Path, required=True, help="folder for <name>.png and <name>_overlay.png")
    p.add_argument("--max-side", type=whole_number(0), default=DEFAULT_MAX_SIDE,
                   help="longer side the network sees (0: the file's); masks keep its size")  # fmt: skip
    p.add_argument("--json", type=Path, help="write each image's class pixel shares here")
    add_inference_args(p)
    return p.parse_args(argv)


def segment_all(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """Segment every input; (name -> class shares, messages of the skipped files)."""
    inputs = collect_inputs(args.inputs)
    check_outputs(inputs, args.out)
    check_output(args.json, "--json")
    model, options = load_for_inference(args)
    meta = model.meta
    names = list(inputs)
    writer = PredictionWriter(args.out, names.__getitem__, meta.palette)
    shares, skipped = {}, []
    for index, name in enumerate(names if args.no_progress else progress(names, len(names), "predict")):
        try:
            image = read_image(inputs[name], None)
        except ImageError as error:
            skipped.append(f"{inputs[name].parent}/{error}")  # the error names the file only
            continue
        small = np.array(resize_max_side(Image.fromarray(image), args.max_side or None))
        pred = segment(model, small, args.mode, args.amp, **options)  # (h, w)
        # the mask is written at the file's own size, so it lies on the image it came from
        pred = F.interpolate(pred[None, None].byte(), size=image.shape[:2], mode="nearest")[0, 0]  # (H, W)
        writer(pred, torch.from_numpy(image), index)
        counts = np.bincount(pred.numpy().ravel(), minlength=len(meta.classes)) / pred.numel()
        shares[name] = {meta.classes[k]: round(float(v), 6) for k, v in enumerate(counts) if v > 0}
    return shares, skipped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        shares, skipped = segment_all(args)
    except (ValueError, OSError) as error:  # CheckpointError, a missing input, an unwritable --out
        print(f"error: {error}", file=sys.stderr)
        return 2
    for message in skipped:
        print(f"skipped {message}", file=sys.stderr)
    if args.json:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(shares, indent=2) + "\n")
        except OSError as error:
            print(f"error: could not write {args.json}: {error.strerror}", file=sys.stderr)
            return 2
    tail = f", {len(skipped)} skipped" if skipped else ""
    print(f"{len(shares)} images segmented into {args.out}{tail}")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
