"""The argument types and option groups that the command lines share.

Types raise argparse.ArgumentTypeError, whose message argparse prints as it is; checks of a
combination of options raise ValueError before any model or data is read.
"""

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from ann.images import parse_size
from ann.inference import DEFAULT_SCALES, mode_options

MODES_OF_FLAG = {"--crop": ("slide", "msflip"), "--stride": ("slide", "msflip"),
                 "--scales": ("msflip",), "--no-flip": ("msflip",)}  # fmt: skip


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


def size(text: str) -> tuple[int, int]:
    """An argparse type: 'WIDTHxHEIGHT' -> (width, height), as the paper writes sizes."""
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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


def check_size(size: tuple | None) -> None:
    """--size of the analysis commands: two numbers H,W, each at least 32 (the 1/16 map of a smaller
    image has no room for the pyramid)."""
    if size is not None and (len(size) != 2 or min(size) < 32):
        raise ValueError(f"--size takes two numbers H,W of at least 32, got {','.join(map(str, size))}")


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


def refused(error: Exception) -> int:
    """A command's one-line error for bad input (a checkpoint, dataset or image it cannot use);
    the exit status 2."""
    from ann.data.datasets import plain_message

    print(f"error: {plain_message(error)}", file=sys.stderr)
    return 2


def unwritable(error: OSError) -> int:
    """A command's one-line error for an output it could not write; the exit status 2."""
    print(f"error: could not write {error.filename}: {error.strerror}", file=sys.stderr)
    return 2


def shown_path(path: Path) -> str:
    """A path as a command to reproduce a run should give it: relative to the working directory
    when it lies there (runs/NAME works on any checkout; /home/me/ann/runs/NAME only on this one)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def set_flags(overrides: list[str]) -> list[str]:
    """KEY=VALUE overrides as the command-line words that give them: --set K=V --set ..."""
    return [word for override in overrides for word in ("--set", override)]
