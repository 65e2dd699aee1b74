"""Head-only ablations on a frozen backbone (Table 6 at CPU scale; docs/cpu-training.md).

    python -m ann.heads cache CHECKPOINT --out DIR [--train 2000] [--val 100] [--test 500]
    python -m ann.heads train CONFIG --features DIR --out RUN [--set section.field=value ...] [--resume]

`cache` runs CHECKPOINT's backbone once over the first scenes of each SynthCity split at its
training scale and keeps Stage4/Stage5 (fp16) with the labels; run again, it finishes a stopped
build. `train` trains CONFIG's head (e.g. fcn-r18-synthcity-cpu, or ann-r18-synthcity-cpu with
--set model.fusion=none) on those features, with CONFIG's optimiser, loss, iterations and batch,
and writes RUN/model.safetensors (the cache's backbone with the trained head) and RUN/metrics.json
(val curve, test mIoU and per-class IoU on the cached test scenes).
"""

import argparse
import shlex
import sys
from pathlib import Path

from ann.cli.args import refused, set_flags, shown_path, whole_number


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ann.heads", description=__doc__.split("\n")[0])
    commands = p.add_subparsers(dest="command", required=True)
    cache = commands.add_parser("cache", help="cache a checkpoint's backbone features of SynthCity scenes")
    cache.add_argument("checkpoint", type=Path)
    cache.add_argument("--out", type=Path, required=True, help="cache folder")
    for split, default in (("train", 2000), ("val", 100), ("test", 500)):
        cache.add_argument(
            f"--{split}", type=whole_number(1), default=default, help=f"{split} scenes (default {default})"
        )
    train = commands.add_parser("train", help="train a config's head on a feature cache")
    train.add_argument("config", help="bundled config name or path to a .toml file")
    train.add_argument("--features", type=Path, required=True, help="a folder written by `cache`")
    train.add_argument("--out", type=Path, required=True, help="run folder")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    train.add_argument("--resume", action="store_true", help="continue a stopped run in --out")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "cache":
            return cache(args)
        return train(
            args, shlex.join([sys.executable, "-m", "ann.heads", *(sys.argv[1:] if argv is None else argv)])
        )
    except (ValueError, OSError) as error:  # CacheError, HeadTrainingError, ConfigError, CheckpointError
        return refused(error)


def cache(args: argparse.Namespace) -> int:
    from ann.training.feature_cache import build_cache

    info = build_cache(args.checkpoint, args.out, {"train": args.train, "val": args.val, "test": args.test})
    print(
        f"cached {info['counts']} scenes of {info['checkpoint']} "
        f"at {info['size_hw'][1]}x{info['size_hw'][0]} in {args.out}"
    )
    return 0


def reproduce(args: argparse.Namespace) -> str:
    """The command that recomputes this head from its cache, however many times it was resumed."""
    folders = ["--features", shown_path(args.features), "--out", shown_path(args.out)]
    return shlex.join(["python", "-m", "ann.heads", "train", args.config, *folders,
                       *set_flags(args.overrides)])  # fmt: skip


def train(args: argparse.Namespace, command: str) -> int:
    from ann.training.config import load_config
    from ann.training.heads import train_head

    config = load_config(args.config, args.overrides)
    metrics = train_head(
        config, args.features, args.out, args.resume, command, log=lambda line: print(line, flush=True),
        reproduce=reproduce(args),
    )  # fmt: skip
    print(
        f"test mIoU {100 * metrics['test_metrics']['miou']:.2f} "
        f"({metrics['data']['test_limit']} cached test scenes): "
        f"{args.out / 'metrics.json'}"
    )
    return 0
